"""citypatrol.pipeline.evaluation: is citypatrol right? Ground truth and event-level scoring
(`scoring`), the sample footage (`samples`) and the evaluation run over it (`run`).
"""
