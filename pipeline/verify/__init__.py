"""citypatrol.pipeline.verify: 核查结案 — re-check a handled case on its camera (`recheck`) with a pure
verdict (`judge`), then close or reopen it. Imports store, dispatch messages, config, streams.
"""
