"""citypatrol.pipeline.sinks: where case changes leave the detection path — the one case writer
(store rows, review decision, outbox message, evidence files), the asynchronous recorder that batch
and live use around it, the second-stage check and active sampling. Imports cases, store, annotate.
"""
