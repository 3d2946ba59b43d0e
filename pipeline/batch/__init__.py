"""citypatrol.pipeline.batch: recorded footage → detections, cases, evidence and a report
(`runner`), and the outputs that are not cases (`outputs`). Imports the stages below it.
"""
