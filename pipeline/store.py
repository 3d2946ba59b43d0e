"""The case store: a small typed API over SQLite (default) or PostgreSQL.

`open_store(url)` connects, upgrades the schema to the newest revision and returns a `Store`.
Every public method is one transaction; what goes in are the pipeline contracts (`Case`,
`Event`, `CaseStatus`, config `Camera`/`Location`/`CodeEntry`) and what comes out are frozen
records (`store_records.py`), never ORM objects.

Writes are idempotent where the pipeline may replay them: a case id opens once, an event id is
stored once (`attach_sighting` returns False on a replay), an outbox idempotency key is queued
once, and evidence is keyed by (case, path).

Mapping the case builder's changes (see `apply_change` in `store_changes.py`):
  opened   → open_case(case, event, codes=..., location=...)
  attached → attach_sighting(case.case_id, event)
  expired  → set_status(case_id, expired, ...)
  reopened → set_status(case_id, reopened, ...) + attach_sighting(case_id, event)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from citypatrol.pipeline import case_states
from citypatrol.pipeline.config import Camera, Category, CodeEntry, Location
from citypatrol.pipeline.store_engine import check_reachable, create_store_engine, migrate, redact
from citypatrol.pipeline.store_records import (
    CaseNotFound,
    CaseRecord,
    CategoryCode,
    EvidenceKind,
    EvidenceRecord,
    OutboxMessage,
    OutboxRecord,
    OutboxStatus,
)
from citypatrol.pipeline.store_schema import (
    CameraRow,
    CaseRow,
    EvidenceRow,
    OutboxRow,
    SightingRow,
    TransitionRow,
    as_utc,
    utcnow,
)
from citypatrol.pipeline.types import Case, CaseStatus, Event, Transition

BEGIN_WRITE = {"citypatrol_begin": "BEGIN IMMEDIATE"}  # only read by the SQLite engine
Values = str | Iterable[str] | None
CountField = Literal["category", "camera", "status", "district"]
_COUNT_COLUMNS = {"category": CaseRow.category, "camera": CaseRow.camera_id, "status": CaseRow.status, "district": CaseRow.district}


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
        """Record a camera's name, site and location (the source URL is never stored)."""
        now = utcnow()
        loc = camera.location
        values = dict(name=camera.name, site=camera.site, lon=loc.lon, lat=loc.lat, address=loc.address,
                      district=loc.district, grid_code=loc.grid_code, updated_at=now)
        with self._session(write=True) as s:
            stmt = self._insert(CameraRow).values(id=camera.id, created_at=now, **values)
            s.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))

    def open_case(
        self,
        case: Case,
        event: Event | None = None,
        *,
        codes: CodeEntry | CategoryCode | None = None,
        location: Location | None = None,
        actor: str = "casebuilder",
        reason: str = "",
        outbox: OutboxMessage | None = None,
    ) -> bool:
        """Store a new case with its opening transition(s) and first sighting.

        `case.history` is stored as the audit trail when given, else one row (none → status).
        `location` defaults to the stored camera's location. Returns False and changes nothing
        when the case id already exists (a replayed opening).
        """
        now = utcnow()
        with self._session(write=True) as s:
            if location is None:
                cam = s.get(CameraRow, case.camera_id)
                location = _camera_location(cam) if cam else Location()
            code = codes or CategoryCode()
            x1, y1, x2, y2 = case.box
            stmt = self._insert(CaseRow).values(
                case_id=case.case_id, camera_id=case.camera_id, category=str(case.category), status=str(case.status),
                x1=x1, y1=y1, x2=x2, y2=y2, zone_id=case.zone_id, opened_pts=case.opened_pts, opened_at=case.opened_at,
                last_seen_pts=case.last_seen_pts, last_seen_at=case.last_seen_at, score=case.score, events=case.events,
                site=case.site, detail=case.detail, model=case.model, category_code=code.code,
                category_name=code.name, category_major=code.major, lon=location.lon, lat=location.lat,
                address=location.address, district=location.district, grid_code=location.grid_code,
                created_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["case_id"])
            opened = _inserted(s, stmt.returning(CaseRow.__table__.c.case_id))
            if opened:
                history = case.history or (Transition(None, case.status, case.opened_at, actor, reason),)
                s.add_all(_transition_row(case.case_id, t) for t in history)
                if event is not None:
                    self._add_sighting(s, case.case_id, event)
                if outbox is not None:
                    self._enqueue(s, case.case_id, outbox)
        return opened

    def attach_sighting(self, case_id: str, event: Event) -> bool:
        """Attach an event to a case; False when this event id is already stored (a replay).

        A new event id counts one more event. Either way the case's last-seen time moves forward
        to the event's (never back) and the best score is kept: `Event.event_id` names a problem
        episode (camera, category, since_pts, box), so a rule that fires again for the same
        episode later is a replay of the sighting yet still news about when it was last seen.
        """
        with self._session(write=True) as s:
            row = self._case_row(s, case_id, lock=True)
            added = self._add_sighting(s, case_id, event)
            changed = added or event.pts > row.last_seen_pts or event.score > row.score
            if event.pts > row.last_seen_pts:
                row.last_seen_pts, row.last_seen_at = event.pts, as_utc(event.wall)
            row.score = max(row.score, event.score)
            if added:
                row.events += 1
            if changed:
                row.updated_at = utcnow()
        return added

    def set_status(
        self,
        case_id: str,
        to: CaseStatus,
        *,
        at: datetime,
        actor: str,
        reason: str = "",
        outbox: OutboxMessage | None = None,
    ) -> Transition:
        """Move a case to `to`, writing the audit row (and an outbox message) in the same transaction.

        Raises CaseNotFound, or `case_states.InvalidTransition` (a ValueError, re-exported by
        `store_records`) when the case state machine (`case_states.ALLOWED`) forbids the move.
        """
        to = CaseStatus(to)
        with self._session(write=True) as s:
            row = self._case_row(s, case_id, lock=True)
            # the state machine decides (raises InvalidTransition); the store only persists
            transition = case_states.transition(_case(row, ()), to, as_utc(at), actor, reason).history[-1]
            row.status = str(to)
            row.updated_at = utcnow()
            s.add(_transition_row(case_id, transition))
            if outbox is not None:
                self._enqueue(s, case_id, outbox)
        return transition

    def add_evidence(self, case_id: str, kind: EvidenceKind | str, path: str, sha256: str, size: int) -> EvidenceRecord:
        """Record an evidence file (path relative to the evidence dir). Same (case, path) again updates it."""
        kind = _evidence_kind(kind)
        rel = _relative_path(path)
        digest = sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        now = utcnow()
        with self._session(write=True) as s:
            self._case_row(s, case_id)
            values = dict(kind=str(kind), sha256=digest, bytes=size, created_at=now)
            stmt = self._insert(EvidenceRow).values(case_id=case_id, path=rel, **values)
            s.execute(stmt.on_conflict_do_update(index_elements=["case_id", "path"], set_=values))
        return EvidenceRecord(case_id, kind, rel, digest, size, now)

    def enqueue(self, case_id: str, message: OutboxMessage) -> bool:
        """Queue a message for the dispatcher on its own; False when its idempotency key is queued already."""
        with self._session(write=True) as s:
            self._case_row(s, case_id)
            return self._enqueue(s, case_id, message)

    # -- reads ----------------------------------------------------------------------------------

    def get_case(self, case_id: str) -> CaseRecord:
        """The case with its history, evidence and sighting count; raises CaseNotFound."""
        with self._session(write=False) as s:
            return self._records(s, [self._case_row(s, case_id)])[0]

    def list_cases(
        self,
        *,
        status: Values = None,
        category: Values = None,
        camera_id: Values = None,
        district: Values = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CaseRecord]:
        """Cases newest first (by opening time). Each filter takes one value or several;
        `since <= opened_at < until`."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
        where = _filters(status, category, camera_id, district, since, until)
        query = select(CaseRow).where(*where).order_by(CaseRow.opened_at.desc(), CaseRow.case_id.desc())
        with self._session(write=False) as s:
            rows = list(s.scalars(query.limit(limit).offset(offset)))
            return self._records(s, rows)

    def count_cases(self, *, status: Values = None, category: Values = None, camera_id: Values = None,
                    district: Values = None, since: datetime | None = None, until: datetime | None = None) -> int:
        """How many cases `list_cases` would page through with these filters."""
        where = _filters(status, category, camera_id, district, since, until)
        with self._session(write=False) as s:
            return int(s.scalar(select(func.count()).select_from(CaseRow).where(*where)) or 0)

    def counts_by(self, field: CountField, *, status: Values = None, category: Values = None, camera_id: Values = None,
                  district: Values = None, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
        """Number of cases per category, camera, status or district, with the same filters as list_cases."""
        if field not in _COUNT_COLUMNS:
            raise ValueError(f"counts_by: field must be one of {', '.join(_COUNT_COLUMNS)}, got {field!r}")
        col = _COUNT_COLUMNS[field]
        where = _filters(status, category, camera_id, district, since, until)
        with self._session(write=False) as s:
            rows = s.execute(select(col, func.count()).where(*where).group_by(col).order_by(col))
            return {str(k): int(n) for k, n in rows}

    def outbox(self, *, status: OutboxStatus | str | None = None, case_id: str | None = None, limit: int = 100) -> list[OutboxRecord]:
        """Outbox messages in the order they were queued."""
        query = select(OutboxRow).order_by(OutboxRow.id).limit(limit)
        if status is not None:
            query = query.where(OutboxRow.status == str(OutboxStatus(status)))
        if case_id is not None:
            query = query.where(OutboxRow.case_id == case_id)
        with self._session(write=False) as s:
            return [
                OutboxRecord(r.id, r.case_id, r.kind, dict(r.payload), r.idempotency_key, OutboxStatus(r.status),
                             r.attempts, r.next_attempt_at, r.last_error, r.created_at)
                for r in s.scalars(query)
            ]

    # -- internals ------------------------------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        """One transaction; commits on success, rolls back on any exception."""
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**BEGIN_WRITE)
            with conn.begin(), Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
                yield session
                session.flush()

    def _insert(self, entity: type) -> Any:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(entity.__table__)  # type: ignore[attr-defined]

    def _case_row(self, s: Session, case_id: str, *, lock: bool = False) -> CaseRow:
        query = select(CaseRow).where(CaseRow.case_id == case_id)
        row = s.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise CaseNotFound(f"no case {case_id!r}")
        return row

    def _add_sighting(self, s: Session, case_id: str, event: Event) -> bool:
        x1, y1, x2, y2 = event.box
        stmt = self._insert(SightingRow).values(
            event_id=event.event_id, case_id=case_id, pts=event.pts, since_pts=event.since_pts, wall=event.wall,
            x1=x1, y1=y1, x2=x2, y2=y2, score=event.score, zone_id=event.zone_id, detail=event.detail,
        ).on_conflict_do_nothing(index_elements=["event_id"])
        return _inserted(s, stmt.returning(SightingRow.__table__.c.id))

    def _enqueue(self, s: Session, case_id: str, m: OutboxMessage) -> bool:
        now = utcnow()
        stmt = self._insert(OutboxRow).values(
            case_id=case_id, kind=m.kind, payload=m.payload, idempotency_key=m.idempotency_key,
            status=str(OutboxStatus.pending), attempts=0, next_attempt_at=m.next_attempt_at or now,
            last_error="", created_at=now,
        ).on_conflict_do_nothing(index_elements=["idempotency_key"])
        return _inserted(s, stmt.returning(OutboxRow.__table__.c.id))

    def _records(self, s: Session, rows: list[CaseRow]) -> list[CaseRecord]:
        """Frozen records for these rows, loading history, evidence and counts in three queries."""
        ids = [r.case_id for r in rows]
        if not ids:
            return []
        history: dict[str, list[Transition]] = {i: [] for i in ids}
        for t in s.scalars(select(TransitionRow).where(TransitionRow.case_id.in_(ids)).order_by(TransitionRow.at, TransitionRow.id)):
            prev = CaseStatus(t.from_status) if t.from_status is not None else None
            history[t.case_id].append(Transition(prev, CaseStatus(t.to_status), t.at, t.actor, t.reason))
        evidence: dict[str, list[EvidenceRecord]] = {i: [] for i in ids}
        for e in s.scalars(select(EvidenceRow).where(EvidenceRow.case_id.in_(ids)).order_by(EvidenceRow.id)):
            evidence[e.case_id].append(EvidenceRecord(e.case_id, EvidenceKind(e.kind), e.path, e.sha256, e.bytes, e.created_at))
        per_case = select(SightingRow.case_id, func.count()).where(SightingRow.case_id.in_(ids)).group_by(SightingRow.case_id)
        counts = {case_id: n for case_id, n in s.execute(per_case)}
        return [
            CaseRecord(
                case=_case(r, tuple(history[r.case_id])),
                codes=CategoryCode(r.category_code, r.category_name, r.category_major),
                location=Location(lon=r.lon, lat=r.lat, address=r.address, district=r.district, grid_code=r.grid_code),
                evidence=tuple(evidence[r.case_id]),
                sightings=int(counts.get(r.case_id, 0)),
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]


def _inserted(s: Session, stmt: Any) -> bool:
    """Run an INSERT … ON CONFLICT DO NOTHING RETURNING …; True if it inserted a row.
    (RETURNING rather than rowcount: drivers do not all report rowcount for INSERT.)"""
    return s.execute(stmt).first() is not None


def _case(r: CaseRow, history: tuple[Transition, ...]) -> Case:
    return Case(
        case_id=r.case_id, camera_id=r.camera_id, category=Category(r.category), status=CaseStatus(r.status),
        box=(r.x1, r.y1, r.x2, r.y2), zone_id=r.zone_id, opened_pts=r.opened_pts, opened_at=r.opened_at,
        last_seen_pts=r.last_seen_pts, last_seen_at=r.last_seen_at, score=r.score, events=r.events, site=r.site,
        detail=r.detail, model=r.model, history=history,
    )


def _transition_row(case_id: str, t: Transition) -> TransitionRow:
    return TransitionRow(
        case_id=case_id, from_status=str(t.from_status) if t.from_status is not None else None,
        to_status=str(t.to_status), at=as_utc(t.at), actor=t.actor, reason=t.reason,
    )


def _camera_location(cam: CameraRow) -> Location:
    return Location(lon=cam.lon, lat=cam.lat, address=cam.address, district=cam.district, grid_code=cam.grid_code)


def _values(v: Values) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return (str(v),)
    return tuple(str(x) for x in v)


def _filters(status: Values, category: Values, camera_id: Values, district: Values,
             since: datetime | None, until: datetime | None) -> list[Any]:
    where: list[Any] = []
    for col, vals in ((CaseRow.status, status), (CaseRow.category, category), (CaseRow.camera_id, camera_id), (CaseRow.district, district)):
        wanted = _values(vals)
        if wanted is not None:
            where.append(col.in_(wanted))
    if since is not None:
        where.append(CaseRow.opened_at >= as_utc(since))
    if until is not None:
        where.append(CaseRow.opened_at < as_utc(until))
    return where


def _evidence_kind(kind: EvidenceKind | str) -> EvidenceKind:
    try:
        return EvidenceKind(kind)
    except ValueError:
        raise ValueError(f"evidence kind must be one of {', '.join(k.value for k in EvidenceKind)}, got {kind!r}") from None


def _relative_path(path: str) -> str:
    """A '/'-separated path inside the evidence dir; absolute paths and '..' are refused."""
    p = PurePosixPath(str(path).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or (p.parts[0].endswith(":")):
        raise ValueError(f"evidence path must be relative to the evidence dir, got {path!r}")
    return p.as_posix()
