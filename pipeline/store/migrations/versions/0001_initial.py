"""Initial store schema: cameras, cases, sightings, transitions, evidence, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written against `store/schema.py` as of this revision and frozen here: revisions use plain
SQLAlchemy types (no imports from the live models), so later model changes cannot rewrite history.
Times are `DateTime(timezone=True)` (timestamptz on PostgreSQL, ISO text in UTC on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _box() -> list[sa.Column]:
    return [sa.Column(c, sa.Float(), nullable=False) for c in ("x1", "y1", "x2", "y2")]


def _location() -> list[sa.Column]:
    return [
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("district", sa.String(100), nullable=False),
        sa.Column("grid_code", sa.String(64), nullable=False),
    ]


def _case_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["case_id"], ["cases.case_id"], name=f"fk_{table}_case_id_cases", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        *_location(),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cameras"),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        *_box(),
        sa.Column("zone_id", sa.String(64), nullable=True),
        sa.Column("opened_pts", sa.Float(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("last_seen_pts", sa.Float(), nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("category_code", sa.String(32), nullable=False),
        sa.Column("category_name", sa.String(100), nullable=False),
        sa.Column("category_major", sa.String(100), nullable=False),
        *_location(),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("case_id", name="pk_cases"),
    )
    op.create_index("ix_cases_status_opened_at", "cases", ["status", "opened_at"])
    op.create_index("ix_cases_camera_id_opened_at", "cases", ["camera_id", "opened_at"])
    op.create_index("ix_cases_category_opened_at", "cases", ["category", "opened_at"])
    op.create_index("ix_cases_opened_at", "cases", ["opened_at"])
    op.create_index("ix_cases_district", "cases", ["district"])

    op.create_table(
        "case_sightings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("pts", sa.Float(), nullable=False),
        sa.Column("since_pts", sa.Float(), nullable=False),
        sa.Column("wall", TS, nullable=False),
        *_box(),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        _case_fk("case_sightings"),
        sa.PrimaryKeyConstraint("id", name="pk_case_sightings"),
        sa.UniqueConstraint("event_id", name="uq_case_sightings_event_id"),
    )
    op.create_index("ix_case_sightings_case_id", "case_sightings", ["case_id"])

    op.create_table(
        "case_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _case_fk("case_transitions"),
        sa.PrimaryKeyConstraint("id", name="pk_case_transitions"),
    )
    op.create_index("ix_case_transitions_case_id_at", "case_transitions", ["case_id", "at"])

    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _case_fk("evidence"),
        sa.PrimaryKeyConstraint("id", name="pk_evidence"),
        sa.UniqueConstraint("case_id", "path", name="uq_evidence_case_id_path"),
    )
    op.create_index("ix_evidence_case_id", "evidence", ["case_id"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _case_fk("outbox"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_case_id", "outbox", ["case_id"])
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("outbox", "evidence", "case_transitions", "case_sightings", "cases", "cameras"):
        op.drop_table(table)
