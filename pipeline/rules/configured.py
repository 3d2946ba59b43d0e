"""Categories a city adds in its config (`categories:`), one rule per configured category.

Each rule kind reuses the machinery of a built-in rule, applied to the category's own zones
(`zone_kind`), classes and dwell (a zone's `dwell_s` overrides it), in the zones' hours:

- `stationary_object` (as parking): a track of `classes` at rest ≥ dwell with its anchor in a zone;
  e.g. 乱堆物料, a material pile at rest on the pavement;
- `cue_cluster` (as the vending cue cluster): at least `min_cues` resting tracks of `classes`
  chained within `cluster_radius`, with at least `min_people` people at them;
- `scene_change` (as vending's scene cue): an object that is not in the camera's reference image,
  people left out, at rest ≥ dwell in a zone, with `min_people` people at it (0 = none needed);
  e.g. 店外经营, goods set out on the pavement in front of a shop's door;
- `text_region` (as the billboard text cue): printed text read above `text_min_score`, at rest
  ≥ dwell, its centre in a zone. The ads register does not apply: it approves billboards.

The event's classes say the cue (the track's class, `scene_change` or `text`), so 核查 re-checks
the case the same way. A scene_change event has no detector confidence: it scores `SCENE_SCORE`,
below the review policy's default auto-submit threshold, so a reviewer sees it first unless the
city's `review.overrides` for the category say otherwise.
"""

from __future__ import annotations

import numpy as np

from citypatrol.pipeline.config.categories import CategoryDef, RuleKind, category_of
from citypatrol.pipeline.config.models import Zone, ZoneKind
from citypatrol.pipeline.rules.base import (
    DEFAULT_REFRESH_S,
    EPS,
    BaseRule,
    RuleContext,
    dwell_for,
    effective_since,
    nested_objects,
    resting_in_zones,
    union_box,
    zone_label,
)
from citypatrol.pipeline.rules.text_region import TextTracks, text_blocks
from citypatrol.pipeline.rules.vending import PERSON, cue_clusters, person_points
from citypatrol.pipeline.rules.vending_scene import NewObjectTracker, people_at, people_boxes
from citypatrol.pipeline.types import SCENE_CUE, TEXT_CUE, Event
from citypatrol.pipeline.zones import Anchor, box_in_zone

SCENE_SCORE = 0.5


class ConfiguredRule(BaseRule):
    """What the four kinds share: the category, its zones, its switch and its class check."""

    def __init__(self, category: CategoryDef, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        super().__init__(None, refresh_s=refresh_s)
        self.defn = category
        self.name = category.name
        self.categories = (category_of(category.name),)

    @property
    def required_classes(self) -> frozenset[str]:
        return frozenset(self.defn.classes)

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        d = self.defn
        if not d.enabled:
            return f"{self.name}: turned off (categories: {self.name}: enabled: false)"
        if d.classes and not frozenset(d.classes) & model_classes:
            return f"{self.name}: the model offers none of the classes {sorted(d.classes)}"
        if d.min_people > 0 and PERSON not in model_classes:
            return f"{self.name}: the model offers no '{PERSON}' class to see people at it (min_people {d.min_people})"
        return None

    def where(self, zone: Zone) -> str:
        return f"{self.defn.zone_kind} zone {zone_label(zone)}"

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        zones = ctx.zones(self.defn.zone_kind)
        return self._find(ctx, zones) if zones else []

    def _find(self, ctx: RuleContext, zones: list[Zone]) -> list[Event]:  # pragma: no cover - abstract
        raise NotImplementedError


class ConfiguredStationaryRule(ConfiguredRule):
    def _find(self, ctx: RuleContext, zones: list[Zone]) -> list[Event]:
        d, classes = self.defn, set(self.defn.classes)
        resting = []
        for t in ctx.seen_now():
            if t.class_name not in classes or t.score < d.min_score or t.stationary_since is None:
                continue
            found = resting_in_zones(ctx, t, zones, d.dwell_s)
            if found is not None:
                resting.append((t, *found))
        events: list[Event] = []
        # one object boxed whole and in part (a heap of bags and a few of them) is one problem
        for parts, t, z, since in nested_objects(resting):
            if self.refresh.due((ctx.camera.id, t.track_id, z.id), since, ctx.pts):
                events.append(self.event(
                    ctx, self.category, union_box(p.box for p in parts), z, since, max(p.score for p in parts),
                    [p.track_id for p in parts], [t.class_name],
                    f"{t.class_name} stationary {ctx.pts - since:.0f} s in {self.where(z)}", look=t.look,
                ))
        return events


class ConfiguredClusterRule(ConfiguredRule):
    def _find(self, ctx: RuleContext, zones: list[Zone]) -> list[Event]:
        d, classes = self.defn, set(self.defn.classes)
        now = [t for t in ctx.seen_now() if t.class_name in classes and t.score >= d.min_score and t.stationary_since is not None]
        w, h = ctx.pixel_scale()
        radius = d.cluster_radius * float(np.hypot(w, h))
        person_pts = person_points(ctx, d.min_score)
        events: list[Event] = []
        fired: set[int] = set()
        for z in zones:
            cues = [t for t in now if t.track_id not in fired and box_in_zone(z, t.box, t.class_name)]
            for c in cue_clusters(ctx, z, cues, person_pts, radius=radius, dwell=dwell_for(z, d.dwell_s),
                                  min_cues=d.min_cues, min_people=d.min_people):
                fired.update(t.track_id for t in c.members)
                if self.refresh.due((ctx.camera.id, "cluster", c.oldest.track_id, z.id), c.since, ctx.pts):
                    events.append(self.event(
                        ctx, self.category, c.box, z, c.since, c.score, [t.track_id for t in c.members], c.names,
                        f"{len(c.members)} objects ({', '.join(c.names)}) with {c.people} people stationary "
                        f"{ctx.pts - c.since:.0f} s in {self.where(z)}",
                    ))
        return events


class ConfiguredSceneRule(ConfiguredRule):
    def __init__(self, category: CategoryDef, *, refresh_s: float = DEFAULT_REFRESH_S, work_px: int = 320) -> None:
        super().__init__(category, refresh_s=refresh_s)
        self.objects = NewObjectTracker(work_px)

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        # people are left out of what changed, or a crowd at a door would be "goods"
        if self.defn.enabled and PERSON not in model_classes:
            return f"{self.name}: the model offers no '{PERSON}' class to leave passers-by out of what changed"
        return super().disabled_reason(model_classes)

    def _find(self, ctx: RuleContext, zones: list[Zone]) -> list[Event]:
        if ctx.image is None or ctx.reference is None:
            return []
        d = self.defn
        people = people_boxes(ctx.detections, d.min_score)
        approved = ctx.zones(ZoneKind.approved_ad, active=False)
        w, h = ctx.pixel_scale()
        radius = d.cluster_radius * float(np.hypot(w, h))
        person_pts = person_points(ctx, d.min_score)
        events: list[Event] = []
        for t, zone in self.objects.update(ctx, zones, people, min_area=d.min_area, ignore=approved):
            if zone is None or t.stationary_since is None:
                continue
            since = effective_since(t.stationary_since, zone, ctx.local_time, ctx.pts)
            if since is None or ctx.pts - since + EPS < dwell_for(zone, d.dwell_s):
                continue
            n_people = people_at(t.box, person_pts, radius, (w, h))
            if n_people < d.min_people:
                continue
            if self.refresh.due((ctx.camera.id, "scene", t.track_id, zone.id), since, ctx.pts):
                with_people = f", {n_people} people at it" if d.min_people else ""
                events.append(self.event(
                    ctx, self.category, t.box, zone, since, SCENE_SCORE, [], [SCENE_CUE],
                    f"new object (not in the reference image) at rest {ctx.pts - since:.0f} s in {self.where(zone)}{with_people}",
                ))
        return events


class ConfiguredTextRule(ConfiguredRule):
    """Reads what the runner read (`RuleContext.texts`): the runner reads this category's zones too."""

    def __init__(self, category: CategoryDef, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        super().__init__(category, refresh_s=refresh_s)
        self.texts = TextTracks()

    def _find(self, ctx: RuleContext, zones: list[Zone]) -> list[Event]:
        if ctx.texts is None:
            return []
        d = self.defn
        regions = text_blocks(tuple(r for r in ctx.texts.regions if r.read_score >= d.text_min_score), ctx.pixel_scale())
        events: list[Event] = []
        for t, region in self.texts.update(ctx, regions):
            if t.stationary_since is None:
                continue
            zone = next((z for z in zones if box_in_zone(z, t.box, anchor=Anchor.center)), None)
            if zone is None:
                continue
            since = effective_since(t.stationary_since, zone, ctx.local_time, ctx.pts)
            if since is None or ctx.pts - since + EPS < dwell_for(zone, d.dwell_s):
                continue
            if self.refresh.due((ctx.camera.id, "text", t.track_id, zone.id), since, ctx.pts):
                events.append(self.event(
                    ctx, self.category, t.box, zone, since, region.read_score if region.readable else 0.5, [], [TEXT_CUE],
                    f"printed text {region.describe()} at rest {ctx.pts - since:.0f} s in {self.where(zone)}",
                ))
        return events


RULE_CLASSES: dict[RuleKind, type[ConfiguredRule]] = {
    RuleKind.stationary_object: ConfiguredStationaryRule,
    RuleKind.cue_cluster: ConfiguredClusterRule,
    RuleKind.scene_change: ConfiguredSceneRule,
    RuleKind.text_region: ConfiguredTextRule,
}


def configured_rule(category: CategoryDef, *, refresh_s: float = DEFAULT_REFRESH_S) -> ConfiguredRule:
    """The rule of a configured category, by its rule kind."""
    return RULE_CLASSES[category.rule](category, refresh_s=refresh_s)
