"""Store records → API models (one place, so the list, the detail and the live stream agree)."""

from __future__ import annotations

from collections.abc import Sequence

from citypatrol.annotate.labels import category_label
from citypatrol.api.schemas import (
    AuditOut,
    CaseDetailOut,
    CaseOut,
    CategoryOut,
    EvidenceOut,
    LocationOut,
    PlateOut,
    TransitionOut,
)
from citypatrol.api.state import AppState
from citypatrol.pipeline.store.records import CaseRecord
from citypatrol.pipeline.store.review import AuditEntry, EvidenceItem
from citypatrol.pipeline.types import PlateRead


def evidence_url(evidence_id: int) -> str:
    return f"/api/v1/evidence/{evidence_id}"


def camera_names(state: AppState) -> dict[str, str]:
    names = {c.id: c.name for c in state.review.cameras() if c.name}
    names.update({c.id: c.name for c in state.config.cameras if c.name})
    return names


def case_out(r: CaseRecord, evidence: Sequence[EvidenceItem], names: dict[str, str]) -> CaseOut:
    return CaseOut(**_case_fields(r, evidence, names))


def plate_out(p: PlateRead | None) -> PlateOut | None:
    if p is None:
        return None
    return PlateOut(status="read" if p.read else "unread", text=p.text, score=p.score if p.read else None,
                    note="" if p.read else p.note)


def case_detail(r: CaseRecord, evidence: Sequence[EvidenceItem], names: dict[str, str], activity: Sequence[AuditEntry]) -> CaseDetailOut:
    c = r.case
    return CaseDetailOut(
        **_case_fields(r, evidence, names),
        model=c.model,
        reviewed_box=next((list(a.detail["to"]) for a in reversed(activity) if a.action == "correct_box" and "to" in a.detail), None),
        sightings=r.sightings,
        history=[TransitionOut(from_status=t.from_status, to_status=t.to_status, at=t.at, actor=t.actor, reason=t.reason)
                 for t in c.history],
        activity=[audit_out(a) for a in activity],
    )


def audit_out(a: AuditEntry) -> AuditOut:
    return AuditOut(id=a.id, at=a.at, actor=a.actor, action=a.action, case_id=a.case_id, target=a.target, detail=a.detail,
                    reason=a.reason)


def _case_fields(r: CaseRecord, evidence: Sequence[EvidenceItem], names: dict[str, str]) -> dict:
    c = r.case
    lab = category_label(c.category, r.codes.name)
    return dict(
        case_id=c.case_id,
        camera_id=c.camera_id,
        camera_name=names.get(c.camera_id, c.camera_id),
        category=CategoryOut(value=c.category.value, zh=lab.zh, en=lab.en, color=lab.color, code=r.codes.code,
                             code_name=r.codes.name, major=r.codes.major),
        status=c.status,
        box=list(c.box),
        zone_id=c.zone_id,
        opened_at=c.opened_at,
        last_seen_at=c.last_seen_at,
        opened_pts=c.opened_pts,
        last_seen_pts=c.last_seen_pts,
        score=c.score,
        events=c.events,
        detail=c.detail,
        plate=plate_out(c.plate),
        site=c.site,
        location=LocationOut(lon=r.location.lon, lat=r.location.lat, address=r.location.address,
                             district=r.location.district, grid_code=r.location.grid_code),
        evidence=[EvidenceOut(id=e.id, kind=e.kind, url=evidence_url(e.id), sha256=e.sha256, size=e.size, created_at=e.created_at)
                  for e in evidence],
        updated_at=r.updated_at,
    )
