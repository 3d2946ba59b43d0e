"""citypatrol.pipeline.health: camera health — offline, frozen, covered and moved cameras as
start/end events (`monitor`), the picture measures behind them, and the live runner's adapter.
"""
