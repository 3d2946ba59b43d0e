"""citypatrol.pipeline.store: the database — engine and migrations, tables, typed reads and
writes of cases, the dispatch outbox, review-center users, sessions and tokens.
Imports config, cases and the core types; nothing above it (no runtime, no dispatch adapter).
"""
