"""citypatrol.api"""
