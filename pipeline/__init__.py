"""citypatrol.pipeline: everything between detections and cases.

The top level holds the core types and the pure stages a frame passes through (`types`, `boxes`,
`zones`, `tracker`, `rules/`, `analyzer`); each folder beside them is one stage or runtime of the
data flow: config → cases → sinks → store → dispatch → verify, with health, batch, live,
distributed and evaluation as the runtimes that drive them, and cli/ as the command line.
"""
