"""citypatrol.annotate"""
