"""The store's tables as typed SQLAlchemy 2 ORM models.

These models are the single description of the schema: Alembic revisions under `migrations/`
are written against them, and a test checks that a migrated database matches them exactly.
Nothing outside `store/case_store.py` (and migrations) should import this module — callers get frozen
records from `store/records.py`, never ORM objects.

Choices worth knowing:
- Categories, statuses and kinds are plain strings, validated in Python, so adding a category
  or a case state needs no migration (and no ALTER TYPE on PostgreSQL).
- `cases.camera_id` is deliberately not a foreign key: a case outlives the camera config that
  produced it (cameras get renamed, removed, re-imported), and its location is snapshotted on
  the case anyway so the dispatch system gets what the camera was at the time.
- Times are stored as UTC. SQLite has no time zone type, so `UTCDateTime` converts on the way
  in and attaches UTC on the way out; callers always get aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (Frame.wall is UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamp stored in UTC, returned as an aware UTC datetime on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":  # stored as ISO text; keep it naive so text order = time order
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class PlaceColumns:
    """Where a camera is (and, snapshotted on a case, where it was when the case opened), and when
    the row was written."""

    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(300), default="")
    district: Mapped[str] = mapped_column(String(100), default="")
    grid_code: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CameraRow(PlaceColumns, Base):
    """A camera as last configured: name, place and site, for listing and reports."""

    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    site: Mapped[str] = mapped_column(String(64), default="")


class CaseRow(PlaceColumns, Base):
    """One problem at one place; the codes and location are a snapshot taken when it opened."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_status_opened_at", "status", "opened_at"),
        Index("ix_cases_camera_id_opened_at", "camera_id", "opened_at"),
        Index("ix_cases_category_opened_at", "category", "opened_at"),
        Index("ix_cases_opened_at", "opened_at"),
        Index("ix_cases_district", "district"),
    )

    case_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    zone_id: Mapped[str | None] = mapped_column(String(64))
    opened_pts: Mapped[float] = mapped_column(Float)
    opened_at: Mapped[datetime]
    last_seen_pts: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[datetime]
    score: Mapped[float] = mapped_column(Float)
    events: Mapped[int] = mapped_column(Integer, default=1)
    site: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    cue: Mapped[str] = mapped_column(String(32), default="detector")  # the cue that opened it: detector, text, scene_change
    # parking: the vehicle's plate ("" = unread, with the reason in plate_note); all NULL = never read
    plate: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    plate_score: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    plate_note: Mapped[str | None] = mapped_column(String(200), nullable=True, default=None)
    category_code: Mapped[str] = mapped_column(String(32), default="")
    category_name: Mapped[str] = mapped_column(String(100), default="")
    category_major: Mapped[str] = mapped_column(String(100), default="")


class SightingRow(Base):
    """One event attached to a case. `event_id` is unique: a replayed event is stored once."""

    __tablename__ = "case_sightings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[str] = mapped_column(String(64))  # may differ from the case's: same-site cameras
    pts: Mapped[float] = mapped_column(Float)  # stream seconds of this camera
    since_pts: Mapped[float] = mapped_column(Float)
    wall: Mapped[datetime]
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    zone_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class TransitionRow(Base):
    """Audit trail: every status change of a case, who or what made it, and why."""

    __tablename__ = "case_transitions"
    __table_args__ = (Index("ix_case_transitions_case_id_at", "case_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")


class EvidenceRow(Base):
    """A file under the evidence dir that belongs to a case, with its hash for integrity."""

    __tablename__ = "evidence"
    __table_args__ = (UniqueConstraint("case_id", "path", name="uq_evidence_case_id_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxRow(Base):
    """A message to the dispatch system, written in the same transaction as the change it reports."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
