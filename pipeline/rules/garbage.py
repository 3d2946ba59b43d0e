"""Overflowing bins (垃圾箱满溢) and exposed garbage (暴露垃圾).

Every cue must be at rest ≥ dwell (`garbage.dwell_s`, or the zone's) with score ≥ `min_score`:

- a track of an overflow class (`garbage.classes`, e.g. `garbage_overflow`) → garbage_overflow;
- a garbage pile (`pile_classes`) whose box is within `near_bin` × the bin's width of a bin
  (a live track of `bin_classes` or of the overflow classes) → garbage_overflow of that bin, boxed
  around pile and bin;
- a pile with no bin near → exposed_garbage.

One bin is one problem: a bin seen overflowing and the piles beside it make one event, boxed around
all of them, so the same bin is never two cases. One heap is one problem too: a pile box lying
mostly inside another pile's box (`NESTED_SHARE` of its area; a detector boxes a heap and a part of
it) is part of that pile's event, not an event of its own.

Where the camera has `bin_area` zones, only cues whose anchor (bottom centre) lies in an active
`bin_area` count, and the event carries that zone: the operator drew them to say where garbage
is judged on this view, which keeps e.g. a construction site's materials or a recycling yard out.
Without `bin_area` zones the whole frame counts and events carry no zone.
"""

from __future__ import annotations

from citypatrol.pipeline.config.models import Category, Zone, ZoneKind
from citypatrol.pipeline.rules.base import (
    EPS,
    BaseRule,
    RuleContext,
    box_gap,
    dwell_for,
    effective_since,
    nested_objects,
    union_box,
    zone_label,
)
from citypatrol.pipeline.types import Event, Track
from citypatrol.pipeline.zones import box_in_zone


class GarbageRule(BaseRule):
    name = "garbage"
    categories = (Category.garbage_overflow, Category.exposed_garbage)

    @property
    def required_classes(self) -> frozenset[str]:
        s = self.settings.garbage
        return frozenset(s.classes) | frozenset(s.pile_classes)

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.garbage
        if not s.enabled:
            return []
        has_areas = bool(ctx.zones(ZoneKind.bin_area, active=False))
        areas = ctx.zones(ZoneKind.bin_area)
        overflow, piles, bins = set(s.classes), set(s.pile_classes), set(s.bin_classes) | set(s.classes)
        bin_tracks = [t for t in ctx.tracks if t.class_name in bins and t.score >= s.min_score]
        scale = ctx.pixel_scale()
        events: list[Event] = []
        per_bin: dict[int, _BinCues] = {}  # one overflowing bin is one event, with every pile beside it
        exposed: list[tuple[Track, Zone | None, float]] = []
        for t in ctx.seen_now():
            if t.class_name not in overflow and t.class_name not in piles:
                continue
            if t.score < s.min_score or t.stationary_since is None:
                continue
            zone: Zone | None = None
            if has_areas:
                zone = next((z for z in areas if box_in_zone(z, t.box, t.class_name)), None)
                if zone is None:
                    continue
            since = effective_since(t.stationary_since, zone, ctx.local_time, ctx.pts)
            if since is None or ctx.pts - since + EPS < dwell_for(zone, s.dwell_s):
                continue
            if t.class_name in overflow:
                per_bin.setdefault(t.track_id, _BinCues(t)).add(t, zone, since, full=True)
                continue
            near = self._nearest_bin(t, bin_tracks, s.near_bin, scale)
            if near is not None:
                per_bin.setdefault(near.track_id, _BinCues(near)).add(t, zone, since, full=False)
                continue
            exposed.append((t, zone, since))
        for heap, t, zone, since in nested_objects(exposed):
            where = f" in bin area {zone_label(zone)}" if zone is not None else ""
            key = (ctx.camera.id, t.track_id, zone.id if zone else None, Category.exposed_garbage)
            if self.refresh.due(key, since, ctx.pts):
                events.append(self.event(ctx, Category.exposed_garbage, union_box(h.box for h in heap), zone, since,
                                         max(h.score for h in heap), [h.track_id for h in heap], [t.class_name],
                                         f"{t.class_name} with no bin near persisting {ctx.pts - since:.0f} s{where}"))
        for cues in per_bin.values():
            key = (ctx.camera.id, cues.bin.track_id, cues.zone.id if cues.zone else None, Category.garbage_overflow)
            if self.refresh.due(key, cues.since, ctx.pts):
                events.append(self.event(ctx, Category.garbage_overflow, union_box(cues.boxes), cues.zone, cues.since,
                                         cues.score, cues.ids, cues.names, cues.describe(ctx.pts)))
        return events

    @staticmethod
    def _nearest_bin(pile: Track, bins: list[Track], near: float, scale: tuple[float, float]) -> Track | None:
        best: tuple[float, Track] | None = None
        for b in bins:
            if b.track_id == pile.track_id:
                continue
            gap = box_gap(pile.box, b.box, scale)
            if gap <= near * (b.box[2] - b.box[0]) * scale[0] + EPS and (best is None or gap < best[0]):
                best = (gap, b)
        return best[1] if best else None


class _BinCues:
    """The cues of one bin: itself seen overflowing, and/or garbage piles beside it."""

    def __init__(self, bin_track: Track) -> None:
        self.bin = bin_track
        self.boxes = [bin_track.box]
        self.ids = [bin_track.track_id]
        self.names = [bin_track.class_name]
        self.full = False  # the bin itself is seen overflowing
        self.piles: list[str] = []
        self.zone: Zone | None = None
        self.since = float("inf")
        self.score = 0.0

    def add(self, t: Track, zone: Zone | None, since: float, *, full: bool) -> _BinCues:
        if full:
            self.full = True
        else:
            self.boxes.append(t.box)
            self.ids.append(t.track_id)
            self.names.append(t.class_name)
            self.piles.append(t.class_name)
        self.zone = self.zone or zone
        self.since = min(self.since, since)
        self.score = max(self.score, t.score)
        return self

    def describe(self, pts: float) -> str:
        where = f" in bin area {zone_label(self.zone)}" if self.zone is not None else ""
        piles = ", ".join(dict.fromkeys(self.piles))
        if self.full and self.piles:
            what = f"{self.bin.class_name} with {piles} beside it"
        elif self.full:
            what = self.bin.class_name
        else:
            what = f"{piles} next to {self.bin.class_name}"
        return f"{what} persisting {pts - self.since:.0f} s{where}"
