"""Unauthorized billboards: the panel cue, for picture posters without text.

A poster that is only a picture (a building render on a construction hoarding, a product photo on a
wall) gives the text cue nothing to read, and the city model's billboard class never learned it.
The panel cue finds it by shape: a filled rectangle of other colours, with detail inside, on the
plain surface of an `ad_area`, that the surface runs all the way round (`detection/panels.py`).

It looks when the ad areas are read for text (`billboard.text_every_s`; `RuleContext.texts` is
set), on the same frame, so the two cues share one cadence and a panel that carries text is left
to the text cue (it overlaps a text line of that reading): one poster, one cue. A panel centred
on a person of the frame (a badge on a coat) is not one; a poster a walker stands in front of is
missed in that reading, and the tracker bridges two such. Panels of successive readings are
tracked (class `panel`); one at rest for the dwell in an active `ad_area` that the ads register
does not approve is an unauthorized billboard, reported for review (its score says it is a shape,
not a reading). 核查 re-runs the same search on the case's zone.

Off by default (`rules.billboard.panel_cue`): turn it on for the cameras whose ad areas are drawn on
a plain surface. On an ad area that takes in a facade, windows and shop windows are panels too.
"""

from __future__ import annotations

from citypatrol.pipeline.config.models import Category, Zone, ZoneKind
from citypatrol.pipeline.boxes import box_overlap_min
from citypatrol.pipeline.detection.panels import find_panels
from citypatrol.pipeline.rules.base import EPS, BaseRule, RuleContext, zone_label
from citypatrol.pipeline.rules.register import Register
from citypatrol.pipeline.rules.text_region import cue_detections, unapproved_at_rest
from citypatrol.pipeline.rules.vending_scene import people_boxes
from citypatrol.pipeline.tracker import StationaryTracker
from citypatrol.pipeline.types import PANEL_CUE, Box, Event
from citypatrol.pipeline.zones import Anchor, box_in_zone, zone_geometry

#: A panel case is a shape, not a reading: below the auto-submit line, so a reviewer sees it first.
PANEL_SCORE = 0.5
#: A panel that shares more than this of the smaller box with a text line of the same reading is the
#: text cue's (a poster with a caption, the letters of a sign cut out of a painted band).
TEXT_OVERLAP = 0.1


def panels_in_zones(image, zones: list[Zone], exclude: list[Box]) -> list[tuple[Box, Zone]]:
    """Each panel found in these zones, with the zone that holds its centre."""
    out = []
    for zone in zones:
        reading = find_panels(image, tuple(zone_geometry(zone).bounds), zone.polygon, exclude)
        out += [(p.box, zone) for p in reading.panels if box_in_zone(zone, p.box, anchor=Anchor.center)]
    return out


class PanelRule(BaseRule):
    name = "panel_region"
    categories = (Category.billboard,)

    def __init__(self, rules=None, *, refresh_s: float = 60.0) -> None:
        super().__init__(rules, refresh_s=refresh_s)
        self.register = Register()
        self._trackers: dict[str, StationaryTracker] = {}

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.billboard
        if not (s.enabled and s.text_cue and s.panel_cue) or ctx.texts is None or ctx.image is None:
            return []
        areas = ctx.zones(ZoneKind.ad_area)
        if not areas:
            return []
        cam = ctx.camera.id
        # vehicles are not left out: the detector sometimes takes a whole hoarding for a truck
        found = panels_in_zones(ctx.image, areas, people_boxes(ctx.detections, 0.0))
        texts = [r.box for r in ctx.texts.regions if r.read_score >= s.text_min_score]
        found = [(box, zone) for box, zone in found if not any(box_overlap_min(t, box) > TEXT_OVERLAP for t in texts)]
        panels = cue_detections([b for b, _ in found], PANEL_CUE, ctx.detections.image_size, ctx.detections.model)
        tracker = self._trackers.setdefault(cam, StationaryTracker(cam, max_gap_s=0.0, max_gap_frames=2))
        approved = ctx.zones(ZoneKind.approved_ad)
        events: list[Event] = []
        for t in tracker.update(panels, ctx.pts):
            if t.last_seen < ctx.pts - EPS:
                continue
            found = unapproved_at_rest(ctx, self.register, t, areas, approved, s.dwell_s)
            if found is None:
                continue
            zone, since, why = found
            if self.refresh.due((cam, "panel", t.track_id, zone.id), since, ctx.pts):
                events.append(self.event(
                    ctx, Category.billboard, t.box, zone, since, PANEL_SCORE, [], [PANEL_CUE],
                    f"printed panel without legible text (a picture poster) at rest {ctx.pts - since:.0f} s "
                    f"in ad area {zone_label(zone)}, {why}",
                ))
        return events

