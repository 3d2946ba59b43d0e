"""Parking cases carry the vehicle's number plate: the text ("" = unread), the recogniser's score and
a note (read, or why unread). All NULL on cases whose plate was never read.

Revision ID: 0006_case_plate
Revises: 0005_case_cue
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_case_plate"
down_revision: str | None = "0005_case_cue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("plate", sa.String(16), nullable=True))
        batch.add_column(sa.Column("plate_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("plate_note", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        for name in ("plate_note", "plate_score", "plate"):
            batch.drop_column(name)
