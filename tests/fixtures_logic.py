"""Tiny synthetic scenes for the pure-logic tests: detections, cameras, zones, and a mini pipeline.

Frames are 1000×1000 px so a pixel box (100, 200, 300, 400) is the normalised box (0.1, 0.2, 0.3, 0.4).
`simulate` chains the real StationaryTracker → rules → CaseBuilder exactly as a runner would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import numpy as np

from citypatrol.models.detections import Detections
from citypatrol.pipeline.analyzer import evaluate_frame
from citypatrol.pipeline.cases.builder import CaseBuilder, CaseChange
from citypatrol.pipeline.config.models import Camera, CasesConfig, Rules, Zone, ZoneKind
from citypatrol.pipeline.rules.base import Rule, RuleContext
from citypatrol.pipeline.tracker import StationaryTracker
from citypatrol.pipeline.types import Event, Track

SIZE = (1000, 1000)
T0 = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
NOON = time(12, 0)

Item = tuple  # (class, (x1, y1, x2, y2) px[, score])


def dets(*items: Item, size: tuple[int, int] = SIZE) -> Detections:
    if not items:
        return Detections.empty(size, model="test")
    return Detections.from_lists(
        [list(i[1]) for i in items],
        [i[2] if len(i) > 2 else 0.9 for i in items],
        [i[0] for i in items],
        size,
        model="test",
    )


def zone(zid: str, kind: ZoneKind | str, poly: Sequence[Sequence[float]] = ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)),
         hours: Sequence[str] = (), dwell_s: float | None = None, name: str = "") -> Zone:
    return Zone(id=zid, name=name, kind=kind, polygon=[list(p) for p in poly], hours=list(hours), dwell_s=dwell_s)


def rect(x1: float, y1: float, x2: float, y2: float) -> list[tuple[float, float]]:
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def camera(*zones: Zone, cid: str = "cam1", site: str = "") -> Camera:
    return Camera(id=cid, name=cid, source="file.mp4", zones=list(zones), site=site)


def track(tid: int, cls: str, box: tuple[float, float, float, float], *, since: float | None = 0.0,
          first: float = 0.0, last: float = 0.0, score: float = 0.9, cam: str = "cam1") -> Track:
    """A hand-made track; `box` normalised."""
    return Track(cam, tid, cls, box, score, first, last, 1, since, box)


def ctx(cam: Camera, tracks: Iterable[Track], detections: Detections | None = None, *, pts: float,
        rules: Rules | None = None, local_time: time = NOON, image: np.ndarray | None = None,
        reference: np.ndarray | None = None) -> RuleContext:
    return RuleContext(
        camera=cam,
        rules=rules or Rules(),
        tracks=tuple(tracks),
        detections=detections if detections is not None else dets(),
        pts=pts,
        wall=T0 + timedelta(seconds=pts),
        local_time=local_time,
        image=image,
        reference=reference,
    )


@dataclass
class Run:
    events: list[Event] = field(default_factory=list)
    changes: list[CaseChange] = field(default_factory=list)
    tracks: list[list[Track]] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [c.kind.value for c in self.changes]


def simulate(
    cam: Camera,
    frames: Iterable[tuple[float, Detections]],
    rules: Sequence[Rule],
    *,
    settings: Rules | None = None,
    builder: CaseBuilder | None = None,
    cases: CasesConfig | None = None,
    tracker: StationaryTracker | None = None,
    local_time: Callable[[float], time] = lambda pts: NOON,
) -> Run:
    """Run frames through tracker → rules → case builder; collect everything."""
    tracker = tracker or StationaryTracker(cam.id)
    builder = builder or CaseBuilder(cases or CasesConfig(), {cam.id: cam.site})
    run = Run()
    for pts, d in frames:
        tracks = tracker.update(d, pts)
        run.tracks.append(tracks)
        c = ctx(cam, tracks, d, pts=pts, rules=settings, local_time=local_time(pts))
        events, changes = evaluate_frame(rules, c, builder)  # the production path
        run.events.extend(events)
        run.changes.extend(changes)
    return run


def cadence(start: float, stop: float, step: float = 2.0) -> list[float]:
    """Frame times start, start+step, … < stop."""
    return [start + i * step for i in range(int(round((stop - start) / step)))]
