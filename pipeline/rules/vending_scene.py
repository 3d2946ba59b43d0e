"""Street vending without a vendor class: a new object at rest in a no-vending zone, with people at it.

The COCO model rarely sees a stall (an umbrella now and then, never a cart or goods on a mat), and
the city model has no vendor class yet. What every pitch has in common is that something appears
where the pavement was empty, stays, and people stand at it. So, against the camera's reference
image (the picture the zones were drawn on, when the pavement was clear), for each active
`no_vending` zone:

1. pixels that changed beyond illumination (`scene_change.change_mask`), leaving out this frame's
   people (they are who stands at a stall, not the stall) and `approved_ad` zones;
2. changed regions, closed into objects, of at least `scene_min_area` of the frame, are new
   objects; they are tracked like detections (class `new_object`), so a passing van never rests;
3. a new object at rest for the dwell (zone `dwell_s` or `street_vending.dwell_s`) is a pitch when
   people were at it (a `person` anchor within `cluster_radius` × the frame diagonal of the object)
   in at least `people_share` of the analysed frames since it came to rest, and `min_people` now.

Not cases: a crowd (people, nothing new under them), a parked cart or car with nobody at it, café
tables and benches that are in the reference picture (they are not new). The event's box is the
object's; its class is `scene_change`, so 核查 knows the cue.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from citypatrol.models.detections import Detections
from citypatrol.pipeline.config.models import Category, Zone, ZoneKind
from citypatrol.pipeline.rules.base import EPS, BaseRule, RuleContext, dwell_for, effective_since, zone_label
from citypatrol.pipeline.rules.scene_change import ZoneView, change_mask
from citypatrol.pipeline.rules.vending import PERSON
from citypatrol.pipeline.tracker import StationaryTracker
from citypatrol.pipeline.types import SCENE_CUE, Box, Event, Track
from citypatrol.pipeline.zones import Anchor, anchor_point

NEW_OBJECT = "new_object"


@dataclass(slots=True)
class Attendance:
    """How often people stood at one resting object since it came to rest."""

    since: float | None = None
    frames: int = 0
    with_people: int = 0

    def add(self, since: float | None, people: int) -> None:
        if since != self.since:
            self.since, self.frames, self.with_people = since, 0, 0
        self.frames += 1
        self.with_people += people > 0

    @property
    def share(self) -> float:
        return self.with_people / self.frames if self.frames else 0.0


def new_objects(image: np.ndarray, reference: np.ndarray, zone: Zone, people: list[Box], *, ignore: list[Zone] = (),
                min_area: float = 0.002, work_px: int = 320) -> list[Box]:
    """Boxes (normalised) of the objects in `zone` that are not in the reference image, people left out."""
    view = ZoneView.of(image, reference, zone, work_px, ignore=ignore)
    if not view.mask.any():
        return []
    changed = change_mask(view.current, view.reference, view.mask)
    (ox, oy), (sx, sy) = view.origin, view.scale
    for b in people:
        x0, y0 = int((b[0] - ox) * sx), int((b[1] - oy) * sy)
        x1, y1 = int(np.ceil((b[2] - ox) * sx)), int(np.ceil((b[3] - oy) * sy))
        changed[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
    k = max(3, round(0.02 * max(changed.shape)))  # close the gaps between a stall's parts
    closed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(closed & view.mask.astype(np.uint8))
    frame_px = sx * sy  # working pixels in the whole (normalised 1×1) frame
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area / frame_px >= min_area:
            out.append(view.box(x, y, x + w, y + h))
    return out


class NewObjectTracker:
    """New objects in zones, tracked per camera like detections (class `new_object`), so a passing
    van never rests. Shared by the vending scene cue and configured scene_change categories."""

    def __init__(self, work_px: int = 320) -> None:
        self.work_px = work_px
        self._trackers: dict[str, StationaryTracker] = {}

    def update(self, ctx: RuleContext, zones: list[Zone], people: list[Box], *, min_area: float,
               ignore: list[Zone] = ()) -> list[tuple[Track, Zone | None]]:
        """The camera's live new-object tracks after this frame, each with the zone it was found in
        now (None: not seen in this frame)."""
        reference = ctx.reference
        if reference.shape[:2] != ctx.image.shape[:2]:
            reference = cv2.resize(reference, (ctx.image.shape[1], ctx.image.shape[0]), interpolation=cv2.INTER_AREA)
        found: list[tuple[Box, Zone]] = []
        for z in zones:
            found += [(b, z) for b in new_objects(ctx.image, reference, z, people, ignore=ignore,
                                                  min_area=min_area, work_px=self.work_px)]
        tracker = self._trackers.setdefault(ctx.camera.id, StationaryTracker(ctx.camera.id))
        w, h = ctx.pixel_scale()
        boxes = [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b, _ in found]
        tracks = tracker.update(Detections.from_lists(boxes, [1.0] * len(found), [NEW_OBJECT] * len(found), (int(w), int(h))), ctx.pts)
        return [
            (t, next((z for b, z in found if np.allclose(b, t.box, atol=1e-3)), None) if t.last_seen >= ctx.pts - EPS else None)
            for t in tracks
        ]


class VendingSceneRule(BaseRule):
    name = "vending_scene"
    categories = (Category.street_vending,)

    def __init__(self, rules=None, *, refresh_s: float = 60.0, work_px: int = 320) -> None:
        super().__init__(rules, refresh_s=refresh_s)
        self.objects = NewObjectTracker(work_px)
        self._attendance: dict[tuple[str, int], Attendance] = {}

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        s = self.settings.street_vending
        if not s.scene_change:
            return f"{self.name}: turned off (rules.street_vending.scene_change: false)"
        if s.min_people > 0 and PERSON not in model_classes:
            return f"{self.name}: the model offers no '{PERSON}' class to see people at a new object"
        return None

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.street_vending
        zones = ctx.zones(ZoneKind.no_vending)
        if not (s.enabled and s.scene_change) or not zones or ctx.image is None or ctx.reference is None:
            return []
        people = people_boxes(ctx.detections, s.min_score)
        approved = ctx.zones(ZoneKind.approved_ad, active=False)
        cam = ctx.camera.id
        tracks = self.objects.update(ctx, zones, people, min_area=s.scene_min_area, ignore=approved)
        w, h = ctx.pixel_scale()
        live = {t.track_id for t, _ in tracks}
        for key in [k for k in self._attendance if k[0] == cam and k[1] not in live]:
            del self._attendance[key]
        radius = s.cluster_radius * float(np.hypot(w, h))
        person_pts = np.array([anchor_point(b, Anchor.bottom_center) for b in people], dtype=np.float64).reshape(-1, 2) * (w, h)
        events: list[Event] = []
        for t, zone in tracks:
            if t.last_seen < ctx.pts - EPS:
                continue
            n_people = people_at(t.box, person_pts, radius, (w, h))
            att = self._attendance.setdefault((cam, t.track_id), Attendance())
            att.add(t.stationary_since, n_people)
            if zone is None or t.stationary_since is None:
                continue
            since = effective_since(t.stationary_since, zone, ctx.local_time, ctx.pts)
            if since is None or ctx.pts - since + EPS < dwell_for(zone, s.dwell_s):
                continue
            if n_people < max(1, s.min_people) or att.share + EPS < s.people_share:
                continue
            if self.refresh.due((cam, "scene", t.track_id, zone.id), since, ctx.pts):
                events.append(self.event(
                    ctx, Category.street_vending, t.box, zone, since, att.share, [], [SCENE_CUE],
                    f"new object (not in the reference image) at rest {ctx.pts - since:.0f} s in no-vending zone "
                    f"{zone_label(zone)}, people at it in {att.share:.0%} of frames, {n_people} now",
                ))
        return events


def people_boxes(d: Detections, min_score: float) -> list[Box]:
    if len(d) == 0:
        return []
    keep = np.array([c == PERSON for c in d.class_name], dtype=bool) & (d.confidence >= min_score)
    return [tuple(float(v) for v in b) for b in d.xyxyn[keep].tolist()]  # type: ignore[misc]


def people_at(box: Box, person_pts: np.ndarray, radius: float, scale: tuple[float, float]) -> int:
    """People whose feet are within `radius` (pixels) of the object's box."""
    if not len(person_pts):
        return 0
    w, h = scale
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    dx = np.maximum.reduce([x0 - person_pts[:, 0], np.zeros(len(person_pts)), person_pts[:, 0] - x1])
    dy = np.maximum.reduce([y0 - person_pts[:, 1], np.zeros(len(person_pts)), person_pts[:, 1] - y1])
    return int((np.hypot(dx, dy) <= radius).sum())
