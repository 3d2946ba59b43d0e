"""核查 logic, pure: is a handled case's cause still at its place, frame by frame, and the verdict.

`cues(...)` applies the case's rule to one frame's detections at the case's place: the classes the
camera's merged rule settings name for the category, at the rule's `min_score`, overlapping the
case's box (IoU ≥ `verify.match_iou`). Dwell and zone hours are not re-applied: the case was
already judged a problem; the question now is only whether the thing is still there.

- illegal / non-motor parking: a vehicle (`classes` / `nonmotor_classes`) on the case's box;
- street vending: a stall class on the box, or at least `min_cues` stall cues mostly inside it;
- overflowing bin: overflow or garbage-pile classes on the box; exposed garbage: pile classes;
- billboard: by the cue that opened the case (`Case.cue`), so a poster the detector never knew is
  not judged gone because the detector is silent: the detector's billboard classes on the box
  (`cues`), printed text read again on the box (`text_cues`), the ad area still changed against
  the reference image (`scene_cues`), or a picture panel still on the box (`panel_cues`);
- street vending opened by the scene-change cue (no vendor class): a new object against the
  reference image still on the case's box (`object_cues`).
- a configured category, by its rule kind: stationary_object, its classes on the box;
  cue_cluster, at least `min_cues` of its classes mostly inside the box (`configured_cues`);
  scene_change, a new object on the box (`object_cues`); text_region, text on the box (`text_cues`).

`Judge` turns the per-frame answers into a verdict over stream time: `gone` when nothing was seen
for `confirm_s` (since the last sighting, or since watching began), `present` when the cause was
seen continuously (gaps up to `gap_s` forgiven: detector flicker, a passer-by) for `confirm_s`,
`inconclusive` when neither within `max_watch_s` or before the footage ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from citypatrol.models.detections import Detections
from citypatrol.models.text import TextRegion
from citypatrol.pipeline.boxes import box_iou
from citypatrol.pipeline.config.models import Category, CategoryDef, RuleKind, Rules, VerifyConfig
from citypatrol.pipeline.types import PANEL_CUE, SCENE_CUE, TEXT_CUE, Box


class Verdict(StrEnum):
    gone = "gone"
    present = "present"
    inconclusive = "inconclusive"


@dataclass(frozen=True, slots=True)
class Cue:
    box: Box
    score: float
    class_name: str


def cues(category: Category, rules: Rules, detections: Detections, box: Box, match_iou: float) -> list[Cue]:
    """The detections that are this case's cause at its place, by the category's rule."""
    category = Category(category)
    if category in (Category.illegal_parking, Category.nonmotor_parking):
        s = rules.illegal_parking
        classes = s.classes if category is Category.illegal_parking else s.nonmotor_classes
        return _on_box(detections, set(classes), s.min_score, box, match_iou)
    if category is Category.street_vending:
        s = rules.street_vending
        stalls = _on_box(detections, set(s.classes), s.min_score, box, match_iou)
        if stalls:
            return stalls
        inside = [c for c in _all(detections, set(s.cue_classes), s.min_score) if _share_inside(c.box, box) >= 0.5]
        return inside if len(inside) >= s.min_cues else []
    if category is Category.garbage_overflow:
        s = rules.garbage
        return _on_box(detections, set(s.classes) | set(s.pile_classes), s.min_score, box, match_iou)
    if category is Category.exposed_garbage:
        s = rules.garbage
        return _on_box(detections, set(s.pile_classes), s.min_score, box, match_iou)
    s = rules.billboard
    return _on_box(detections, set(s.classes), s.min_score, box, match_iou)


def configured_cues(category: CategoryDef, detections: Detections, box: Box, match_iou: float) -> list[Cue]:
    """A configured stationary_object or cue_cluster category's classes at the case's place."""
    classes = set(category.classes)
    if category.rule is RuleKind.cue_cluster:
        inside = [c for c in _all(detections, classes, category.min_score) if _share_inside(c.box, box) >= 0.5]
        return inside if len(inside) >= category.min_cues else []
    return _on_box(detections, classes, category.min_score, box, match_iou)


def text_cues(rules: Rules, regions: Iterable[TextRegion], box: Box, match_iou: float, min_score: float | None = None) -> list[Cue]:
    """Printed text (above the rule's `text_min_score`, or `min_score`) on the case's box: the text cue's case is still there."""
    threshold = rules.billboard.text_min_score if min_score is None else min_score
    return [Cue(r.box, r.read_score, TEXT_CUE) for r in regions
            if r.read_score >= threshold and (box_iou(r.box, box) >= match_iou or _share_inside(r.box, box) >= 0.5)]


def scene_cues(rules: Rules, share: float, changed: Box | None) -> list[Cue]:
    """The ad area still differs from the reference image as much as when the case opened."""
    if changed is None or share < rules.billboard.scene_change_threshold:
        return []
    return [Cue(changed, share, SCENE_CUE)]


def panel_cues(panels: Iterable[Box], box: Box, match_iou: float) -> list[Cue]:
    """Picture panels on the plain surface still on the case's box: the poster is still up."""
    return [Cue(b, 1.0, PANEL_CUE) for b in panels if box_iou(b, box) >= match_iou or _share_inside(b, box) >= 0.5]


def object_cues(objects: Iterable[Box], box: Box, match_iou: float) -> list[Cue]:
    """New objects (against the reference image) on the case's box: the pitch is still there."""
    return [Cue(b, 1.0, SCENE_CUE) for b in objects if box_iou(b, box) >= match_iou]


class Judge:
    """Feed `add(pts, present)` in stream order until it returns a verdict; `finish()` at the end."""

    def __init__(self, config: VerifyConfig) -> None:
        self.confirm_s = config.confirm_s
        self.gap_s = config.gap_s
        self.max_watch_s = config.max_watch_s
        self.start: float | None = None
        self.last_present: float | None = None
        self.present_since: float | None = None
        self.frames = 0
        self.present_frames = 0

    def add(self, pts: float, present: bool) -> Verdict | None:
        self.frames += 1
        if self.start is None:
            self.start = pts
        if present:
            self.present_frames += 1
            if self.present_since is None or (self.last_present is not None and pts - self.last_present > self.gap_s):
                self.present_since = pts
            self.last_present = pts
            if pts - self.present_since >= self.confirm_s:
                return Verdict.present
        else:
            absent_from = self.last_present if self.last_present is not None else self.start
            if self.last_present is not None and pts - self.last_present > self.gap_s:
                self.present_since = None  # the run is broken
            if pts - absent_from >= self.confirm_s:
                return Verdict.gone
        if pts - self.start >= self.max_watch_s:
            return Verdict.inconclusive
        return None

    def finish(self) -> Verdict:
        return Verdict.inconclusive

    def watched_s(self, pts: float) -> float:
        return 0.0 if self.start is None else pts - self.start


def _all(d: Detections, classes: set[str], min_score: float) -> list[Cue]:
    if not classes or len(d) == 0:
        return []
    boxes = d.xyxyn
    return [Cue(tuple(float(v) for v in boxes[i]), float(d.confidence[i]), str(d.class_name[i]))  # type: ignore[arg-type]
            for i in np.flatnonzero([c in classes for c in d.class_name]) if d.confidence[i] >= min_score]


def _on_box(d: Detections, classes: set[str], min_score: float, box: Box, match_iou: float) -> list[Cue]:
    return [c for c in _all(d, classes, min_score) if box_iou(c.box, box) >= match_iou]


def _share_inside(inner: Box, outer: Box) -> float:
    iw = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    ih = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return iw * ih / area if area > 0 else 0.0
