"""citypatrol.pipeline.cli: the `citypatrol` command line. Each command is thin: it parses options
and calls one module of another room. Nothing imports cli/, but for `markup.esc`, which every
command printing through Rich shares.
"""
