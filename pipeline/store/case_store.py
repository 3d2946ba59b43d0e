"""The case store: a small typed API over SQLite (default) or PostgreSQL.

`open_store(url)` connects, upgrades the schema to the newest revision and returns a `Store`.
Every public method is one transaction; what goes in are the pipeline contracts (`Case`,
`Event`, `CaseStatus`, config `Camera`/`Location`/`CodeEntry`, the case builder's `CaseChange`)
and what comes out are frozen records (`store/records.py`), never ORM objects.

Writes are idempotent where the pipeline may replay them: a case id opens once, an event id is
stored once (`attach_sighting` returns False on a replay), an outbox idempotency key is queued
once, evidence is keyed by (case, path), and times and counters only move forward.

Status changes go through the case state machine (`cases/states.py`); a refused change raises
`InvalidTransition` and writes nothing, including any outbox message given with it.

The case builder's changes map as (`apply_change` does this in one transaction):
  opened   → open_case(case, event, codes=..., location=...)
  attached → attach_sighting(case_id, event) + the builder's box/zone/last-seen/score/events
  expired  → set_status(case_id, expired) with the builder's audit row (time, actor, reason)
  reopened → set_status(case_id, reopened) + attach_sighting + snapshot, as above
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from citypatrol.pipeline.cases import states as case_states

from citypatrol.pipeline.store import writes as w
from citypatrol.pipeline.config.models import Camera, Category, CodeEntry, Location
from citypatrol.pipeline.store.engine import BEGIN_OPTION, check_reachable, create_store_engine, migrate, redact
from citypatrol.pipeline.store.reads import COUNT_COLUMNS, NEWEST_FIRST, Values, filters, outbox_record, records
from citypatrol.pipeline.store.records import (
    CaseRecord,
    CategoryCode,
    EvidenceKind,
    EvidenceRecord,
    OutboxMessage,
    OutboxRecord,
    OutboxStatus,
)
from citypatrol.pipeline.store import tables as store_tables  # noqa: F401  (every area's tables on Base, for the ORM)
from citypatrol.pipeline.store.schema import CaseRow, OutboxRow, utcnow
from citypatrol.pipeline.types import Case, CaseStatus, Event, Transition

if TYPE_CHECKING:  # the builder is pure logic; the store only reads its change records
    from citypatrol.pipeline.cases.builder import CaseChange

log = logging.getLogger(__name__)

CountField = Literal["category", "camera", "status", "district"]
Codes = Mapping[Category, CodeEntry] | CodeEntry | CategoryCode | None


def open_store(url: str, *, echo: bool = False) -> Store:
    """Connect to `url`, upgrade it to the current schema, and return a Store.

    Raises StoreUnavailable (message names the URL, password redacted) when the database cannot
    be reached, StoreError for an unusable URL or a database newer than this code.
    """
    engine = create_store_engine(url, echo=echo)
    try:
        check_reachable(engine)
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


class Store:
    """Cases, their sightings, audit trail, evidence and outbox. Thread-safe: one session per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def url(self) -> str:
        """The database URL with any password redacted."""
        return redact(self._engine.url)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------

    def upsert_camera(self, camera: Camera) -> None:
        """Record a camera's name, site and location (its source URL, which may hold secrets, is not stored)."""
        with self._session(write=True) as s:
            w.upsert_camera(s, camera)

    def open_case(self, case: Case, event: Event | None = None, *, codes: Codes = None, location: Location | None = None,
                  actor: str = "casebuilder", reason: str = "", outbox: OutboxMessage | None = None) -> bool:
        """Store a new case with its audit trail and first sighting.

        `case.history` is stored as the audit trail when given, else one row (none → status).
        `codes`: the category's code entry, or the config's whole code map. `location` defaults
        to the stored camera's. Returns False and writes nothing when the case id exists (a replay).
        """
        with self._session(write=True) as s:
            opened = w.open_case(s, case, event, _code(codes, case.category), location, actor, reason)
            if opened and outbox is not None:
                w.enqueue(s, case.case_id, outbox)
        return opened

    def attach_sighting(self, case_id: str, event: Event) -> bool:
        """Attach an event to a case; False when this event id is already stored (a replay).

        A new event id counts one more event. Either way the case's last-seen time moves forward
        (never back) and the best score is kept: `Event.event_id` names a problem episode
        (camera, category, since_pts, box), so the same episode fired again later is a replayed
        sighting yet still news about when the problem was last seen.
        """
        with self._session(write=True) as s:
            return w.attach(s, w.case_row(s, case_id, lock=True), event)

    def set_status(self, case_id: str, to: CaseStatus, *, at: datetime, actor: str, reason: str = "",
                   outbox: OutboxMessage | None = None) -> Transition:
        """Move a case to `to`, writing the audit row (and an outbox message) in the same transaction.

        Raises CaseNotFound, or `InvalidTransition` (a ValueError from `case_states`, re-exported
        by `store_records`) when the state machine forbids the move.
        """
        with self._session(write=True) as s:
            transition = w.set_status(s, w.case_row(s, case_id, lock=True), to, at, actor, reason)
            if outbox is not None:
                w.enqueue(s, case_id, outbox)
        return transition

    def apply_change(self, change: CaseChange, *, codes: Codes = None, location: Location | None = None) -> bool:
        """Persist one change from the case builder, atomically; False when it was already stored.

        The store's status wins over a stale builder: an expiry the state machine refuses for
        the stored status (a reviewer or the dispatch system moved the case meanwhile) is logged
        and skipped, while the sighting is still recorded. Call `CaseBuilder.sync` with
        `get_case(...).case` to bring the builder up to date.
        """
        case, event, kind = change.case, change.event, str(change.kind)
        if kind not in ("opened", "attached", "expired", "reopened"):
            raise ValueError(f"unknown case change kind {kind!r}")
        with self._session(write=True) as s:
            if kind == "opened":
                return w.open_case(s, case, event, _code(codes, case.category), location, "casebuilder", "")
            row = w.case_row(s, case.case_id, lock=True)
            before = (row.status, row.last_seen_pts, row.last_seen_at, row.score, row.events, row.x1, row.y1, row.x2, row.y2)
            added = False
            if kind in ("expired", "reopened") and row.status != str(case.status):
                last = case.history[-1] if case.history and case.history[-1].to_status == case.status else None
                at = last.at if last else case.last_seen_at
                actor, reason = (last.actor, last.reason) if last else ("casebuilder", kind)
                if last is not None and w.has_transition(s, case.case_id, last):
                    pass  # this change was stored before (a replay after later changes)
                elif case_states.can_transition(CaseStatus(row.status), case.status):
                    w.set_status(s, row, case.status, at, actor, reason)
                else:
                    log.warning("case %s: builder says %s but the store has %s; keeping %s",
                                case.case_id, case.status, row.status, row.status)
            if event is not None:
                added = w.attach(s, row, event)
            w.sync_snapshot(row, case)
            after = (row.status, row.last_seen_pts, row.last_seen_at, row.score, row.events, row.x1, row.y1, row.x2, row.y2)
            if after != before:
                row.updated_at = utcnow()
            return added or after != before

    def add_evidence(self, case_id: str, kind: EvidenceKind | str, path: str, sha256: str, size: int) -> EvidenceRecord:
        """Record an evidence file (path relative to the evidence dir, '/'-separated); the same
        (case, path) again replaces its kind, hash and size. Raises ValueError on a bad path, kind or hash."""
        with self._session(write=True) as s:
            return w.add_evidence(s, case_id, kind, path, sha256, size)

    def enqueue(self, case_id: str, message: OutboxMessage) -> bool:
        """Queue a message for the dispatcher on its own; False when its idempotency key is queued already."""
        with self._session(write=True) as s:
            w.case_row(s, case_id)
            return w.enqueue(s, case_id, message)

    # -- reads ----------------------------------------------------------------------------------

    def get_case(self, case_id: str) -> CaseRecord:
        """The case with its history, evidence and sighting count; raises CaseNotFound."""
        with self._session(write=False) as s:
            return records(s, [w.case_row(s, case_id)])[0]

    def list_cases(self, *, status: Values = None, category: Values = None, camera_id: Values = None,
                   district: Values = None, since: datetime | None = None, until: datetime | None = None,
                   limit: int = 100, offset: int = 0) -> list[CaseRecord]:
        """Cases newest first (by opening time, then id). Each filter takes one value or several;
        `since <= opened_at < until`."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
        query = select(CaseRow).where(*filters(status, category, camera_id, district, since, until)).order_by(*NEWEST_FIRST)
        with self._session(write=False) as s:
            return records(s, list(s.scalars(query.limit(limit).offset(offset))))

    def count_cases(self, *, status: Values = None, category: Values = None, camera_id: Values = None,
                    district: Values = None, since: datetime | None = None, until: datetime | None = None) -> int:
        """How many cases `list_cases` pages through with these filters."""
        where = filters(status, category, camera_id, district, since, until)
        with self._session(write=False) as s:
            return int(s.scalar(select(func.count()).select_from(CaseRow).where(*where)) or 0)

    def counts_by(self, field: CountField, *, status: Values = None, category: Values = None, camera_id: Values = None,
                  district: Values = None, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
        """Number of cases per category, camera, status or district, with the filters of list_cases."""
        if field not in COUNT_COLUMNS:
            raise ValueError(f"counts_by: field must be one of {', '.join(COUNT_COLUMNS)}, got {field!r}")
        col = COUNT_COLUMNS[field]
        where = filters(status, category, camera_id, district, since, until)
        with self._session(write=False) as s:
            return {str(k): int(n) for k, n in s.execute(select(col, func.count()).where(*where).group_by(col).order_by(col))}

    def unclosed_cases(self, *, seen_since: datetime | None = None) -> list[Case]:
        """Every case not closed (with history), oldest first: what `CaseBuilder.restore` needs at start-up.
        `seen_since` leaves out cases last seen before it (long-expired ones)."""
        query = select(CaseRow).where(CaseRow.status != str(CaseStatus.closed)).order_by(CaseRow.opened_at, CaseRow.case_id)
        if seen_since is not None:
            query = query.where(CaseRow.last_seen_at >= seen_since)
        with self._session(write=False) as s:
            return [r.case for r in records(s, list(s.scalars(query)))]

    def outbox(self, *, status: OutboxStatus | str | None = None, case_id: str | None = None, limit: int = 100) -> list[OutboxRecord]:
        """Outbox messages in the order they were queued."""
        query = select(OutboxRow).order_by(OutboxRow.id).limit(limit)
        if status is not None:
            query = query.where(OutboxRow.status == str(OutboxStatus(status)))
        if case_id is not None:
            query = query.where(OutboxRow.case_id == case_id)
        with self._session(write=False) as s:
            return [outbox_record(r) for r in s.scalars(query)]

    # -- internals ------------------------------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any exception. Writes on SQLite
        begin IMMEDIATE (take the write lock up front, waiting up to the busy timeout)."""
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with conn.begin(), Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
                yield session
                session.flush()


def _code(codes: Codes, category: Category) -> CodeEntry | CategoryCode | None:
    if codes is None or isinstance(codes, (CodeEntry, CategoryCode)):
        return codes
    return codes.get(category)
