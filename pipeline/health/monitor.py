"""Camera health: offline, frozen, covered and moved cameras as start/end events.

A `HealthMonitor` per camera watches its frames and its source's state and reports each fault
as a `HealthEvent` when it starts (`ended_at` None) and again when it ends (same `started_at`,
`ended_at` set). Pure logic: frames come in as arrays, times are passed in, nothing is read or
written. The measures live in `health/measures.py`; thresholds in `HealthSettings` (config
section `health:`).

Conditions and the choices behind them
--------------------------------------
- offline: no frame for `offline_after_s` (from the last frame, or from when watching began),
  or at once when the source reports `failed` (it has given up). Ends with the next frame.
  `finished` / `closed` sources (end of a recording, shutdown) stop the offline watch.
- frozen: the picture has not changed for `frozen_after_s`. Each frame is compared with the
  first frame of the current still run (not just the previous one, so slow creep adds up); the
  change is measured per block of a 16×16 grid and the 90th percentile block must stay at or
  below `frozen_max_diff` (0.25 grey levels). Why this measure: a live camera on a perfectly
  static scene still differs frame to frame by sensor noise (≥ 0.3 grey levels per block even
  after H.264 on a clean daytime sensor; ≥ 1 at night), while a hung encoder, a stuck ISP or an
  NVR holding its last frame repeats the decoded picture exactly. Ignoring the 10 % most-changed
  blocks keeps a running OSD clock from hiding a frozen picture (cameras burn the clock in after
  the stuck stage). Limits: (1) a stream whose frozen picture is re-encoded at a changing quality
  (an encoder re-coding every keyframe anew) can differ as much as noise and is not found;
  (2) a noise-free static view with heavy noise reduction and no motion in over 10 % of the
  picture can look frozen — raise `frozen_after_s` for such a camera; (3) a covered picture
  (black, uniform) is reported as covered, never as frozen.
- covered: dark, uniform or blurred for `covered_after_s` (see `covered_reason`). Night: dark
  needs both a low mean AND no highlight (lamps, windows, headlights keep a night street's
  99.5th percentile high), and spread/sharpness are taken on a 160-px picture where sensor
  noise has averaged out and normalised by the brightness spread, so an underexposed but
  structured view is not blind. Limits: a pitch-black view with no light at all reads as
  covered (it is blind, whatever the cause); sensor noise at night can still mask a mildly
  smeared lens; a partly covered lens (< the whole picture) is not found by these global measures.
- moved: every `moved_check_s` the frame is matched with the reference image (ORB features,
  cross-checked, RANSAC similarity transform): shift of the picture centre beyond `moved_shift`
  of width/height, rotation beyond `moved_rotation_deg`, or zoom beyond `moved_scale`, for
  `moved_after_s`. A clear picture that matches nothing (turned to another view) counts as moved
  when `moved_when_unmatched`. Features are local and compared by position, not brightness, so
  sun, shadows, dusk and parked cars leave the transform alone (a fixed camera drifts < 0.5 %
  over a day). No check while covered (a covered picture matches nothing). Limit: a night view
  that shares too few features with a daytime reference reads as unmatched.
- Every condition ends after `recover_s` of good readings (offline: with the first frame).

How the runner uses it
----------------------
the live runner uses the adapter in `health/live.py` (`live_hook`), which does the following
per camera, and any other runner (batch, distributed worker) can do the same:

    monitor = HealthMonitor(cam.id, camera_state.reference, config.health)
    for frame in source.frames():
        sink(monitor.observe(frame.image, frame.pts, frame.wall))
        if monitor.rules_suspended:
            continue          # no detector, tracker, rules or case-builder tick for this camera
        analyzer.process(frame, detections)
    # and every few seconds from the runner's own loop, for every live camera:
    sink(monitor.observe_source(source.stats.state, datetime.now(UTC)))

`rules_suspended` is True while a condition in `suspend_rules` (default moved and frozen) is
active: a moved camera's zones no longer fit the picture and a frozen picture would keep a
parked car parked forever. Skipping the frame also keeps the tracker from learning shifted
boxes; when the camera returns, the gap is an ordinary detection gap. `health_blocks_rules(events)`
gives the same answer from a stream of events (e.g. in a process that only sees events).
`health_case(event, settings)` turns an event into a maintenance case record (category
`camera_fault`); its `case_id` is the same for the start and the end event, so the end closes it.

All times for one monitor must come from one clock. `frame.wall` of a live source is its capture
time (≈ now), so `tick(datetime.now(UTC))` fits. A recording played in real time carries the
recording's clock in `frame.wall`: pass `now=` (the runner's clock) to `observe`, or do not
call `tick` for recordings (a file does not go offline). A monitor is not thread-safe: call it
from one thread (or under a lock).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from citypatrol.pipeline.config.models import HealthKind, HealthSettings
from citypatrol.pipeline.health.measures import (
    Motion,
    ReferenceMatcher,
    ViewStats,
    covered_reason,
    moved_reason,
    prepare,
    still_difference,
    view_stats,
)
from citypatrol.streams.source import SourceState

__all__ = [
    "FAULT_NAMES",
    "HealthEvent",
    "HealthKind",
    "HealthMonitor",
    "HealthReading",
    "health_blocks_rules",
    "health_case",
]

EPS = 1e-6
CASE_CATEGORY = "camera_fault"
FAULT_NAMES = {  # names the maintenance team knows from video-diagnostics systems
    HealthKind.offline: "视频丢失",
    HealthKind.frozen: "画面冻结",
    HealthKind.covered: "画面遮挡",
    HealthKind.moved: "镜头偏移",
}


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A camera fault starting (`ended_at` None) or ending (`ended_at` set); both carry `started_at`."""

    camera_id: str
    kind: HealthKind
    started_at: datetime
    ended_at: datetime | None
    detail: str
    score: float  # severity 0..1 of the reading that started it

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def case_id(self) -> str:
        """Idempotent id of the fault, shared by its start and end events."""
        return f"health:{self.camera_id}:{self.kind.value}:{self.started_at.isoformat()}"

    @property
    def event_id(self) -> str:
        return f"{self.case_id}:{'start' if self.active else 'end'}"

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class HealthReading:
    """What the last frame measured (for status pages, metrics and threshold tuning)."""

    wall: datetime
    pts: float
    stats: ViewStats
    covered: str | None  # 'dark' | 'uniform' | 'blurred'
    still_diff: float | None  # grey levels against the still run's first frame; None = first frame / covered
    motion: Motion | None  # None = not checked on this frame


@dataclass(slots=True)
class _Condition:
    """Persistence and hysteresis of one fault: bad for `after_s` → start; good for `recover_s` → end."""

    camera_id: str
    kind: HealthKind
    bad_since: datetime | None = None
    good_since: datetime | None = None
    event: HealthEvent | None = None  # the start event while active

    def update(
        self, bad: bool, wall: datetime, after_s: float, recover_s: float,
        detail: str = "", score: float = 1.0, since: datetime | None = None,
    ) -> HealthEvent | None:
        if bad:
            self.good_since = None
            if self.bad_since is None:
                self.bad_since = since or wall
            if self.event is None and (wall - self.bad_since).total_seconds() + EPS >= after_s:
                self.event = HealthEvent(self.camera_id, self.kind, self.bad_since, None, detail, round(score, 4))
                return self.event
            return None
        if self.event is None:
            self.bad_since = None
            return None
        if self.good_since is None:
            self.good_since = wall
        if (wall - self.good_since).total_seconds() + EPS >= recover_s:
            return self.end(self.good_since, detail)
        return None

    def end(self, at: datetime, detail: str) -> HealthEvent:
        assert self.event is not None
        ended = replace(self.event, ended_at=at, detail=detail or f"{self.kind.value} ended")
        self.event = self.bad_since = self.good_since = None
        return ended


class HealthMonitor:
    """Health of one camera. Feed it every analysed frame (`observe`) and, from the runner's
    clock, the source's state (`observe_source`) or just the time (`tick`)."""

    def __init__(self, camera_id: str, reference: np.ndarray | None, settings: HealthSettings | None = None) -> None:
        self.camera_id = camera_id
        self.settings = settings or HealthSettings()
        self._matcher = ReferenceMatcher(reference, self.settings.moved_min_inliers) if reference is not None else None
        self._cond = {k: _Condition(camera_id, k) for k in HealthKind}
        self._watch_since: datetime | None = None
        self._last_frame: datetime | None = None  # arrival of the last frame, in the tick clock
        self._source: SourceState | None = None
        self._anchor: np.ndarray | None = None  # first frame of the current still run
        self._anchor_wall: datetime | None = None
        self._last_check: datetime | None = None
        self._flat_reference = False
        self.last: HealthReading | None = None

    # -- queries ----------------------------------------------------------------------------
    @property
    def active(self) -> dict[HealthKind, HealthEvent]:
        """The faults going on now, by kind (their start events)."""
        return {k: c.event for k, c in self._cond.items() if c.event is not None}

    @property
    def rules_suspended(self) -> bool:
        """True while a fault in `settings.suspend_rules` is active: skip this camera's zone rules."""
        return any(k in self.active for k in self.settings.suspend_rules)

    @property
    def moved_check_enabled(self) -> bool:
        """A reference image was given and (once a frame has been seen) has enough texture to match."""
        return self._matcher is not None and not self._flat_reference

    # -- inputs -----------------------------------------------------------------------------
    def observe(self, frame_image: np.ndarray, pts: float, wall: datetime, *, now: datetime | None = None) -> list[HealthEvent]:
        """One analysed frame (BGR or grey). `now`: arrival in the tick clock, when it differs from `wall`."""
        s = self.settings
        if not s.enabled:
            return []
        arrived = now or wall
        if self._watch_since is None:
            self._watch_since = arrived
        self._last_frame = arrived
        out: list[HealthEvent] = []
        off = self._cond[HealthKind.offline]
        if off.event is not None:
            gap = (arrived - off.event.started_at).total_seconds()
            out.append(off.end(arrived, f"frames again after {gap:.0f} s without"))

        views = prepare(frame_image)
        stats = view_stats(views)
        cov = covered_reason(stats, s)
        c = self._cond[HealthKind.covered]
        ev = c.update(
            cov is not None, wall, s.covered_after_s, s.recover_s,
            detail=cov[2] if cov else "picture clear again", score=cov[1] if cov else 0.0,
        )
        out += [ev] if ev else []

        diff = self._still(views.gray, wall, covered=cov is not None)
        frozen = diff is not None and diff <= s.frozen_max_diff
        ev = self._cond[HealthKind.frozen].update(
            frozen, wall, s.frozen_after_s, s.recover_s,
            detail=(f"picture unchanged since stream second {pts - (wall - self._anchor_wall).total_seconds():.0f} "
                    f"(change {diff:.2f} grey levels)" if frozen and self._anchor_wall else "picture changing again"),
            score=1.0 - (diff or 0.0) / s.frozen_max_diff if frozen else 0.0,
            since=self._anchor_wall,
        )
        out += [ev] if ev else []

        motion = None
        check = self._matcher is not None and cov is None and self._check_due(wall)  # a covered picture matches nothing
        if check:
            self._last_check = wall
            self._flat_reference = not self._matcher.usable(views.gray.shape[:2])
        if check and not self._flat_reference:
            motion = self._matcher.motion(views.gray)
            moved = moved_reason(motion, s)
            ev = self._cond[HealthKind.moved].update(
                moved is not None, wall, s.moved_after_s, s.recover_s,
                detail=moved[1] if moved else "view back on its reference", score=moved[0] if moved else 0.0,
            )
            out += [ev] if ev else []

        self.last = HealthReading(wall, pts, stats, cov[0] if cov else None, diff, motion)
        return out

    def observe_source(self, state: SourceState, wall: datetime) -> list[HealthEvent]:
        """The source's state (from `Source.stats.state`) at `wall`, in the tick clock."""
        self._source = state
        return self.tick(wall)

    def tick(self, wall: datetime) -> list[HealthEvent]:
        """Time passes without frames: raise offline when they have stopped for too long."""
        s = self.settings
        if not s.enabled or self._source in (SourceState.finished, SourceState.closed):
            return []
        if self._watch_since is None:
            self._watch_since = wall
        off = self._cond[HealthKind.offline]
        if off.event is not None:
            return []
        since = self._last_frame or self._watch_since
        failed = self._source is SourceState.failed
        silent = (wall - since).total_seconds()
        if not failed and silent + EPS < s.offline_after_s:
            return []
        why = "source gave up" if failed else f"no frames for {silent:.0f} s"
        if self._source is SourceState.offline:
            why += " (source reconnecting)"
        ev = off.update(True, wall, 0.0, s.recover_s, detail=why, score=1.0, since=since)
        return [ev] if ev else []

    # -- helpers ----------------------------------------------------------------------------
    def _still(self, gray: np.ndarray, wall: datetime, *, covered: bool) -> float | None:
        """Change against the still run's first frame; starts a new run when the picture changed."""
        if covered:  # a blank picture cannot show whether it is frozen
            self._anchor = self._anchor_wall = None
            return None
        if self._anchor is None:
            self._anchor, self._anchor_wall = gray, wall
            return None
        diff = still_difference(self._anchor, gray, self.settings.frozen_ignore_share)
        if diff > self.settings.frozen_max_diff:
            self._anchor, self._anchor_wall = gray, wall
        return diff

    def _check_due(self, wall: datetime) -> bool:
        return self._last_check is None or (wall - self._last_check).total_seconds() + EPS >= self.settings.moved_check_s


def health_blocks_rules(events: Iterable[HealthEvent], settings: HealthSettings | None = None) -> bool:
    """Replay one camera's health events in order: is a rule-suspending fault still open at the end?"""
    suspend = set((settings or HealthSettings()).suspend_rules)
    open_: set[tuple[str, HealthKind, datetime]] = set()
    for ev in events:
        key = (ev.camera_id, ev.kind, ev.started_at)
        if ev.active:
            open_.add(key)
        else:
            open_.discard(key)
    return any(kind in suspend for _, kind, _ in open_)


def health_case(event: HealthEvent, settings: HealthSettings | None = None) -> dict | None:
    """A maintenance case record for a health event; None when health cases are off.

    The start event opens the case (`status` 'open'), the end event resolves the same `case_id`
    (`status` 'resolved'). `code` comes from `maintenance_codes[kind]`, else `maintenance_code`.
    """
    s = settings or HealthSettings()
    if not s.cases:
        return None
    return {
        "case_id": event.case_id,
        "event_id": event.event_id,
        "category": CASE_CATEGORY,
        "kind": event.kind.value,
        "code": s.maintenance_codes.get(event.kind, s.maintenance_code),
        "name": FAULT_NAMES[event.kind],
        "camera_id": event.camera_id,
        "status": "open" if event.active else "resolved",
        "opened_at": event.started_at.isoformat(),
        "resolved_at": event.ended_at.isoformat() if event.ended_at else None,
        "duration_s": event.duration_s,
        "description": event.detail,
        "score": event.score,
    }
