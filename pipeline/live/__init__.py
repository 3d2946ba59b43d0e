"""citypatrol.pipeline.live: the live runner (`citypatrol run`) — camera feeds into one shared
detector, its status and metrics, zones edited while running, services beside it in one process.
"""
