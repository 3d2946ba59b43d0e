"""citypatrol.pipeline.config: what a deployment sets — strict pydantic models (`models`), reading
a YAML file with its secrets (`loading`), and camera configs from a platform catalog (`catalog_import`).
Imports only the core types; every other room may import this one.
"""
