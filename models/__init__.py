"""citypatrol.models"""
