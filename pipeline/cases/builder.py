"""Events → cases: one case per problem per place, however often and by whichever camera it is seen.

Dedup is by place, never by tracker id (a track lost and found again, or seen by a second camera,
is the same problem). An event joins a case of its category when

- the case was seen by the same camera at the same place: box IoU ≥ `cases.match_iou`, or the
  same zone and overlapping boxes (a car shuffling inside its zone);
- or the case is at the same `site` (cameras configured as watching one place) and the event's
  camera has not seen this case yet — boxes of different views cannot be compared, so the site is
  the place. A camera that has already seen the case must match it by its own box.

Open cases win over expired ones; among several, the best overlap wins. An object that came to
rest after the case was last seen and looks different (another car in the same space: its event's
`look` against the case's) is a new problem, never a continuation or a reopening; one that looks
the same (the car back after a while) is the case's.

Time. Stream time (`pts`) is per camera, so the builder keeps, per case, the last `pts` at which
each camera saw it, and per camera the latest `pts` it was told (`add`, `tick`). A case expires
when every camera that saw it has not seen it for `grace_s` of its own stream time; the runner
calls `tick(camera_id, pts, wall)` after adding each analysed frame's events (rules refresh every
`refresh_s` < `grace_s`, so a persisting problem never expires). Only cases that may still expire
by the state machine (detected, pending_review, approved, reopened) become `expired`; cases the
dispatch system owns (dispatched …) or a reviewer rejected are just forgotten after the grace
(a problem back later opens a new case). An expired case is kept for `reopen_window_s` after its
expiry (last seen + grace, per camera); the same problem at the same place in that window reopens
it (status reopened, same id); later it opens a new case. Cross-camera windows use wall time.

`Case.last_seen_pts`, `box` and `zone_id` are in the terms of the case's own camera (the one that
opened it); sightings by other cameras update `last_seen_at`, `events` and `score`.

Case ids are deterministic, so a replay of the same footage gives the same ids:
`case_id_for(camera, category, opened_pts, box)` = first 16 hex digits of SHA-256 over
"camera|category|opened pts in ms|box to 3 decimals" (a "-2" … suffix on the rare clash).

The runner syncs review/dispatch decisions back with `sync(case)`; `restore(cases)` seeds the
builder from the store at start-up (assuming each camera's `pts` continues).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np

from citypatrol.pipeline.appearance import same_look
from citypatrol.pipeline.boxes import box_iou, box_overlap_min
from citypatrol.pipeline.cases.states import can_transition, opened_row, transition
from citypatrol.pipeline.config.models import CasesConfig, Category, Config, category_of
from citypatrol.pipeline.types import Box, Case, CaseStatus, Event, cue_of

ACTOR = "casebuilder"


class ChangeKind(StrEnum):
    opened = "opened"
    attached = "attached"
    expired = "expired"
    reopened = "reopened"


@dataclass(frozen=True, slots=True)
class CaseChange:
    """What happened to a case; the runner persists `case` (and `event`, when there is one)."""

    kind: ChangeKind
    case: Case
    event: Event | None = None


@dataclass(slots=True)
class _Entry:
    case: Case
    places: dict[str, tuple[Box, str | None]] = field(default_factory=dict)  # camera -> (box, zone) last seen
    seen: dict[str, float] = field(default_factory=dict)  # camera -> its pts when it last saw the case
    expired_at: dict[str, float] = field(default_factory=dict)  # camera -> its pts at expiry
    expired_wall: datetime | None = None
    look: tuple[float, ...] = ()  # what the object looked like when last seen by the case's camera


def case_id_for(camera_id: str, category: Category, opened_pts: float, box: Box) -> str:
    """Deterministic case id (see the module docstring)."""
    key = "|".join(
        [camera_id, category_of(category).value, str(int(round(opened_pts * 1000))), ",".join(f"{v:.3f}" for v in box)]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _overlap(a: Box, b: Box, min_share: float = 0.3) -> bool:
    """One box mostly covers the other (intersection ≥ `min_share` of the smaller box).

    A car that shuffled in its spot, or a box cut short by an occlusion, still joins its case;
    a neighbour parked beside it, whose box only touches, does not.
    """
    return box_overlap_min(a, b) >= min_share


class CaseBuilder:
    """Turns events into case changes; state is the open and recently expired cases, in memory."""

    def __init__(self, cases: CasesConfig | None = None, sites: Mapping[str, str] | None = None) -> None:
        """`sites`: camera id → site id (cameras watching the same place share one; '' = none)."""
        self.config = cases if cases is not None else CasesConfig()
        self.sites = dict(sites or {})
        self._live: dict[str, _Entry] = {}
        self._expired: dict[str, _Entry] = {}
        self._now: dict[str, float] = {}

    @classmethod
    def from_config(cls, config: Config) -> "CaseBuilder":
        return cls(config.cases, {c.id: c.site for c in config.cameras})

    # -- reading ---------------------------------------------------------------------------------

    @property
    def open_cases(self) -> list[Case]:
        return [e.case for e in self._live.values()]

    @property
    def expired_cases(self) -> list[Case]:
        """Expired cases still inside their reopen window."""
        return [e.case for e in self._expired.values()]

    def get(self, case_id: str) -> Case | None:
        entry = self._live.get(case_id) or self._expired.get(case_id)
        return entry.case if entry else None

    # -- events ----------------------------------------------------------------------------------

    def add(self, event: Event, busy: Mapping[str, list[Box]] | None = None) -> CaseChange:
        """Attach the event to its case, reopen an expired one, or open a new case.

        `busy`: case id → boxes of other events of the same frame already attached to it. Such a
        case takes this event only if its box is one of those (the same object); a different
        object seen at the same moment (a car parked beside) is not folded into it.
        """
        cam = event.camera_id
        self._now[cam] = max(self._now.get(cam, event.pts), event.pts)
        free = self._free(busy, event)
        entry = self._best(filter(free, self._live.values()), event)
        if entry is not None:
            self._attach(entry, event)
            return CaseChange(ChangeKind.attached, entry.case, event)
        entry = self._best((e for e in self._expired.values() if self._in_window(e, event) and free(e)), event)
        if entry is not None:
            case = transition(entry.case, CaseStatus.reopened, event.wall, ACTOR, f"back at the same place: {event.detail}")
            entry.case = case
            entry.expired_at.clear()
            entry.expired_wall = None
            del self._expired[case.case_id]
            self._live[case.case_id] = entry
            self._attach(entry, event)
            return CaseChange(ChangeKind.reopened, entry.case, event)
        return CaseChange(ChangeKind.opened, self._open(event), event)

    def add_all(self, events: Iterable[Event]) -> list[CaseChange]:
        """One analysed frame's events (of one camera): distinct objects never share a case."""
        busy: dict[str, list[Box]] = {}
        changes = []
        for event in events:
            change = self.add(event, busy)
            busy.setdefault(change.case.case_id, []).append(event.box)
            changes.append(change)
        return changes

    def tick(self, camera_id: str, pts: float, wall: datetime) -> list[CaseChange]:
        """Tell the builder `camera_id` has been analysed up to `pts`; expire what is gone.

        Call once per analysed frame, after `add`ing that frame's events. Returns `expired` changes.
        """
        self._now[camera_id] = max(self._now.get(camera_id, pts), pts)
        grace = self.config.grace_s
        changes: list[CaseChange] = []
        for cid, entry in list(self._live.items()):
            if camera_id not in entry.seen or self._silence(entry.seen) < grace:
                continue
            del self._live[cid]
            if not can_transition(entry.case.status, CaseStatus.expired):
                continue  # owned by review/dispatch now: forget, do not expire
            entry.case = transition(entry.case, CaseStatus.expired, wall, ACTOR, f"not seen for {grace:.0f} s")
            entry.expired_at = {c: t + grace for c, t in entry.seen.items()}
            entry.expired_wall = entry.case.last_seen_at + timedelta(seconds=grace)
            self._expired[cid] = entry
            changes.append(CaseChange(ChangeKind.expired, entry.case))
        window = self.config.reopen_window_s
        for cid, entry in list(self._expired.items()):
            if camera_id in entry.expired_at and self._silence(entry.expired_at) > window:
                del self._expired[cid]
        return changes

    # -- outside decisions -----------------------------------------------------------------------

    def sync(self, case: Case) -> None:
        """Take a case whose status changed elsewhere (review, dispatch); closed cases are forgotten."""
        for pool in (self._live, self._expired):
            entry = pool.get(case.case_id)
            if entry is None:
                continue
            if case.status is CaseStatus.closed:
                del pool[case.case_id]
            elif pool is self._expired and case.status is not CaseStatus.expired:
                del pool[case.case_id]
                entry.case = case
                entry.expired_at.clear()
                self._live[case.case_id] = entry
            else:
                entry.case = case
            return

    def restore(self, cases: Iterable[Case]) -> None:
        """Seed from stored cases (start-up); closed ones are skipped."""
        grace = self.config.grace_s
        for case in cases:
            if case.status is CaseStatus.closed:
                continue
            entry = _Entry(case, {case.camera_id: (case.box, case.zone_id)}, {case.camera_id: case.last_seen_pts})
            if case.status is CaseStatus.expired:
                entry.expired_at = {case.camera_id: case.last_seen_pts + grace}
                entry.expired_wall = case.last_seen_at + timedelta(seconds=grace)
                self._expired[case.case_id] = entry
            else:
                self._live[case.case_id] = entry

    # -- internals -------------------------------------------------------------------------------

    def _silence(self, last: Mapping[str, float]) -> float:
        """Shortest time, over the cameras in `last`, since their entry in `last` (own clocks)."""
        return min(self._now.get(c, t) - t for c, t in last.items())

    def _score(self, entry: _Entry, event: Event) -> float | None:
        case = entry.case
        if case.category != event.category:
            return None
        if event.camera_id == case.camera_id and event.since_pts > case.last_seen_pts and entry.look and event.look \
                and not same_look(np.asarray(event.look), np.asarray(entry.look)):
            return None  # arrived after the case was last seen, and looks different: another object
        place = entry.places.get(event.camera_id)
        if place is not None:
            box, zone = place
            iou = box_iou(box, event.box)
            if iou >= self.config.match_iou:
                return 2.0 + iou
            if event.zone_id is not None and event.zone_id == zone and _overlap(box, event.box):
                return 1.0 + iou
            return None
        site = self.sites.get(event.camera_id, "")
        if site and case.site == site:
            return 0.0
        return None

    def _free(self, busy: Mapping[str, list[Box]] | None, event: Event):  # noqa: ANN202
        """A filter: cases this event may join, given what the other events of its frame joined."""
        if not busy:
            return lambda entry: True
        iou = self.config.match_iou
        return lambda entry: all(box_iou(b, event.box) >= iou for b in busy.get(entry.case.case_id, ()))

    def _best(self, entries: Iterable[_Entry], event: Event) -> _Entry | None:
        scored = [(score, e) for e in entries if (score := self._score(e, event)) is not None]
        if not scored:
            return None
        # best overlap first; ties go to the oldest case, for a stable choice
        return min(scored, key=lambda p: (-p[0], p[1].case.opened_pts, p[1].case.case_id))[1]

    def _in_window(self, entry: _Entry, event: Event) -> bool:
        window = self.config.reopen_window_s
        if event.camera_id in entry.expired_at:
            return event.pts - entry.expired_at[event.camera_id] <= window
        if entry.expired_wall is None:
            return False
        return (event.wall - entry.expired_wall).total_seconds() <= window

    def _attach(self, entry: _Entry, event: Event) -> None:
        cam = event.camera_id
        entry.places[cam] = (event.box, event.zone_id)
        entry.seen[cam] = max(entry.seen.get(cam, event.pts), event.pts)
        case = entry.case
        own = cam == case.camera_id
        if own and event.look:
            entry.look = event.look
        entry.case = dataclasses.replace(
            case,
            box=event.box if own else case.box,
            zone_id=event.zone_id if own else case.zone_id,
            last_seen_pts=max(case.last_seen_pts, event.pts) if own else case.last_seen_pts,
            last_seen_at=max(case.last_seen_at, event.wall),
            score=max(case.score, event.score),
            events=case.events + 1,
            detail=event.detail or case.detail,
        )

    def _open(self, event: Event) -> Case:
        base = case_id_for(event.camera_id, event.category, event.pts, event.box)
        case_id, n = base, 1
        while case_id in self._live or case_id in self._expired:
            n += 1
            case_id = f"{base}-{n}"
        case = Case(
            case_id=case_id,
            camera_id=event.camera_id,
            category=event.category,
            status=CaseStatus.detected,
            box=event.box,
            zone_id=event.zone_id,
            opened_pts=event.pts,
            opened_at=event.wall,
            last_seen_pts=event.pts,
            last_seen_at=event.wall,
            score=event.score,
            events=1,
            site=self.sites.get(event.camera_id, ""),
            detail=event.detail,
            model=event.model,
            cue=cue_of(event.classes),
            history=(opened_row(event.wall, ACTOR, f"{event.detail} [event {event.event_id}]"),),
        )
        self._live[case_id] = _Entry(case, {event.camera_id: (event.box, event.zone_id)}, {event.camera_id: event.pts},
                                     look=event.look)
        return case
