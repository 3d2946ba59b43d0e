"""Every table of the store on one metadata: import this module to get the whole schema.

The case tables live in `store/schema.py`; other areas declare theirs on the same `Base` in their
own modules (review: users, sessions, tokens, audit log, zone versions; dispatch: callback
receipts, deadlines). A table exists for the ORM only once its module is imported, so the
Alembic environment, the schema test and `Store` import this one module rather than each list
the modules themselves. A new `store_*_schema.py` gets a line here and an Alembic revision.
"""

from __future__ import annotations

from citypatrol.pipeline.store import dispatch_schema as store_dispatch_schema, review_schema as store_review_schema  # noqa: F401  (register their tables)
from citypatrol.pipeline.store.schema import Base

metadata = Base.metadata
