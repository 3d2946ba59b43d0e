"""What the review center reads and writes beyond the case store's own API.

- Decisions (confirm, reject, reclassify, merge, note): each is one transaction that changes the
  case through the case state machine (status changes) or its snapshot (category), writes the
  state machine's audit row where the status moves, and an `audit_log` row with user and time.
- Evidence by its row id (the API serves files by id only), cameras with their latest snapshot,
  versioned zones, an audit listing, statistics, and the cases changed since a cursor (for the
  live queue).

Errors: `CaseNotFound` (unknown case), `InvalidTransition` (the state machine refuses),
`ReviewConflict` (e.g. merging a case into itself, a stale zone version).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select, update

from citypatrol.pipeline.store import writes as w
from citypatrol.pipeline.cases.states import FINAL
from citypatrol.pipeline.config.models import Category, CodeEntry, category_of, is_builtin
from citypatrol.pipeline.store.review_schema import AuditRow, ZoneVersionRow
from citypatrol.pipeline.store.schema import CameraRow, CaseRow, EvidenceRow, OutboxRow, SightingRow, TransitionRow, as_utc, utcnow
from citypatrol.pipeline.store.users import audit, transaction
from citypatrol.pipeline.types import CaseStatus, Transition

S = CaseStatus
REVIEW_QUEUE: tuple[CaseStatus, ...] = (S.detected, S.pending_review, S.reopened)
OPEN: tuple[CaseStatus, ...] = tuple(s for s in CaseStatus if s not in FINAL and s is not S.expired)
DECISIONS = ("confirm", "reject")


class UnknownCategory(ValueError):
    """A category that is neither built-in nor configured."""


class ReviewConflict(ValueError):
    """A review request that contradicts the stored state (not a state-machine refusal)."""


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    id: int
    case_id: str
    kind: str
    path: str  # relative to the evidence dir
    sha256: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    case_id: str | None
    target: str
    detail: dict[str, Any]
    reason: str


@dataclass(frozen=True, slots=True)
class CameraInfo:
    id: str
    name: str
    site: str
    address: str
    district: str
    grid_code: str
    lon: float | None
    lat: float | None
    open_cases: int
    last_case_at: datetime | None
    snapshot_evidence_id: int | None


@dataclass(frozen=True, slots=True)
class ZoneVersion:
    camera_id: str
    version: int
    zones: list[dict[str, Any]]
    created_at: datetime
    created_by: str


def _evidence(r: EvidenceRow) -> EvidenceItem:
    return EvidenceItem(r.id, r.case_id, r.kind, r.path, r.sha256, r.bytes, r.created_at)


def _audit(r: AuditRow) -> AuditEntry:
    return AuditEntry(r.id, r.at, r.actor, r.action, r.case_id, r.target, dict(r.detail or {}), r.reason)


class ReviewStore:
    def __init__(self, engine: Engine, codes: Mapping[str, CodeEntry]) -> None:
        self._engine = engine
        self._codes = dict(codes)

    # -- decisions ------------------------------------------------------------------------------

    def decide(self, case_id: str, action: str, to: CaseStatus, *, actor: str, reason: str = "") -> Transition:
        """confirm (→ approved) or reject (→ rejected): the status change and its audit row, atomically."""
        if action not in DECISIONS:
            raise ValueError(f"unknown decision {action!r}")
        with transaction(self._engine, write=True) as s:
            row = w.case_row(s, case_id, lock=True)
            t = w.set_status(s, row, to, utcnow(), actor, reason)
            audit(s, actor, action, case_id=case_id, at=t.at, reason=reason, detail={
                "from": t.from_status.value if t.from_status else None, "to": t.to_status.value,
                "category": row.category, "detected_category": self._detected_category(s, row),
            })
            return t

    def reclassify(self, case_id: str, category: Category | str, *, actor: str, reason: str = "") -> str:
        """Change a case's category (and its city code snapshot); returns the old category."""
        category = category_of(category)
        if not is_builtin(category) and category not in self._codes:
            raise UnknownCategory(f"unknown category {category.value!r}: neither built-in nor configured under `categories`")
        with transaction(self._engine, write=True) as s:
            row = w.case_row(s, case_id, lock=True)
            if CaseStatus(row.status) in FINAL:
                raise ReviewConflict(f"case {case_id} is {row.status}: a final case is not reclassified")
            old = row.category
            if old == category.value:
                raise ReviewConflict(f"case {case_id} is {old} already")
            row.category = category.value
            code = self._codes.get(category)
            if code is not None:
                row.category_code, row.category_name, row.category_major = code.code, code.name, code.major
            row.updated_at = utcnow()
            audit(s, actor, "reclassify", case_id=case_id, reason=reason, detail={"from": old, "to": category.value})
            return old

    def merge(self, case_id: str, into: str, *, actor: str, reason: str = "") -> Transition:
        """Merge `case_id` into `into`: its sightings move over and it is rejected as a duplicate."""
        if case_id == into:
            raise ReviewConflict("a case cannot be merged into itself")
        with transaction(self._engine, write=True) as s:
            first, second = sorted((case_id, into))  # lock in a fixed order: no deadlock between two merges
            rows = {cid: w.case_row(s, cid, lock=True) for cid in (first, second)}
            src, dst = rows[case_id], rows[into]
            if CaseStatus(dst.status) in (S.rejected, S.closed):
                raise ReviewConflict(f"case {into} is {dst.status}: merge into an open case")
            why = f"merged into {into}" + (f": {reason}" if reason else "")
            t = w.set_status(s, src, S.rejected, utcnow(), actor, why)
            moved = s.execute(update(SightingRow).where(SightingRow.case_id == case_id).values(case_id=into)).rowcount or 0
            dst.events += max(int(moved), 0)
            dst.last_seen_at = max(dst.last_seen_at, src.last_seen_at)
            if src.camera_id == dst.camera_id:
                dst.last_seen_pts = max(dst.last_seen_pts, src.last_seen_pts)
            dst.score = max(dst.score, src.score)
            dst.updated_at = utcnow()
            audit(s, actor, "merge", case_id=case_id, target=into, at=t.at, reason=reason,
                  detail={"into": into, "sightings": int(moved), "category": src.category})
            return t

    def correct_box(self, case_id: str, box: tuple[float, float, float, float], *, actor: str, reason: str = "",
                    evidence_id: int | None = None) -> AuditEntry:
        """A reviewer's box for the object on one of the case's evidence frames (normalised x1, y1, x2, y2;
        `evidence_id`: the frame it was drawn on, when known).

        The case keeps the box the pipeline found (dedup and re-checks go by it); the correction is
        an audit row, the newest one wins, and `citypatrol dataset export` labels with it.
        """
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
            raise ValueError(f"box {box} is not inside the frame as x1 < x2, y1 < y2 in 0…1")
        with transaction(self._engine, write=True) as s:
            row = w.case_row(s, case_id, lock=True)
            detail: dict[str, Any] = {"from": [row.x1, row.y1, row.x2, row.y2], "to": [round(v, 5) for v in (x1, y1, x2, y2)]}
            if evidence_id is not None:
                ev = s.get(EvidenceRow, evidence_id)
                if ev is None or ev.case_id != case_id or ev.kind != "frame":
                    raise ReviewConflict(f"evidence {evidence_id} is not a frame of case {case_id}")
                detail["evidence"] = ev.path
            row.updated_at = utcnow()
            entry = audit(s, actor, "correct_box", case_id=case_id, reason=reason, detail=detail)
            s.flush()
            return _audit(entry)

    def add_note(self, case_id: str, text: str, *, actor: str) -> AuditEntry:
        with transaction(self._engine, write=True) as s:
            row = w.case_row(s, case_id)
            row.updated_at = utcnow()
            entry = audit(s, actor, "note", case_id=case_id, reason=text)
            s.flush()
            return _audit(entry)

    @staticmethod
    def _detected_category(s: Any, row: CaseRow) -> str:
        """The category the pipeline gave the case, before any reviewer reclassified it."""
        first = s.scalar(select(AuditRow).where(AuditRow.case_id == row.case_id, AuditRow.action == "reclassify")
                         .order_by(AuditRow.id).limit(1))
        return str(first.detail.get("from", row.category)) if first is not None else row.category

    # -- reads ----------------------------------------------------------------------------------

    def activity(self, case_id: str) -> list[AuditEntry]:
        """Audit rows about this case (decisions, notes, reclassifications, merges into it), oldest first."""
        query = select(AuditRow).where((AuditRow.case_id == case_id) | ((AuditRow.action == "merge") & (AuditRow.target == case_id)))
        with transaction(self._engine, write=False) as s:
            return [_audit(r) for r in s.scalars(query.order_by(AuditRow.at, AuditRow.id))]

    def audit_log(self, *, limit: int = 100, offset: int = 0, action: str | None = None, actor: str | None = None) -> list[AuditEntry]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit).offset(offset)
        if action:
            query = query.where(AuditRow.action == action)
        if actor:
            query = query.where(AuditRow.actor == actor)
        with transaction(self._engine, write=False) as s:
            return [_audit(r) for r in s.scalars(query)]

    def evidence_for(self, case_ids: Sequence[str]) -> dict[str, list[EvidenceItem]]:
        out: dict[str, list[EvidenceItem]] = {c: [] for c in case_ids}
        if not case_ids:
            return out
        with transaction(self._engine, write=False) as s:
            for r in s.scalars(select(EvidenceRow).where(EvidenceRow.case_id.in_(list(case_ids))).order_by(EvidenceRow.id)):
                out[r.case_id].append(_evidence(r))
        return out

    def evidence(self, evidence_id: int) -> EvidenceItem | None:
        with transaction(self._engine, write=False) as s:
            row = s.get(EvidenceRow, evidence_id)
            return _evidence(row) if row else None

    def cameras(self) -> list[CameraInfo]:
        open_values = [s.value for s in OPEN]
        with transaction(self._engine, write=False) as s:
            cams = {r.id: r for r in s.scalars(select(CameraRow).order_by(CameraRow.id))}
            counts = dict(s.execute(select(CaseRow.camera_id, func.count()).where(CaseRow.status.in_(open_values))
                                    .group_by(CaseRow.camera_id)).all())
            last = dict(s.execute(select(CaseRow.camera_id, func.max(CaseRow.opened_at)).group_by(CaseRow.camera_id)).all())
            snaps = dict(s.execute(select(CaseRow.camera_id, func.max(EvidenceRow.id))
                                   .join(CaseRow, CaseRow.case_id == EvidenceRow.case_id)
                                   .where(EvidenceRow.kind == "frame").group_by(CaseRow.camera_id)).all())
        ids = sorted(set(cams) | set(last))
        out = []
        for cid in ids:
            r = cams.get(cid)
            lt = last.get(cid)
            out.append(CameraInfo(
                id=cid, name=r.name if r else "", site=r.site if r else "", address=r.address if r else "",
                district=r.district if r else "", grid_code=r.grid_code if r else "", lon=r.lon if r else None,
                lat=r.lat if r else None, open_cases=int(counts.get(cid, 0)), last_case_at=as_utc(lt) if lt else None,
                snapshot_evidence_id=snaps.get(cid),
            ))
        return out

    def models_in_cases(self) -> dict[str, int]:
        """Model versions named on stored cases, with how many cases each."""
        with transaction(self._engine, write=False) as s:
            rows = s.execute(select(CaseRow.model, func.count()).group_by(CaseRow.model).order_by(CaseRow.model))
            return {str(m or ""): int(n) for m, n in rows}

    def dead_letters(self, *, limit: int = 200) -> list[tuple[str, str, str, str]]:
        """(case id, status, category, camera) of cases in dead_letter, or with a dead-lettered outbox message."""
        with transaction(self._engine, write=False) as s:
            dead = select(OutboxRow.case_id).where(OutboxRow.status == "dead_letter")
            query = (select(CaseRow.case_id, CaseRow.status, CaseRow.category, CaseRow.camera_id)
                     .where((CaseRow.status == S.dead_letter.value) | CaseRow.case_id.in_(dead))
                     .order_by(CaseRow.updated_at.desc(), CaseRow.case_id).limit(limit))
            return [tuple(r) for r in s.execute(query)]

    # -- zones ----------------------------------------------------------------------------------

    def zones(self, camera_id: str) -> ZoneVersion | None:
        """The newest saved zones of a camera, or None when none were saved from the editor."""
        with transaction(self._engine, write=False) as s:
            row = s.scalar(select(ZoneVersionRow).where(ZoneVersionRow.camera_id == camera_id)
                           .order_by(ZoneVersionRow.version.desc()).limit(1))
            return ZoneVersion(row.camera_id, row.version, list(row.zones), row.created_at, row.created_by) if row else None

    def zone_versions(self, camera_id: str) -> list[ZoneVersion]:
        with transaction(self._engine, write=False) as s:
            rows = s.scalars(select(ZoneVersionRow).where(ZoneVersionRow.camera_id == camera_id).order_by(ZoneVersionRow.version.desc()))
            return [ZoneVersion(r.camera_id, r.version, list(r.zones), r.created_at, r.created_by) for r in rows]

    def save_zones(self, camera_id: str, zones: list[dict[str, Any]], *, base_version: int, actor: str, reason: str = "") -> ZoneVersion:
        """Store `zones` as the camera's next version; ReviewConflict when `base_version` is not the newest."""
        with transaction(self._engine, write=True) as s:
            current = s.scalar(select(func.max(ZoneVersionRow.version)).where(ZoneVersionRow.camera_id == camera_id)) or 0
            if base_version != current:
                raise ReviewConflict(f"camera {camera_id}: zones were saved as version {current} meanwhile (you edited version "
                                     f"{base_version}); reload and edit again")
            now = utcnow()
            row = ZoneVersionRow(camera_id=camera_id, version=current + 1, zones=zones, created_at=now, created_by=actor[:200])
            s.add(row)
            audit(s, actor, "zones.save", target=f"camera:{camera_id}", reason=reason,
                  detail={"version": current + 1, "zones": [z.get("id") for z in zones]})
            return ZoneVersion(camera_id, current + 1, zones, now, actor)

    # -- live queue and statistics ----------------------------------------------------------------

    def changed_since(self, since: datetime, *, limit: int = 200) -> list[tuple[str, datetime]]:
        """(case id, change time) of cases changed, or given new evidence, at or after `since`; oldest first.

        Evidence counts as a change because it is written after the case opens (off the detection path).
        """
        since = as_utc(since)
        cases = select(CaseRow.case_id, CaseRow.updated_at).where(CaseRow.updated_at >= since)
        files = (select(EvidenceRow.case_id, func.max(EvidenceRow.created_at)).where(EvidenceRow.created_at >= since)
                 .group_by(EvidenceRow.case_id))
        latest: dict[str, datetime] = {}
        with transaction(self._engine, write=False) as s:
            for query in (cases.order_by(CaseRow.updated_at).limit(limit), files.limit(limit)):
                for cid, at in s.execute(query):
                    at = as_utc(at)
                    if cid not in latest or at > latest[cid]:
                        latest[cid] = at
        return sorted(latest.items(), key=lambda kv: (kv[1], kv[0]))[:limit]

    def stats(self, *, since: datetime | None, until: datetime | None, timezone: str, max_days: int = 366) -> dict[str, Any]:
        """Cases per local day and category, reviewer-judged precision per category, time to close and to decide."""
        tz = ZoneInfo(timezone)
        where = []
        if since is not None:
            where.append(CaseRow.opened_at >= as_utc(since))
        if until is not None:
            where.append(CaseRow.opened_at < as_utc(until))
        with transaction(self._engine, write=False) as s:
            cases = s.execute(select(CaseRow.case_id, CaseRow.category, CaseRow.opened_at, CaseRow.status).where(*where)).all()
            ids = [c.case_id for c in cases]
            decisions: list[AuditRow] = []
            closes: list[tuple[str, datetime]] = []
            for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
                decisions += list(s.scalars(select(AuditRow).where(AuditRow.case_id.in_(chunk), AuditRow.action.in_(DECISIONS))
                                            .order_by(AuditRow.at, AuditRow.id)))
                closes += [(c, as_utc(at)) for c, at in s.execute(select(TransitionRow.case_id, TransitionRow.at).where(
                    TransitionRow.case_id.in_(chunk), TransitionRow.to_status == S.closed.value))]
        opened = {c.case_id: (c.category, as_utc(c.opened_at)) for c in cases}

        per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for c in cases:
            per_day[as_utc(c.opened_at).astimezone(tz).date().isoformat()][c.category] += 1
        days = _day_range(sorted(per_day), max_days)

        last_decision: dict[str, AuditRow] = {}
        first_decision: dict[str, datetime] = {}
        for d in decisions:
            last_decision[d.case_id] = d
            first_decision.setdefault(d.case_id, as_utc(d.at))
        judged: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # detected category -> [confirmed, judged]
        for cid, d in last_decision.items():
            detected = str((d.detail or {}).get("detected_category") or opened[cid][0])
            current = str((d.detail or {}).get("category") or opened[cid][0])
            judged[detected][1] += 1
            if d.action == "confirm" and current == detected:
                judged[detected][0] += 1

        def hours(pairs: list[tuple[str, float]]) -> dict[str, dict[str, float | int]]:
            by: dict[str, list[float]] = defaultdict(list)
            for cat, h in pairs:
                by[cat].append(h)
            return {cat: {"count": len(v), "median_h": statistics.median(v), "p90_h": _quantile(v, 0.9)} for cat, v in sorted(by.items())}

        close_pairs = [(opened[c][0], (at - opened[c][1]).total_seconds() / 3600) for c, at in closes if c in opened]
        decide_pairs = [(opened[c][0], (at - opened[c][1]).total_seconds() / 3600) for c, at in first_decision.items() if c in opened]
        return {
            "timezone": timezone,
            "total": len(cases),
            "per_day": [{"day": d, "counts": dict(per_day[d])} for d in days],
            "per_category": _count_by(c.category for c in cases),
            "per_status": _count_by(c.status for c in cases),
            "precision": {cat: {"confirmed": v[0], "judged": v[1], "precision": v[0] / v[1] if v[1] else None}
                          for cat, v in sorted(judged.items())},
            "time_to_close": hours([(c, max(h, 0.0)) for c, h in close_pairs]),
            "time_to_decision": hours([(c, max(h, 0.0)) for c, h in decide_pairs]),
        }


def _day_range(days: list[str], max_days: int) -> list[str]:
    """Every day from the first to the last with cases (days without any count too), the last `max_days` of them."""
    if not days:
        return []
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    first = max(first, last - timedelta(days=max_days - 1))
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _count_by(values) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[str(v)] += 1
    return dict(sorted(out.items()))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def case_exists(engine: Engine, case_id: str) -> bool:
    with transaction(engine, write=False) as s:
        return s.scalar(select(CaseRow.case_id).where(CaseRow.case_id == case_id)) is not None

