"""Cases remember the cue that opened them (detector, text, scene_change), so 核查 re-runs that cue.

Revision ID: 0005_case_cue
Revises: 0004_casefold_usernames
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_case_cue"
down_revision: str | None = "0004_casefold_usernames"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("cue", sa.String(32), nullable=False, server_default="detector"))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("cue")
