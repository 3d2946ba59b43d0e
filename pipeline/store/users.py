"""Users, sessions and API tokens of the review center, over the store's database.

- Passwords: argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), rehashed on sign-in when the
  parameters change. An unknown user costs the same hash verification as a wrong password, so
  timing does not tell which user names exist.
- Sessions and API tokens: 256-bit random secrets handed out once; only their SHA-256 is stored.
  A session carries its own CSRF token (hash stored too), checked against the request header.
- Every change here is written to the audit log in the same transaction (`audit()`).

User names are case-insensitive: `Admin` and `admin` are one account. A name is checked as
typed (ASCII letters, digits, `_ . @ -`) and then stored and looked up casefolded (`user_key`).

Roles: `reviewer` (decides cases), `analyst` (reads cases, statistics and models), `admin`
(everything, including zones, users and tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from citypatrol.pipeline.store.engine import BEGIN_OPTION
from citypatrol.pipeline.store.review_schema import ApiTokenRow, AuditRow, SessionRow, UserRow
from citypatrol.pipeline.store.schema import as_utc, utcnow


class Role(StrEnum):
    reviewer = "reviewer"
    analyst = "analyst"
    admin = "admin"


USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a cap keeps a huge body from costing hashing time
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def user_key(username: str) -> str | None:
    """The stored form of a user name (casefolded), or None when it is not a valid user name."""
    return username.casefold() if USERNAME_RE.fullmatch(username) else None


class UserError(ValueError):
    """A user or token request that cannot be done (bad name, weak password, exists already)."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    user: UserRecord
    csrf_hash: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # goes into the HttpOnly cookie; never stored
    csrf: str  # goes into the readable CSRF cookie and the page; never stored
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    name: str
    prefix: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_digest(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_hash)


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Session]:
    """One transaction, as the Store opens them (BEGIN IMMEDIATE for SQLite writes)."""
    with engine.connect() as conn:
        if write:
            conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
        with conn.begin(), Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
            yield session
            session.flush()


def audit(s: Session, actor: str, action: str, *, case_id: str | None = None, target: str = "",
          detail: dict[str, Any] | None = None, reason: str = "", at: datetime | None = None) -> AuditRow:
    """Append one audit row inside the caller's transaction; returns it (its id once flushed)."""
    row = AuditRow(at=as_utc(at) if at else utcnow(), actor=actor[:200], action=action, case_id=case_id,
                   target=target[:200], detail=detail or {}, reason=reason)
    s.add(row)
    return row


def _user(r: UserRow) -> UserRecord:
    return UserRecord(r.id, r.username, Role(r.role), bool(r.active), r.created_at)


def _token(r: ApiTokenRow) -> TokenRecord:
    return TokenRecord(r.id, r.name, r.prefix, Role(r.role), r.created_by, r.created_at, r.expires_at, r.revoked_at,
                       r.last_used_at)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password must have at most {MAX_PASSWORD} characters")


class UserStore:
    """Users, sessions and tokens; one transaction per call, thread-safe like `Store`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- users ----------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: Role | str, *, actor: str) -> UserRecord:
        key = user_key(username)
        if key is None:
            raise UserError("the user name must be 2-64 characters: letters, digits, _ . @ -")
        username = key
        try:
            role = Role(role)
        except ValueError:
            raise UserError(f"role must be one of {', '.join(r.value for r in Role)}, got {role!r}") from None
        check_password(password)
        hashed = _hasher.hash(password)
        try:
            with transaction(self._engine, write=True) as s:
                if s.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
                    raise UserError(f"user {username!r} exists already")
                now = utcnow()
                row = UserRow(username=username, password_hash=hashed, role=role.value, active=True, created_at=now, updated_at=now)
                s.add(row)
                s.flush()
                audit(s, actor, "user.add", target=username, detail={"role": role.value})
                return _user(row)
        except IntegrityError:
            raise UserError(f"user {username!r} exists already") from None

    def set_password(self, username: str, password: str, *, actor: str) -> None:
        check_password(password)
        hashed = _hasher.hash(password)
        with transaction(self._engine, write=True) as s:
            row = self._by_name(s, username)
            row.password_hash = hashed
            row.updated_at = utcnow()
            s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))  # sign out everywhere
            audit(s, actor, "user.password", target=row.username)

    def set_active(self, username: str, active: bool, *, actor: str) -> UserRecord:
        with transaction(self._engine, write=True) as s:
            row = self._by_name(s, username)
            row.active = active
            row.updated_at = utcnow()
            if not active:
                s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            audit(s, actor, "user.enable" if active else "user.disable", target=row.username)
            return _user(row)

    def users(self) -> list[UserRecord]:
        with transaction(self._engine, write=False) as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.username))]

    def user(self, username: str) -> UserRecord | None:
        key = user_key(username)
        if key is None:
            return None
        with transaction(self._engine, write=False) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == key))
            return _user(row) if row else None

    def verify(self, username: str, password: str) -> UserRecord | None:
        """The active user with this password, or None; the same work whether or not the user exists."""
        with transaction(self._engine, write=False) as s:
            key = user_key(username)
            row = s.scalar(select(UserRow).where(UserRow.username == key)) if key is not None else None
            stored = row.password_hash if row is not None else _DUMMY_HASH
            try:
                _hasher.verify(stored, password[:MAX_PASSWORD])
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return None
            if row is None or not row.active:
                return None
            user, rehash = _user(row), _hasher.check_needs_rehash(stored)
        if rehash:
            with transaction(self._engine, write=True) as s:
                row = s.get(UserRow, user.id)
                if row is not None:
                    row.password_hash = _hasher.hash(password)
        return user

    # -- sessions -------------------------------------------------------------------------------

    def start_session(self, user: UserRecord, hours: float, *, ip: str = "") -> NewSession:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + timedelta(hours=hours)
        with transaction(self._engine, write=True) as s:
            s.execute(delete(SessionRow).where(SessionRow.expires_at < now))  # housekeeping
            s.add(SessionRow(token_hash=digest(token), csrf_hash=digest(csrf), user_id=user.id, created_at=now,
                             expires_at=expires, ip=ip[:64]))
            audit(s, f"user:{user.username}", "login", target=user.username, detail={"ip": ip[:64]})
        return NewSession(token, csrf, expires)

    def session(self, token: str) -> SessionRecord | None:
        """The live session for this cookie value, or None (unknown, expired, or user disabled)."""
        if not token or len(token) > 256:
            return None
        with transaction(self._engine, write=False) as s:
            row = s.scalar(select(SessionRow).where(SessionRow.token_hash == digest(token)))
            if row is None or row.expires_at <= utcnow():
                return None
            user = s.get(UserRow, row.user_id)
            if user is None or not user.active:
                return None
            return SessionRecord(row.id, _user(user), row.csrf_hash, row.expires_at)

    def end_session(self, session_id: int, *, actor: str) -> None:
        with transaction(self._engine, write=True) as s:
            s.execute(delete(SessionRow).where(SessionRow.id == session_id))
            audit(s, actor, "logout")

    # -- API tokens -----------------------------------------------------------------------------

    def create_token(self, name: str, role: Role | str, *, actor: str, expires_at: datetime | None = None) -> tuple[str, TokenRecord]:
        """A new bearer token; the secret is returned once and never again."""
        name = name.strip()
        if not name or len(name) > 100:
            raise UserError("the token name must be 1-100 characters")
        try:
            role = Role(role)
        except ValueError:
            raise UserError(f"role must be one of {', '.join(r.value for r in Role)}, got {role!r}") from None
        secret = "cpt_" + secrets.token_urlsafe(32)
        with transaction(self._engine, write=True) as s:
            row = ApiTokenRow(name=name, token_hash=digest(secret), prefix=secret[:10], role=role.value, created_by=actor[:200],
                              created_at=utcnow(), expires_at=as_utc(expires_at) if expires_at else None)
            s.add(row)
            s.flush()
            audit(s, actor, "token.create", target=f"token:{row.id}", detail={"name": name, "role": role.value})
            return secret, _token(row)

    def token(self, secret: str) -> TokenRecord | None:
        """The live token with this secret, or None (unknown, revoked or expired)."""
        if not secret.startswith("cpt_") or len(secret) > 256:
            return None
        now = utcnow()
        with transaction(self._engine, write=False) as s:
            row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest(secret)))
            if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                return None
            record = _token(row)
        if record.last_used_at is None or now - record.last_used_at > timedelta(minutes=5):
            with transaction(self._engine, write=True) as s:
                live = s.get(ApiTokenRow, record.id)
                if live is not None:
                    live.last_used_at = now
        return record

    def tokens(self) -> list[TokenRecord]:
        with transaction(self._engine, write=False) as s:
            return [_token(r) for r in s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id))]

    def revoke_token(self, token_id: int, *, actor: str) -> TokenRecord:
        with transaction(self._engine, write=True) as s:
            row = s.get(ApiTokenRow, token_id)
            if row is None:
                raise KeyError(f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit(s, actor, "token.revoke", target=f"token:{row.id}", detail={"name": row.name})
            return _token(row)

    def log(self, actor: str, action: str, *, case_id: str | None = None, target: str = "", detail: dict[str, Any] | None = None,
            reason: str = "") -> None:
        """An audit row on its own (e.g. a refused sign-in, a delivery retried through the dispatcher)."""
        with transaction(self._engine, write=True) as s:
            audit(s, actor, action, case_id=case_id, target=target, detail=detail, reason=reason)

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _by_name(s: Session, username: str) -> UserRow:
        key = user_key(username)
        row = s.scalar(select(UserRow).where(UserRow.username == key)) if key is not None else None
        if row is None:
            raise KeyError(f"no user {username!r}")
        return row
