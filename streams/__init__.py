"""citypatrol.streams"""
