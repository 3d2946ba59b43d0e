"""Street vending (无照经营游商 / 占道经营).

Two cues, both inside an active `no_vending` zone (bottom-centre anchor) and at rest ≥ dwell:

1. a track of a stall class (`street_vending.classes`, e.g. a city model's `stall`); stall boxes
   sharing `SAME_STALL_SHARE` of the smaller one's area are one stall boxed twice (a parasol seen
   from above and again with its shadow): one event, boxed around both;
2. a cluster of stall-cue tracks (`cue_classes`: umbrella, table, chair, cart, goods …): cues whose
   anchors chain within `cluster_radius` × the frame diagonal of each other (single linkage),
   at least `min_cues` of them at rest, with at least `min_people` people (this frame's `person`
   detections, which may move) whose anchor is within the same radius of a cue. The cluster has
   dwelt since the `min_cues`-th of its cues came to rest.

A lone umbrella or a café's tables without people are not vending; a crowd without cues is not
either. The cluster's box is the union of its cue boxes; its firing key is its oldest track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from citypatrol.pipeline.config.models import Category, Zone, ZoneKind
from citypatrol.pipeline.rules.base import (
    EPS,
    BaseRule,
    RuleContext,
    dwell_for,
    effective_since,
    linked_groups,
    overlap_groups,
    union_box,
    zone_label,
)
from citypatrol.pipeline.types import Box, Event, Track
from citypatrol.pipeline.zones import Anchor, anchor_point, box_in_zone

PERSON = "person"
# Two stalls side by side share little of their boxes (round parasols touching: under a tenth);
# one stall boxed twice shares about half.
SAME_STALL_SHARE = 0.4


def clusters(points: np.ndarray, radius: float) -> list[list[int]]:
    """Single-linkage groups of points (N, 2) whose chain distance is ≤ radius; indices, sorted."""
    if not len(points):
        return []
    return linked_groups(np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2) <= radius)


def person_points(ctx: RuleContext, min_score: float) -> np.ndarray:
    """This frame's people (detections, they may move) as their feet, in pixels (N, 2)."""
    w, h = ctx.pixel_scale()
    people = ctx.detections[
        np.array([c == PERSON for c in ctx.detections.class_name], dtype=bool) & (ctx.detections.confidence >= min_score)
    ]
    return np.array(
        [anchor_point(tuple(b), Anchor.bottom_center) for b in people.xyxyn.tolist()], dtype=np.float64
    ).reshape(-1, 2) * (w, h)


@dataclass(frozen=True, slots=True)
class CueCluster:
    """Resting cue tracks close together in one zone, dwelt long enough, with people at them."""

    members: tuple[Track, ...]
    since: float  # when the min_cues-th of them came to rest
    people: int

    @property
    def box(self) -> Box:
        return union_box(t.box for t in self.members)

    @property
    def oldest(self) -> Track:
        """The track that names the cluster (its firing key)."""
        return min(self.members, key=lambda t: (t.stationary_since, t.track_id))

    @property
    def names(self) -> list[str]:
        return sorted({t.class_name for t in self.members})

    @property
    def score(self) -> float:
        return float(np.mean([t.score for t in self.members]))


def cue_clusters(ctx: RuleContext, zone: Zone, cues: list[Track], person_pts: np.ndarray, *, radius: float,
                 dwell: float, min_cues: int, min_people: int) -> list[CueCluster]:
    """The clusters of `cues` (tracks at rest inside `zone`) that qualify (see the module docstring)."""
    if len(cues) < min_cues:
        return []
    w, h = ctx.pixel_scale()
    pts = np.array([anchor_point(t.box, Anchor.bottom_center) for t in cues], dtype=np.float64) * (w, h)
    out: list[CueCluster] = []
    for group in clusters(pts, radius):
        if len(group) < min_cues:
            continue
        members = [cues[i] for i in group]
        sinces = sorted(
            x for x in (effective_since(t.stationary_since, zone, ctx.local_time, ctx.pts) for t in members) if x is not None
        )
        if len(sinces) < min_cues:
            continue
        since = sinces[min_cues - 1]
        if ctx.pts - since + EPS < dwell:
            continue
        n_people = 0
        if len(person_pts):
            d = np.linalg.norm(person_pts[:, None, :] - pts[group][None, :, :], axis=2)
            n_people = int((d.min(axis=1) <= radius).sum())
        if n_people < min_people:
            continue
        out.append(CueCluster(tuple(members), since, n_people))
    return out


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
        person_pts = person_points(ctx, s.min_score)

        events: list[Event] = []
        fired: set[int] = set()
        for z in zones:
            dwell = dwell_for(z, s.dwell_s)
            inside = [t for t in now if t.track_id not in fired and box_in_zone(z, t.box, t.class_name)]
            resting = []
            for t in inside:
                since = effective_since(t.stationary_since, z, ctx.local_time, ctx.pts) if t.class_name in stall else None
                if since is not None and ctx.pts - since + EPS >= dwell:
                    resting.append((t, since))
            for group in overlap_groups([t.box for t, _ in resting], SAME_STALL_SHARE):
                members = [resting[i][0] for i in group]
                since = min(resting[i][1] for i in group)
                key_track = min(members, key=lambda m: m.track_id)
                fired.update(m.track_id for m in members)
                if self.refresh.due((ctx.camera.id, key_track.track_id, z.id), since, ctx.pts):
                    events.append(self.event(
                        ctx, Category.street_vending, union_box(m.box for m in members), z, since,
                        max(m.score for m in members), [m.track_id for m in members], [key_track.class_name],
                        f"{key_track.class_name} stationary {ctx.pts - since:.0f} s in no-vending zone {zone_label(z)}",
                    ))
            cues = [t for t in inside if t.class_name in cue and t.track_id not in fired]
            events.extend(self._clusters(ctx, z, cues, person_pts, radius, dwell, fired))
        return events

    def _clusters(self, ctx: RuleContext, z: Zone, cues: list[Track], person_pts: np.ndarray, radius: float,
                  dwell: float, fired: set[int]) -> list[Event]:
        s = ctx.rules.street_vending
        out: list[Event] = []
        for c in cue_clusters(ctx, z, cues, person_pts, radius=radius, dwell=dwell, min_cues=s.min_cues, min_people=s.min_people):
            fired.update(t.track_id for t in c.members)
            if not self.refresh.due((ctx.camera.id, "cluster", c.oldest.track_id, z.id), c.since, ctx.pts):
                continue
            out.append(self.event(
                ctx, Category.street_vending, c.box, z, c.since, c.score, [t.track_id for t in c.members], c.names,
                f"{len(c.members)} stall cues ({', '.join(c.names)}) with {c.people} people stationary "
                f"{ctx.pts - c.since:.0f} s in no-vending zone {zone_label(z)}",
            ))
        return out
