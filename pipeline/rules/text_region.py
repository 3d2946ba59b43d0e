"""Unauthorized billboards: the text cue.

A class detector only finds the billboards it was trained on, and a scene-change cue only sees
what appeared after the reference picture. Posters, banners, painted ads and 小广告 on poles have
one thing in common: printed text. The runner reads the text in each camera's active `ad_area`
zones every `billboard.text_every_s` (OCR is slow; text on a wall changes over minutes) and passes
the reading in `RuleContext.texts`; on frames without a reading this rule does nothing.

A text region whose centre lies in an active `ad_area` and that the ads register does not approve
(`register.py`: an `approved_ad` zone with a valid permit and, where it has one, the approved look), at rest for the dwell (zone `dwell_s` or `billboard.dwell_s`), is an
unauthorized billboard, whether it was there when the reference picture was taken or not: the
register, not the reference picture, says what is approved. "At rest" is the tracker's: the text
regions of successive readings are tracked like detections (class `text`), so lettering on a
passing bus never accumulates dwell. The lines of one sign or poster (within a line's height of each
other) are one region, so a three-line poster is one case. A region the recogniser reads with almost no confidence
(`text_min_score`) is texture the detector took for text (a walker's coat, a bench), not text; a
region read with some confidence but not as Chinese or English is text in another script and
counts, marked unreadable. Text low on a vehicle at rest (a number plate) is left out: a car
parked in front of a hoarding is not a poster. The event carries what was read (or says it was unreadable)
so the reviewer sees the text.
"""

from __future__ import annotations

import numpy as np

from citypatrol.models.detections import Detections
from citypatrol.models.text import TextRegion
from citypatrol.pipeline.config.models import Category, Zone, ZoneKind
from citypatrol.pipeline.rules.register import Register
from citypatrol.pipeline.rules.base import EPS, BaseRule, RuleContext, box_gap, dwell_for, effective_since, linked_groups, union_box, zone_label
from citypatrol.pipeline.tracker import StationaryTracker
from citypatrol.pipeline.types import TEXT_CUE, Box, Event, Track
from citypatrol.pipeline.zones import Anchor, box_in_zone

TEXT_CLASS = TEXT_CUE


def text_blocks(regions: tuple[TextRegion, ...], scale: tuple[float, float], gap: float = 1.0) -> tuple[TextRegion, ...]:
    """Lines of one sign or poster as one region: lines whose boxes come within `gap` × the smaller
    line's height of each other (single linkage) are merged; their texts joined in reading order."""
    n = len(regions)
    if n < 2:
        return regions
    w, h = scale
    linked = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = regions[i].box, regions[j].box
            linked[i, j] = box_gap(a, b, (w, h)) <= gap * min(a[3] - a[1], b[3] - b[1]) * h
    out = []
    for group in linked_groups(linked):
        members = [regions[i] for i in group]
        if len(members) == 1:
            out.append(members[0])
            continue
        line_h = max(float(np.median([r.box[3] - r.box[1] for r in members])), 1e-6)
        members.sort(key=lambda r: (int((r.box[1] + r.box[3]) / 2 / line_h), r.box[0]))  # rows, then left to right
        readable = [r for r in members if r.readable]
        text = " ".join(r.text for r in (readable or members))
        out.append(TextRegion(union_box(r.box for r in members), text, max(r.read_score for r in members), bool(readable)))
    return tuple(sorted(out, key=lambda r: (r.box[1], r.box[0])))


def cue_detections(boxes: list[Box], class_name: str, image_size: tuple[int, int], model: str = "") -> Detections:
    """A cue's regions (normalised boxes) as detections of one class, score 1 (each already passed
    its own test), so the tracker can follow them like a detector's."""
    w, h = image_size
    pixels = [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in boxes]
    return Detections.from_lists(pixels, [1.0] * len(boxes), [class_name] * len(boxes), image_size, model)


def text_detections(regions: tuple[TextRegion, ...], image_size: tuple[int, int], model: str = "") -> Detections:
    """Text regions as detections of class `text`."""
    return cue_detections([r.box for r in regions], TEXT_CLASS, image_size, model)


class TextTracks:
    """Text regions of successive readings tracked per camera like detections (class `text`), each
    track with its latest reading, so lettering on a passing bus never accumulates dwell. Shared by
    the billboard text cue and configured text_region categories."""

    def __init__(self) -> None:
        self._trackers: dict[str, StationaryTracker] = {}
        self._texts: dict[tuple[str, int], TextRegion] = {}  # (camera, track) -> its latest reading

    def update(self, ctx: RuleContext, regions: tuple[TextRegion, ...]) -> list[tuple[Track, TextRegion]]:
        """The tracks matched in this reading, each with its latest reading."""
        cam = ctx.camera.id
        tracker = self._trackers.setdefault(cam, StationaryTracker(cam, max_gap_s=0.0, max_gap_frames=2))
        tracks = tracker.update(text_detections(regions, ctx.detections.image_size), ctx.pts)
        live = {t.track_id for t in tracks}
        for key in [k for k in self._texts if k[0] == cam and k[1] not in live]:
            del self._texts[key]
        out = []
        for t in tracks:
            if t.last_seen < ctx.pts - EPS:
                continue
            region = _region_of(t.box, regions)
            if region is not None:
                self._texts[(cam, t.track_id)] = region
            region = self._texts.get((cam, t.track_id))
            if region is not None:
                out.append((t, region))
        return out


class TextRegionRule(BaseRule):
    name = "text_region"
    categories = (Category.billboard,)

    def __init__(self, rules=None, *, refresh_s: float = 60.0) -> None:
        super().__init__(rules, refresh_s=refresh_s)
        self.texts = TextTracks()
        self.register = Register()

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        if not self.settings.billboard.text_cue:
            return f"{self.name}: turned off (rules.billboard.text_cue: false)"
        return None

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.billboard
        if not (s.enabled and s.text_cue) or ctx.texts is None:
            return []
        cam = ctx.camera.id
        vehicles = _vehicle_boxes(ctx)
        regions = text_blocks(tuple(
            r for r in ctx.texts.regions
            if r.read_score >= s.text_min_score and not any(_on_plate_level(r.box, v) for v in vehicles)
        ), ctx.pixel_scale())
        approved = ctx.zones(ZoneKind.approved_ad)
        areas = ctx.zones(ZoneKind.ad_area)
        events: list[Event] = []
        for t, region in self.texts.update(ctx, regions):
            found = unapproved_at_rest(ctx, self.register, t, areas, approved, s.dwell_s)
            if found is None:
                continue
            zone, since, why = found
            if self.refresh.due((cam, "text", t.track_id, zone.id), since, ctx.pts):
                events.append(self.event(
                    ctx, Category.billboard, t.box, zone, since, region.read_score if region.readable else 0.5,
                    [], [TEXT_CLASS], f"printed text {region.describe()} at rest {ctx.pts - since:.0f} s in ad area {zone_label(zone)}, {why}",
                ))
        return events


def unapproved_at_rest(ctx: RuleContext, register: Register, track: Track, areas: list[Zone], approved: list[Zone],
                       dwell_s: float) -> tuple[Zone, float, str] | None:
    """A sign's track at rest for the dwell in one of the ad areas (the one holding its centre) and
    not approved by the register: (that area, the start of its dwell, why it is not approved)."""
    if track.stationary_since is None:
        return None
    approval = register.check(ctx.camera.id, approved, track.box, ctx.image, ctx.today(), ctx.pts, dwell_s)
    if approval.approved:
        return None
    zone = next((z for z in areas if box_in_zone(z, track.box, anchor=Anchor.center)), None)
    if zone is None:
        return None
    since = effective_since(track.stationary_since, zone, ctx.local_time, ctx.pts)
    if since is None or ctx.pts - since + EPS < dwell_for(zone, dwell_s):
        return None
    return zone, since, approval.why or "matching no approved ad"


def _vehicle_boxes(ctx: RuleContext) -> list[tuple[float, float, float, float]]:
    """Vehicles at rest in this frame: their number plates are not billboards. A car
    driving past is not counted: its box often covers the poster behind it for a frame or two."""
    p = ctx.rules.illegal_parking
    classes = set(p.classes) | set(p.nonmotor_classes)
    return [t.box for t in ctx.seen_now() if t.class_name in classes and t.stationary_since is not None]


def _on_plate_level(box, vehicle) -> bool:
    """Text whose centre is in the lower half of a vehicle's box, where number plates are. The upper
    part is left alone: the detector sometimes takes a hoarding for a truck, and lettering high on a
    parked van is an advert."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return vehicle[0] <= cx <= vehicle[2] and (vehicle[1] + vehicle[3]) / 2 <= cy <= vehicle[3]


def _region_of(box: tuple[float, float, float, float], regions: tuple[TextRegion, ...]) -> TextRegion | None:
    """The region of this reading the tracker matched to a track (its box is the track's box)."""
    for r in regions:
        if np.allclose(r.box, box, atol=1e-4):
            return r
    return None
