"""citypatrol.pipeline"""
