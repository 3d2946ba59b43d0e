"""User names are case-insensitive: store every name casefolded.

Revision ID: 0004_casefold_usernames
Revises: 0003_dispatch
Create Date: 2026-12-03

Before this revision `Admin` and `admin` could be two accounts. Names that are alone once
casefolded are renamed to that form (the account, its sessions and tokens stay as they are).
Names that collide are not merged: which account is the real one, with which role and password,
is for an admin to decide, so the upgrade stops, names every clash and changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from citypatrol.pipeline.store.records import StoreError

revision: str = "0004_casefold_usernames"
down_revision: str | None = "0003_dispatch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table("users", sa.column("id", sa.Integer), sa.column("username", sa.String))


def clashes(names: Sequence[str]) -> list[list[str]]:
    """Groups of names that are one name once casefolded (each group sorted, groups in name order)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[name.casefold()].append(name)
    return [sorted(g) for _, g in sorted(groups.items()) if len(g) > 1]


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.username)).all()
    found = clashes([name for _, name in rows])
    if found:
        listed = "; ".join(" = ".join(repr(n) for n in group) for group in found)
        raise StoreError(
            f"user names are now case-insensitive, and these accounts would become one: {listed}. "
            "Nothing was changed. Rename or delete all but one of each (in the users table) and start again."
        )
    for user_id, name in rows:
        if name != name.casefold():
            conn.execute(sa.update(users).where(users.c.id == user_id).values(username=name.casefold()))


def downgrade() -> None:
    pass  # the casefolded names are valid names for the previous revision as they are
