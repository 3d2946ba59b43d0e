"""Tables of the review center: users, their sessions, machine API tokens, the audit log, and
the zones edited in the browser (one row per saved version).

Declared on the store's `Base`, so they share its naming convention and metadata (the Alembic
revision `0002_review` creates them). Only `store/users.py` and `store/review.py` use these
models; callers get frozen records.

Choices worth knowing:
- Session and API token secrets are never stored: only their SHA-256 (they are 256-bit random
  values, so a fast hash is enough; passwords, being human, get argon2 in `store/users.py`).
- `audit_log.case_id` is not a foreign key: the audit trail outlives what it talks about.
- Zones are stored as whole versions per camera (JSON list of zone dicts in the config's shape),
  so any earlier version can be read back and a concurrent edit is caught by its version number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from citypatrol.pipeline.store.schema import Base, utcnow


class UserRow(Base):
    """A person who signs in to the review center."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    """A browser session: the cookie's token hash, its CSRF token hash and its expiry."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ip: Mapped[str] = mapped_column(String(64), default="")


class ApiTokenRow(Base):
    """A bearer token for a machine (dispatch callbacks, scripts), with a role like a user's."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise a token in a list
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditRow(Base):
    """Who did what, when: every review decision, note, zone edit, user and token change, sign-in."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_case_id_at", "case_id", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[str | None] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")


class ZoneVersionRow(Base):
    """The zones of one camera as saved from the zone editor; the highest version is current."""

    __tablename__ = "zone_versions"
    __table_args__ = (UniqueConstraint("camera_id", "version", name="uq_zone_versions_camera_id_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    zones: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
