"""The store's read side: rows → frozen records, and the filters shared by listing and counting.

Used inside `Store`'s transactions; nothing here opens a session or commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citypatrol.pipeline.config.models import Location, category_of
from citypatrol.pipeline.store.records import CaseRecord, CategoryCode, EvidenceKind, EvidenceRecord, OutboxRecord, OutboxStatus
from citypatrol.pipeline.store.schema import CaseRow, EvidenceRow, OutboxRow, SightingRow, TransitionRow, as_utc
from citypatrol.pipeline.types import Case, CaseStatus, PlateRead, Transition

Values = str | Iterable[str] | None  # one value, several, or None = any
COUNT_COLUMNS = {"category": CaseRow.category, "camera": CaseRow.camera_id, "status": CaseRow.status, "district": CaseRow.district}
NEWEST_FIRST = (CaseRow.opened_at.desc(), CaseRow.case_id.desc())


def case_from_row(r: CaseRow, history: tuple[Transition, ...] = ()) -> Case:
    return Case(
        case_id=r.case_id, camera_id=r.camera_id, category=category_of(r.category), status=CaseStatus(r.status),
        box=(r.x1, r.y1, r.x2, r.y2), zone_id=r.zone_id, opened_pts=r.opened_pts, opened_at=r.opened_at,
        last_seen_pts=r.last_seen_pts, last_seen_at=r.last_seen_at, score=r.score, events=r.events, site=r.site,
        detail=r.detail, model=r.model, history=history, cue=r.cue or "detector",
        plate=PlateRead(r.plate, r.plate_score or 0.0, r.plate_note or "") if r.plate is not None else None,
    )


def records(s: Session, rows: list[CaseRow]) -> list[CaseRecord]:
    """Frozen records for these rows, loading history, evidence and sighting counts in three queries."""
    ids = [r.case_id for r in rows]
    if not ids:
        return []
    history: dict[str, list[Transition]] = {i: [] for i in ids}
    by_time = select(TransitionRow).where(TransitionRow.case_id.in_(ids)).order_by(TransitionRow.at, TransitionRow.id)
    for t in s.scalars(by_time):
        prev = CaseStatus(t.from_status) if t.from_status is not None else None
        history[t.case_id].append(Transition(prev, CaseStatus(t.to_status), t.at, t.actor, t.reason))
    evidence: dict[str, list[EvidenceRecord]] = {i: [] for i in ids}
    for e in s.scalars(select(EvidenceRow).where(EvidenceRow.case_id.in_(ids)).order_by(EvidenceRow.id)):
        evidence[e.case_id].append(EvidenceRecord(e.case_id, EvidenceKind(e.kind), e.path, e.sha256, e.bytes, e.created_at))
    per_case = select(SightingRow.case_id, func.count()).where(SightingRow.case_id.in_(ids)).group_by(SightingRow.case_id)
    counts = {case_id: n for case_id, n in s.execute(per_case)}
    return [
        CaseRecord(
            case=case_from_row(r, tuple(history[r.case_id])),
            codes=CategoryCode(r.category_code, r.category_name, r.category_major),
            location=Location(lon=r.lon, lat=r.lat, address=r.address, district=r.district, grid_code=r.grid_code),
            evidence=tuple(evidence[r.case_id]),
            sightings=int(counts.get(r.case_id, 0)),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def outbox_record(r: OutboxRow) -> OutboxRecord:
    return OutboxRecord(r.id, r.case_id, r.kind, dict(r.payload), r.idempotency_key, OutboxStatus(r.status),
                        r.attempts, r.next_attempt_at, r.last_error, r.created_at)


def _values(v: Values) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return (str(v),)
    return tuple(str(x) for x in v)


def filters(status: Values = None, category: Values = None, camera_id: Values = None, district: Values = None,
            since: datetime | None = None, until: datetime | None = None) -> list[Any]:
    """WHERE clauses for the case filters; `since <= opened_at < until`."""
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
