"""The store's write steps, each inside a transaction the caller (`Store`) owns.

Kept apart from `Store` so one public call can compose several steps atomically (e.g. a reopened
case: status change + sighting + snapshot in one transaction). Inserts that must be idempotent
use INSERT … ON CONFLICT DO NOTHING RETURNING, which SQLite (3.35+) and PostgreSQL both speak,
so a replay is decided by the database's unique constraint, not by a racy read-then-write.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from citypatrol.pipeline.cases import states as case_states
from citypatrol.pipeline.config.models import Camera, CodeEntry, Location
from citypatrol.pipeline.store.reads import case_from_row
from citypatrol.pipeline.store.records import CaseNotFound, CategoryCode, EvidenceKind, EvidenceRecord, OutboxMessage, OutboxStatus
from citypatrol.pipeline.store.schema import CameraRow, CaseRow, EvidenceRow, OutboxRow, SightingRow, TransitionRow, as_utc, utcnow
from citypatrol.pipeline.types import Case, CaseStatus, Event, PlateRead, Transition


def insert(s: Session, entity: type) -> Any:
    """A dialect INSERT (with on_conflict_*) for this session's database."""
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(entity.__table__)  # type: ignore[attr-defined]


def inserted(s: Session, stmt: Any) -> bool:
    """Run an INSERT … ON CONFLICT DO NOTHING RETURNING …; True if a row went in.
    (RETURNING rather than rowcount: drivers do not all report rowcount for INSERT.)"""
    return s.execute(stmt).first() is not None


def case_row(s: Session, case_id: str, *, lock: bool = False) -> CaseRow:
    """The case's row, locked FOR UPDATE on PostgreSQL when `lock` (SQLite's BEGIN IMMEDIATE already is)."""
    query = select(CaseRow).where(CaseRow.case_id == case_id)
    row = s.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise CaseNotFound(f"no case {case_id!r}")
    return row


def upsert_camera(s: Session, camera: Camera) -> None:
    now = utcnow()
    loc = camera.location
    values = dict(name=camera.name, site=camera.site, lon=loc.lon, lat=loc.lat, address=loc.address,
                  district=loc.district, grid_code=loc.grid_code, updated_at=now)
    stmt = insert(s, CameraRow).values(id=camera.id, created_at=now, **values)
    s.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))


def open_case(s: Session, case: Case, event: Event | None, codes: CodeEntry | CategoryCode | None,
              location: Location | None, actor: str, reason: str) -> bool:
    """Insert the case, its opening history and first sighting; False if the case id exists."""
    if location is None:
        cam = s.get(CameraRow, case.camera_id)
        location = Location(lon=cam.lon, lat=cam.lat, address=cam.address, district=cam.district,
                            grid_code=cam.grid_code) if cam else Location()
    code = codes or CategoryCode()
    now = utcnow()
    x1, y1, x2, y2 = case.box
    stmt = insert(s, CaseRow).values(
        case_id=case.case_id, camera_id=case.camera_id, category=str(case.category), status=str(case.status),
        x1=x1, y1=y1, x2=x2, y2=y2, zone_id=case.zone_id, opened_pts=case.opened_pts, opened_at=case.opened_at,
        last_seen_pts=case.last_seen_pts, last_seen_at=case.last_seen_at, score=case.score, events=case.events,
        site=case.site, detail=case.detail, model=case.model, cue=case.cue, **plate_columns(case.plate),
        category_code=code.code, category_name=code.name,
        category_major=code.major, lon=location.lon, lat=location.lat, address=location.address,
        district=location.district, grid_code=location.grid_code, created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["case_id"])
    if not inserted(s, stmt.returning(CaseRow.__table__.c.case_id)):
        return False
    history = case.history or (Transition(None, case.status, case.opened_at, actor, reason),)
    s.add_all(transition_row(case.case_id, t) for t in history)
    if event is not None:
        add_sighting(s, case.case_id, event)
    return True


def add_sighting(s: Session, case_id: str, event: Event) -> bool:
    x1, y1, x2, y2 = event.box
    stmt = insert(s, SightingRow).values(
        event_id=event.event_id, case_id=case_id, camera_id=event.camera_id, pts=event.pts,
        since_pts=event.since_pts, wall=event.wall, x1=x1, y1=y1, x2=x2, y2=y2, score=event.score,
        zone_id=event.zone_id, detail=event.detail,
    ).on_conflict_do_nothing(index_elements=["event_id"])
    return inserted(s, stmt.returning(SightingRow.__table__.c.id))


def attach(s: Session, row: CaseRow, event: Event) -> bool:
    """Store the sighting (False if its event id is stored) and move the case's last-seen forward.

    `last_seen_pts` is in the case's own camera's stream time, so only its own camera moves it;
    any camera moves `last_seen_at`. Both only ever go forward, so replays change nothing.
    """
    added = add_sighting(s, row.case_id, event)
    if event.camera_id == row.camera_id and event.pts > row.last_seen_pts:
        row.last_seen_pts = event.pts
    wall = as_utc(event.wall)
    if wall > row.last_seen_at:
        row.last_seen_at = wall
    row.score = max(row.score, event.score)
    if added:
        row.events += 1
        row.updated_at = utcnow()
    return added


def sync_snapshot(row: CaseRow, case: Case) -> None:
    """Take the case builder's view of a case's place and counters without ever going back in time."""
    newer = as_utc(case.last_seen_at) >= row.last_seen_at
    row.last_seen_pts = max(row.last_seen_pts, case.last_seen_pts)
    row.last_seen_at = max(row.last_seen_at, as_utc(case.last_seen_at))
    row.score = max(row.score, case.score)
    row.events = max(row.events, case.events)
    if newer:
        row.x1, row.y1, row.x2, row.y2 = case.box
        row.zone_id = case.zone_id
        row.detail = case.detail
    if case.plate is not None and not row.plate:  # a plate read later fills an unread one, never replaces a read one
        for name, value in plate_columns(case.plate).items():
            setattr(row, name, value)


def plate_columns(plate: PlateRead | None) -> dict[str, object]:
    if plate is None:
        return {"plate": None, "plate_score": None, "plate_note": None}
    return {"plate": plate.text, "plate_score": plate.score, "plate_note": plate.note[:200]}


def set_status(s: Session, row: CaseRow, to: CaseStatus, at: datetime, actor: str, reason: str) -> Transition:
    """Validate with the case state machine (raises case_states.InvalidTransition), then write."""
    transition = case_states.transition(case_from_row(row), CaseStatus(to), as_utc(at), actor, reason).history[-1]
    row.status = str(transition.to_status)
    row.updated_at = utcnow()
    s.add(transition_row(row.case_id, transition))
    return transition


def has_transition(s: Session, case_id: str, t: Transition) -> bool:
    """Whether this audit row (same target status, time and actor) is stored already."""
    query = select(TransitionRow.id).where(
        TransitionRow.case_id == case_id, TransitionRow.to_status == str(t.to_status),
        TransitionRow.at == as_utc(t.at), TransitionRow.actor == t.actor,
    )
    return s.scalar(query.limit(1)) is not None


def transition_row(case_id: str, t: Transition) -> TransitionRow:
    return TransitionRow(
        case_id=case_id, from_status=str(t.from_status) if t.from_status is not None else None,
        to_status=str(t.to_status), at=as_utc(t.at), actor=t.actor, reason=t.reason,
    )


def enqueue(s: Session, case_id: str, m: OutboxMessage) -> bool:
    now = utcnow()
    stmt = insert(s, OutboxRow).values(
        case_id=case_id, kind=m.kind, payload=m.payload, idempotency_key=m.idempotency_key,
        status=str(OutboxStatus.pending), attempts=0, next_attempt_at=m.next_attempt_at or now,
        last_error="", created_at=now,
    ).on_conflict_do_nothing(index_elements=["idempotency_key"])
    return inserted(s, stmt.returning(OutboxRow.__table__.c.id))


def add_evidence(s: Session, case_id: str, kind: EvidenceKind | str, path: str, sha256: str, size: int) -> EvidenceRecord:
    """Record an evidence file; the same (case, path) again replaces kind, hash and size."""
    kind = _evidence_kind(kind)
    rel = _relative_path(path)
    digest = sha256.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    case_row(s, case_id)
    now = utcnow()
    values = dict(kind=str(kind), sha256=digest, bytes=size, created_at=now)
    stmt = insert(s, EvidenceRow).values(case_id=case_id, path=rel, **values)
    s.execute(stmt.on_conflict_do_update(index_elements=["case_id", "path"], set_=values))
    return EvidenceRecord(case_id, kind, rel, digest, size, now)


def _evidence_kind(kind: EvidenceKind | str) -> EvidenceKind:
    try:
        return EvidenceKind(kind)
    except ValueError:
        raise ValueError(f"evidence kind must be one of {', '.join(k.value for k in EvidenceKind)}, got {kind!r}") from None


def _relative_path(path: str) -> str:
    """A '/'-separated path inside the evidence dir; absolute paths, drives and '..' are refused."""
    p = PurePosixPath(str(path).replace("\\", "/"))
    if not p.parts or p.is_absolute() or ".." in p.parts or p.parts[0].endswith(":"):
        raise ValueError(f"evidence path must be relative to the evidence dir, got {path!r}")
    return p.as_posix()
