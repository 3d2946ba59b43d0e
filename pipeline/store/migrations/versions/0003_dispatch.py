"""Dispatch closed loop: callback receipts (replay protection) and case handling deadlines.

Revision ID: 0003_dispatch
Revises: 0002_review
Create Date: 2026-11-25

Frozen against `store/dispatch_schema.py` as of this revision (plain SQLAlchemy types only).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_dispatch"
down_revision: str | None = "0002_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "callback_receipts",
        sa.Column("callback_id", sa.String(128), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("callback_id", name="pk_callback_receipts"),
    )
    op.create_index("ix_callback_receipts_received_at", "callback_receipts", ["received_at"])
    op.create_table(
        "case_deadlines",
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("overdue_at", TS, nullable=True),
        sa.Column("overdue_source", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.case_id"], name="fk_case_deadlines_case_id_cases", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", name="pk_case_deadlines"),
    )


def downgrade() -> None:
    op.drop_table("case_deadlines")
    op.drop_index("ix_callback_receipts_received_at", table_name="callback_receipts")
    op.drop_table("callback_receipts")
