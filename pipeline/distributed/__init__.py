"""citypatrol.pipeline.distributed: many machines over Redis — the protocol (keys, shards,
messages), workers that analyse cameras and footage segments, casekeepers that write cases, and
the cluster's status and metrics. Imports the stages and sinks; nothing imports it but cli/.
"""
