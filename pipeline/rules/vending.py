"""Street vending (无照经营游商 / 占道经营).

Two cues, both inside an active `no_vending` zone (bottom-centre anchor) and at rest ≥ dwell:

1. a track of a stall class (`street_vending.classes`, e.g. a city model's `stall`);
2. a cluster of stall-cue tracks (`cue_classes`: umbrella, table, chair, cart, goods …): cues whose
   anchors chain within `cluster_radius` × the frame diagonal of each other (single linkage),
   at least `min_cues` of them at rest, with at least `min_people` people (this frame's `person`
   detections, which may move) whose anchor is within the same radius of a cue. The cluster has
   dwelt since the `min_cues`-th of its cues came to rest.

A lone umbrella or a café's tables without people are not vending; a crowd without cues is not
either. The cluster's box is the union of its cue boxes; its firing key is its oldest track.
"""

from __future__ import annotations

import numpy as np

from citypatrol.pipeline.config.models import Category, ZoneKind
from citypatrol.pipeline.rules.base import EPS, BaseRule, RuleContext, dwell_for, effective_since, linked_groups, union_box, zone_label
from citypatrol.pipeline.types import Event, Track
from citypatrol.pipeline.zones import Anchor, anchor_point, box_in_zone

PERSON = "person"


def clusters(points: np.ndarray, radius: float) -> list[list[int]]:
    """Single-linkage groups of points (N, 2) whose chain distance is ≤ radius; indices, sorted."""
    if not len(points):
        return []
    return linked_groups(np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2) <= radius)


class StreetVendingRule(BaseRule):
    name = "street_vending"
    categories = (Category.street_vending,)

    @property
    def required_classes(self) -> frozenset[str]:
        s = self.settings.street_vending
        return frozenset(s.classes) | frozenset(s.cue_classes)

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        s = self.settings.street_vending
        if frozenset(s.classes) & model_classes:
            return None
        if not frozenset(s.cue_classes) & model_classes:
            return f"{self.name}: the model offers no stall class {sorted(s.classes)} and no stall cue {sorted(s.cue_classes)}"
        if s.min_people > 0 and PERSON not in model_classes:
            return f"{self.name}: the model offers no stall class {sorted(s.classes)} and no '{PERSON}' for cue clusters"
        return None

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.street_vending
        zones = ctx.zones(ZoneKind.no_vending)
        if not s.enabled or not zones:
            return []
        stall, cue = set(s.classes), set(s.cue_classes)
        now = [t for t in ctx.seen_now() if t.score >= s.min_score and t.stationary_since is not None]
        w, h = ctx.pixel_scale()
        radius = s.cluster_radius * float(np.hypot(w, h))
        people = ctx.detections[
            np.array([c == PERSON for c in ctx.detections.class_name], dtype=bool)
            & (ctx.detections.confidence >= s.min_score)
        ]
        person_pts = np.array(
            [anchor_point(tuple(b), Anchor.bottom_center) for b in people.xyxyn.tolist()], dtype=np.float64
        ).reshape(-1, 2) * (w, h)

        events: list[Event] = []
        fired: set[int] = set()
        for z in zones:
            dwell = dwell_for(z, s.dwell_s)
            inside = [t for t in now if t.track_id not in fired and box_in_zone(z, t.box, t.class_name)]
            for t in inside:
                if t.class_name not in stall:
                    continue
                since = effective_since(t.stationary_since, z, ctx.local_time, ctx.pts)
                if since is None or ctx.pts - since + EPS < dwell:
                    continue
                fired.add(t.track_id)
                if self.refresh.due((ctx.camera.id, t.track_id, z.id), since, ctx.pts):
                    events.append(self.event(
                        ctx, Category.street_vending, t.box, z, since, t.score, [t.track_id], [t.class_name],
                        f"{t.class_name} stationary {ctx.pts - since:.0f} s in no-vending zone {zone_label(z)}",
                    ))
            cues = [t for t in inside if t.class_name in cue and t.track_id not in fired]
            events.extend(self._clusters(ctx, z, cues, person_pts, radius, dwell, fired))
        return events

    def _clusters(self, ctx: RuleContext, z, cues: list[Track], person_pts: np.ndarray, radius: float,
                  dwell: float, fired: set[int]) -> list[Event]:
        s = ctx.rules.street_vending
        if len(cues) < s.min_cues:
            return []
        w, h = ctx.pixel_scale()
        pts = np.array([anchor_point(t.box, Anchor.bottom_center) for t in cues], dtype=np.float64) * (w, h)
        out: list[Event] = []
        for group in clusters(pts, radius):
            if len(group) < s.min_cues:
                continue
            members = [cues[i] for i in group]
            sinces = sorted(
                x for x in (effective_since(t.stationary_since, z, ctx.local_time, ctx.pts) for t in members) if x is not None
            )
            if len(sinces) < s.min_cues:
                continue
            since = sinces[s.min_cues - 1]
            if ctx.pts - since + EPS < dwell:
                continue
            n_people = 0
            if len(person_pts):
                d = np.linalg.norm(person_pts[:, None, :] - pts[group][None, :, :], axis=2)
                n_people = int((d.min(axis=1) <= radius).sum())
            if n_people < s.min_people:
                continue
            fired.update(t.track_id for t in members)
            oldest = min(members, key=lambda t: (t.stationary_since, t.track_id))
            if not self.refresh.due((ctx.camera.id, "cluster", oldest.track_id, z.id), since, ctx.pts):
                continue
            names = sorted({t.class_name for t in members})
            out.append(self.event(
                ctx, Category.street_vending, union_box(t.box for t in members), z, since,
                float(np.mean([t.score for t in members])), [t.track_id for t in members], names,
                f"{len(members)} stall cues ({', '.join(names)}) with {n_people} people stationary "
                f"{ctx.pts - since:.0f} s in no-vending zone {zone_label(z)}",
            ))
        return out
