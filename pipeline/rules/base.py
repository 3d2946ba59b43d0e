"""What every rule shares: the frame context it is given, the Rule protocol, and when to fire.

A rule looks at one analysed frame of one camera (`RuleContext`: the camera, its merged rule
settings, the tracker's live tracks, the raw detections, stream time `pts`, wall time and the
site's local time of day) and returns the `Event`s whose condition holds *now*.

Firing (`Refresher`): a condition that holds is reported once when it first holds (the dwell
crossing), then again every `refresh_s` seconds of stream time while it keeps holding, so the case
builder can keep the case's last-seen time fresh and expire it only when the problem is gone.
A condition is identified by a key (camera, track or cluster, zone) and the time since which it has
held (`since`); a new `since` (the object moved and came to rest again) is a new crossing and fires
at once. Refresh events carry the same `since_pts` as the first one, so `Event.event_id` of a
refresh equals that of the first event while the box is unchanged — stores should upsert events.

Only tracks matched in the current frame fire (`RuleContext.seen_now`): a track in an occlusion
gap keeps its dwell and fires again when it is seen.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Protocol, runtime_checkable

import numpy as np

from citypatrol.models.detections import Detections
from citypatrol.models.text import TextReading
from citypatrol.pipeline.boxes import box_area, box_overlap_min
from citypatrol.pipeline.config.models import Camera, Category, Rules, Zone, ZoneKind
from citypatrol.pipeline.types import Box, Event, Track
from citypatrol.pipeline.zones import box_in_zone, is_active, seconds_active, zones_of_kind

EPS = 1e-6
DEFAULT_REFRESH_S = 60.0


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Everything a rule may look at for one analysed frame of one camera."""

    camera: Camera
    rules: Rules  # the camera's merged settings: Config.rules_for(camera)
    tracks: tuple[Track, ...]  # the tracker's live tracks after this frame
    detections: Detections  # this frame's detections (people near a stall need no track)
    pts: float  # stream seconds of this frame
    wall: datetime  # UTC wall time of this frame
    local_time: time  # time of day in the site's time zone (zone hours)
    image: np.ndarray | None = None  # BGR frame, for the scene-change cue only
    reference: np.ndarray | None = None  # the camera's reference image (BGR), loaded by the runner
    texts: TextReading | None = None  # printed text read in this frame's ad areas; None = not read this frame
    local_date: date | None = None  # the day in the site's time zone (permits of the ads register); None = the UTC day

    def today(self) -> date:
        return self.local_date or self.wall.date()

    def seen_now(self) -> list[Track]:
        """Tracks matched in this frame."""
        return [t for t in self.tracks if t.last_seen >= self.pts - EPS]

    def zones(self, *kinds: ZoneKind | str, active: bool = True) -> list[Zone]:
        """The camera's zones of these kinds, only those in their hours unless `active=False`."""
        zs = zones_of_kind(self.camera.zones, *kinds)
        return [z for z in zs if is_active(z, self.local_time)] if active else zs

    def pixel_scale(self) -> tuple[float, float]:
        """(width, height) of the frame, to measure normalised distances in true proportions."""
        w, h = self.detections.image_size
        return (float(w) or 1.0, float(h) or 1.0)


@runtime_checkable
class Rule(Protocol):
    """One problem's rule. Instances are shared by all cameras; their state is keyed by camera."""

    name: str
    categories: tuple[Category | str, ...]

    @property
    def required_classes(self) -> frozenset[str]:
        """Every canonical class this rule can use (any one of them may be enough)."""
        ...

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        """Why the rule cannot work with a model offering these classes; None when it can."""
        ...

    def evaluate(self, ctx: RuleContext) -> list[Event]:
        """The events whose condition holds in this frame (after the firing policy)."""
        ...


class Refresher:
    """Decides whether a condition that holds now should be reported (see the module docstring)."""

    def __init__(self, refresh_s: float = DEFAULT_REFRESH_S, since_tol_s: float = 3.0) -> None:
        self.refresh_s = refresh_s
        self.since_tol_s = since_tol_s  # `since` jitter (e.g. from hours arithmetic) is not a new crossing
        self._fired: dict[Hashable, tuple[float, float]] = {}  # key -> (since, pts last fired)

    def due(self, key: Hashable, since: float, pts: float) -> bool:
        prev = self._fired.get(key)
        if prev is None or abs(prev[0] - since) > self.since_tol_s or pts - prev[1] >= self.refresh_s - EPS:
            self._fired[key] = (since, pts)
            return True
        return False

    def prune(self, camera_id: str, pts: float) -> None:
        """Forget this camera's conditions not reported for three refresh periods (keys start with camera id)."""
        horizon = 3.0 * self.refresh_s
        for k in [k for k, (_, last) in self._fired.items() if _camera_of(k) == camera_id and pts - last > horizon]:
            del self._fired[k]

    def __len__(self) -> int:
        return len(self._fired)


def _camera_of(key: Hashable) -> object:
    return key[0] if isinstance(key, tuple) and key else None


def effective_since(since: float | None, zone: Zone | None, local_time: time, pts: float) -> float | None:
    """Start of the dwell that counts in `zone`: not before the zone's current daily window began.

    None when the object is not at rest or the zone is outside its hours.
    """
    if since is None:
        return None
    if zone is None:
        return since
    active_for = seconds_active(zone, local_time)
    if active_for is None:
        return None
    return max(since, pts - active_for)


def dwell_for(zone: Zone | None, default_s: float) -> float:
    """The zone's own dwell if it sets one, else the rule's."""
    return zone.dwell_s if zone is not None and zone.dwell_s is not None else default_s


def resting_in_zones(ctx: RuleContext, track: Track, zones: Iterable[Zone], default_dwell_s: float) -> tuple[Zone, float] | None:
    """The first zone (in configuration order) that holds the track's anchor and where it has been at
    rest for the dwell, with the start of that dwell; None when there is none."""
    for z in zones:
        if not box_in_zone(z, track.box, track.class_name):
            continue
        since = effective_since(track.stationary_since, z, ctx.local_time, ctx.pts)
        if since is not None and ctx.pts - since + EPS >= dwell_for(z, default_dwell_s):
            return z, since
    return None


def zone_label(zone: Zone) -> str:
    return zone.name or zone.id


def union_box(boxes: Iterable[Box]) -> Box:
    bs = list(boxes)
    return (min(b[0] for b in bs), min(b[1] for b in bs), max(b[2] for b in bs), max(b[3] for b in bs))


def box_gap(a: Box, b: Box, scale: tuple[float, float] = (1.0, 1.0)) -> float:
    """Distance between two boxes' nearest edges (0 if they touch or overlap), in `scale` units."""
    w, h = scale
    dx = max(0.0, b[0] - a[2], a[0] - b[2]) * w
    dy = max(0.0, b[1] - a[3], a[1] - b[3]) * h
    return float(np.hypot(dx, dy))


class BaseRule:
    """Shared plumbing: the refresher, the class check, and building events."""

    name: str = ""
    categories: tuple[Category | str, ...] = ()

    def __init__(self, rules: Rules | None = None, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        self.settings = rules if rules is not None else Rules()
        self.refresh = Refresher(refresh_s)

    @property
    def category(self) -> Category | str:
        return self.categories[0]

    @property
    def required_classes(self) -> frozenset[str]:
        return frozenset()

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        need = self.required_classes
        if need and not (need & model_classes):
            return f"{self.name}: the model offers none of the classes {sorted(need)}"
        return None

    def evaluate(self, ctx: RuleContext) -> list[Event]:
        events = self._evaluate(ctx)
        self.refresh.prune(ctx.camera.id, ctx.pts)
        return events

    def _evaluate(self, ctx: RuleContext) -> list[Event]:  # pragma: no cover - abstract
        raise NotImplementedError

    def event(
        self,
        ctx: RuleContext,
        category: Category | str,
        box: Box,
        zone: Zone | None,
        since: float,
        score: float,
        track_ids: Iterable[int],
        classes: Iterable[str],
        detail: str,
        look: tuple[float, ...] = (),
    ) -> Event:
        return Event(
            camera_id=ctx.camera.id,
            category=category,
            box=tuple(float(v) for v in box),  # type: ignore[arg-type]
            zone_id=zone.id if zone is not None else None,
            pts=ctx.pts,
            wall=ctx.wall,
            since_pts=since,
            score=float(score),
            track_ids=tuple(sorted(set(track_ids))),
            classes=tuple(sorted(set(classes))),
            detail=detail,
            model=ctx.detections.model,
            look=look,
        )


def linked_groups(linked: np.ndarray) -> list[list[int]]:
    """Single-linkage groups of N items from their (N, N) boolean "linked" matrix: items joined by
    a chain of links share a group. Indices, each group sorted, groups in order of their first item."""
    n = len(linked)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, k=1))):
        parent[find(int(i))] = find(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())


NESTED_SHARE = 0.8  # a box this much inside a larger box of the same kind is a part of that object (a heap and a few bags of it)


def nested_objects(resting: list[tuple[Track, Zone | None, float]]) -> list[tuple[list[Track], Track, Zone | None, float]]:
    """Tracks at rest (each with its zone and the start of its dwell) that box one object whole and in
    part (a heap of bags and a few of them: `NESTED_SHARE`) as one: (its tracks, the one with the
    largest box, that one's zone, the earliest start)."""
    out = []
    for group in overlap_groups([t.box for t, _, _ in resting], NESTED_SHARE):
        parts = [resting[i] for i in group]
        largest, zone, _ = max(parts, key=lambda p: box_area(p[0].box))
        out.append(([p[0] for p in parts], largest, zone, min(p[2] for p in parts)))
    return out


def overlap_groups(boxes: list[Box], share: float) -> list[list[int]]:
    """One object boxed twice by a detector: single-linkage groups of boxes that share at least `share`
    of the smaller box's area. Indices, each group sorted, groups in order of their first item."""
    n = len(boxes)
    linked = np.array([[box_overlap_min(a, b) >= share for b in boxes] for a in boxes], dtype=bool).reshape(n, n)
    return linked_groups(linked)
