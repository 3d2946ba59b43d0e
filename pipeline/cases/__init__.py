"""citypatrol.pipeline.cases: events become cases — dedup and expiry (`builder`), the case state
machine and its audit rows (`states`), and the review policy that decides auto-submit or hold.
Pure logic: imports config and the core types, never the store or any I/O.
"""
