"""citypatrol.pipeline.rules"""
