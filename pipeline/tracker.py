"""Stationary-aware tracking at the analysis cadence (one frame every 1–2 s per camera).

Classic trackers (ByteTrack, SORT) predict motion between frames at 25 fps; at 0.5–1 fps a moving
object jumps too far to follow, but the problems citypatrol reports stand still. So this tracker
only has to recognise *the same object at the same place*:

- matching is per class group (a parked car the detector calls `car`, then `truck`, is one
  vehicle), greedy on IoU with the track's latest box or its resting box, with a centroid
  tolerance (relative to the box size) for jittery or partly occluded boxes;
- a track keeps `first_seen` / `last_seen` / `hits` in stream seconds and a majority-vote class;
- `stationary_since` is the time the object came to rest at `anchor_box`. A box whose centre
  leaves the anchor by more than `move_tol` of the anchor's width/height (or whose size changes
  more than two-fold) has moved: the anchor moves with it and `stationary_since` becomes None. A
  track needs two sightings at the same place to be stationary, so a moving object never
  accumulates dwell, whether it keeps its track or gets a new one each frame;
- at rest means seen at the resting place in at least `min_rest_ratio` of the frames since it got
  there: a parked car missed in a few frames stays at rest, while different passing cars that now
  and then happen to be near the same spot do not add up to a ghost parked car;
- a track unseen for up to `max_gap_s` is kept (detector flicker, a bus passing in front) and
  resumes with its dwell intact; after that it is dropped. A dropped track that was at rest is
  remembered by its place for `place_memory_s` more: the same-looking object found there again
  takes its dwell back (hysteresis on the place, not the track id);
- when detections carry a look (`data["look"]`, colour histograms from `appearance`), a
  different-looking object at a track's resting place is another object that took the place (one
  car left, the next parked in the same space between two analysed frames): it gets a new track
  id and its dwell starts when it is first seen.

Duplicate boxes of one object in the same group (two merged detectors) are suppressed before
matching. Boxes are normalised, so tolerances do not depend on the resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from citypatrol.models.detections import Detections
from citypatrol.pipeline.appearance import same_look
from citypatrol.pipeline.boxes import iou_matrix
from citypatrol.pipeline.types import Box, Track

#: Classes that are one physical kind of object for matching; others form a group of their own.
DEFAULT_CLASS_GROUPS: dict[str, str] = {
    "car": "vehicle",
    "truck": "vehicle",
    "bus": "vehicle",
    "van": "vehicle",
    "pickup": "vehicle",
    "vehicle": "vehicle",
    "bicycle": "nonmotor",
    "motorcycle": "nonmotor",
    "e-bike": "nonmotor",
    "billboard": "billboard",
    "banner": "billboard",
    "poster": "billboard",
    "garbage": "garbage",
    "garbage_pile": "garbage",
    "table": "table",
    "dining table": "table",
}


@dataclass(slots=True)
class _State:
    track_id: int
    group: str
    box: np.ndarray  # (4,) normalised, latest matched
    score: float
    first_seen: float
    last_seen: float
    hits: int
    anchor: np.ndarray  # (4,) where it came to rest (or was first seen since it last moved)
    anchor_pts: float
    anchor_frame: int  # the tracker's frame number when it came to the anchor
    rest_hits: int  # sightings at the anchor since then
    stationary_since: float | None
    class_counts: dict[str, int] = field(default_factory=dict)
    last_class: str = ""
    looks: list[np.ndarray] = field(default_factory=list)  # recent looks at the resting place (newest last)
    dropped_at: float | None = None  # stream seconds it was dropped (kept for its place)

    def class_name(self) -> str:
        # majority vote; ties go to the most recent class
        best = max(self.class_counts.values())
        if self.class_counts.get(self.last_class) == best:
            return self.last_class
        return next(c for c, n in self.class_counts.items() if n == best)


def _moved(anchor: np.ndarray, box: np.ndarray, tol: float) -> bool:
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    bw, bh = box[2] - box[0], box[3] - box[1]
    area_a, area_b = aw * ah, bw * bh
    # a box that shrank inside its resting box is being occluded, not moving
    iw = max(0.0, min(anchor[2], box[2]) - max(anchor[0], box[0]))
    ih = max(0.0, min(anchor[3], box[3]) - max(anchor[1], box[1]))
    if area_b > 0 and iw * ih / area_b >= 0.9:
        return False
    dx = abs((box[0] + box[2]) - (anchor[0] + anchor[2])) / 2.0
    dy = abs((box[1] + box[3]) - (anchor[1] + anchor[3])) / 2.0
    if dx > tol * aw or dy > tol * ah:
        return True
    return not (0.5 <= (area_b / area_a if area_a > 0 else 0.0) <= 2.0)


def _look(looks: np.ndarray | None, d: int) -> np.ndarray | None:
    if looks is None or np.isnan(looks[d]).any():
        return None
    return looks[d]


class StationaryTracker:
    """Tracks of one camera; call `update` once per analysed frame, in stream-time order."""

    def __init__(
        self,
        camera_id: str,
        *,
        iou_threshold: float = 0.3,
        centroid_tol: float = 0.5,
        move_tol: float = 0.25,
        max_gap_s: float = 60.0,
        max_gap_frames: int = 3,
        dedup_iou: float = 0.7,
        min_rest_ratio: float = 0.6,
        class_groups: Mapping[str, str] | None = None,
        place_memory_s: float = 600.0,
    ) -> None:
        """
        iou_threshold: IoU at which a detection continues a track.
        centroid_tol: otherwise, centre distance (fraction of the track box diagonal) that still matches.
        move_tol: centre shift (fraction of the resting box's width/height) beyond which it has moved.
        max_gap_s: stream seconds a track survives unseen (flicker, occlusion).
        max_gap_frames: or this many missed frames, whichever is longer, so a sparse source
            (stills every 5 minutes) keeps its tracks between frames.
        dedup_iou: same-group detections overlapping this much are one object (merged detectors).
        min_rest_ratio: share of frames since arriving at the resting place it must be seen in to count as at rest.
        place_memory_s: stream seconds a dropped track at rest is remembered by its place (and look).
        """
        self.camera_id = camera_id
        self.iou_threshold = iou_threshold
        self.centroid_tol = centroid_tol
        self.move_tol = move_tol
        self.max_gap_s = max_gap_s
        self.max_gap_frames = max_gap_frames
        self.dedup_iou = dedup_iou
        self.min_rest_ratio = min_rest_ratio
        self.class_groups = dict(DEFAULT_CLASS_GROUPS if class_groups is None else class_groups)
        self.place_memory_s = place_memory_s
        self._states: list[_State] = []
        self._places: list[_State] = []  # dropped tracks that were at rest, by place
        self._next_id = 1
        self._last_pts: float | None = None
        self._frame = 0

    def group_of(self, class_name: str) -> str:
        return self.class_groups.get(class_name, class_name)

    def reset(self) -> None:
        """Forget every track (e.g. the camera was moved); ids keep increasing."""
        self._states.clear()
        self._places.clear()
        self._last_pts = None

    @property
    def tracks(self) -> list[Track]:
        """The live tracks as of the last update."""
        return [self._snapshot(s) for s in self._states]

    def update(self, dets: Detections, pts: float) -> list[Track]:
        """Match one frame's detections; return every live track (matched now or within `max_gap_s`).

        A track with `last_seen == pts` was matched in this frame.
        """
        if self._last_pts is not None and pts < self._last_pts:
            raise ValueError(
                f"camera {self.camera_id}: pts went backwards ({pts} < {self._last_pts}); "
                "reset() the tracker when a stream restarts"
            )
        interval = pts - self._last_pts if self._last_pts is not None else 0.0
        self._last_pts = pts
        self._frame += 1
        gap = max(self.max_gap_s, self.max_gap_frames * interval)
        for s in self._states:
            if pts - s.last_seen > gap and s.stationary_since is not None:
                s.dropped_at = pts
                self._places.append(s)
        self._states = [s for s in self._states if pts - s.last_seen <= gap]
        self._places = [s for s in self._places if pts - s.last_seen <= gap + self.place_memory_s]

        boxes = np.clip(dets.xyxyn.astype(np.float64), 0.0, 1.0) if len(dets) else np.zeros((0, 4))
        looks = dets.data.get("look")
        groups = np.array([self.group_of(str(c)) for c in dets.class_name], dtype=object)
        for group in dict.fromkeys(groups.tolist()):
            idx = np.flatnonzero(groups == group)
            idx = self._dedup(idx, boxes, dets.confidence)
            states = [s for s in self._states if s.group == group]
            matched_dets = self._match(states, idx, boxes, dets, pts, looks)
            rest = [d for d in idx if d not in matched_dets]
            matched_dets |= self._revive([s for s in self._places if s.group == group], rest, boxes, dets, pts, looks)
            for d in idx:
                if d not in matched_dets:
                    self._new(group, boxes[d], float(dets.confidence[d]), str(dets.class_name[d]), pts, _look(looks, d))
        self._states.sort(key=lambda s: s.track_id)
        return self.tracks

    # -- internals -------------------------------------------------------------------------------

    def _dedup(self, idx: np.ndarray, boxes: np.ndarray, conf: np.ndarray) -> list[int]:
        order = sorted(idx.tolist(), key=lambda i: -float(conf[i]))
        kept: list[int] = []
        for i in order:
            if kept and iou_matrix(boxes[[i]], boxes[kept]).max() >= self.dedup_iou:
                continue
            kept.append(i)
        return kept

    def _revive(self, places: list[_State], idx: list[int], boxes: np.ndarray, dets: Detections, pts: float,
                looks: np.ndarray | None) -> set[int]:
        """Detections at a remembered resting place that look the same: that track is back, dwell intact."""
        revived: set[int] = set()
        for d in idx:
            look = _look(looks, d)
            for s in places:
                if s.dropped_at is None or iou_matrix(s.anchor[None], boxes[[d]])[0, 0] < self.iou_threshold:
                    continue
                if not s.looks or look is None or not any(same_look(look, seen) for seen in s.looks):
                    continue  # only a look vouches that it is the same object after so long
                s.dropped_at = None
                s.anchor_frame = self._frame - s.rest_hits  # the frames it was hidden do not count against its rest
                self._places.remove(s)
                places.remove(s)
                self._states.append(s)
                self._continue(s, boxes[d], float(dets.confidence[d]), str(dets.class_name[d]), pts, look)
                revived.add(d)
                break
        return revived

    def _match(self, states: list[_State], idx: list[int], boxes: np.ndarray, dets: Detections, pts: float,
               looks: np.ndarray | None = None) -> set[int]:
        if not states or not idx:
            return set()
        det_boxes = boxes[idx]
        last = np.stack([s.box for s in states])
        rest = np.stack([s.anchor for s in states])
        iou = np.maximum(iou_matrix(last, det_boxes), iou_matrix(rest, det_boxes))
        tc = (last[:, :2] + last[:, 2:]) / 2.0
        dc = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2.0
        dist = np.linalg.norm(tc[:, None, :] - dc[None, :, :], axis=2)
        diag = np.linalg.norm(last[:, 2:] - last[:, :2], axis=1)[:, None]
        reach = self.centroid_tol * np.maximum(diag, 1e-9)
        # IoU matches outrank centroid-only matches; among each, closer first
        value = np.where(iou >= self.iou_threshold, 1.0 + iou, np.where(dist <= reach, 1.0 - dist / reach, -1.0))
        pairs = sorted(
            ((value[t, j], t, j) for t in range(len(states)) for j in range(len(idx)) if value[t, j] >= 0),
            key=lambda p: (-p[0], states[p[1]].track_id, p[2]),
        )
        used_t: set[int] = set()
        matched: set[int] = set()
        for _, t, j in pairs:
            if t in used_t or idx[j] in matched:
                continue
            used_t.add(t)
            matched.add(idx[j])
            d = idx[j]
            self._continue(states[t], boxes[d], float(dets.confidence[d]), str(dets.class_name[d]), pts, _look(looks, d))
        return matched

    def _continue(self, s: _State, box: np.ndarray, score: float, cls: str, pts: float, look: np.ndarray | None = None) -> None:
        if look is not None and s.looks and not any(same_look(look, seen) for seen in s.looks):
            # another object took this place: a new track from now on, nothing of the last one's dwell
            s.track_id, self._next_id = self._next_id, self._next_id + 1
            s.first_seen, s.hits, s.score, s.class_counts = pts, 0, score, {}
            s.anchor = np.full(4, -1.0)  # forces the restart below
        s.box = box.copy()
        s.score = max(s.score, score)
        s.last_seen = pts
        s.hits += 1
        s.class_counts[cls] = s.class_counts.get(cls, 0) + 1
        s.last_class = cls
        if _moved(s.anchor, box, self.move_tol):
            s.anchor = box.copy()
            s.anchor_pts = pts
            s.anchor_frame = self._frame
            s.rest_hits = 1
            s.stationary_since = None
            s.looks = [look] if look is not None else []
            return
        if look is not None:
            s.looks = (s.looks + [look])[-4:]
        s.rest_hits += 1
        ratio = s.rest_hits / (self._frame - s.anchor_frame + 1)
        s.stationary_since = s.anchor_pts if ratio >= self.min_rest_ratio else None

    def _new(self, group: str, box: np.ndarray, score: float, cls: str, pts: float, look: np.ndarray | None = None) -> None:
        self._states.append(
            _State(
                track_id=self._next_id,
                group=group,
                box=box.copy(),
                score=score,
                first_seen=pts,
                last_seen=pts,
                hits=1,
                anchor=box.copy(),
                anchor_pts=pts,
                anchor_frame=self._frame,
                rest_hits=1,
                stationary_since=None,
                class_counts={cls: 1},
                last_class=cls,
                looks=[look] if look is not None else [],
            )
        )
        self._next_id += 1

    def _snapshot(self, s: _State) -> Track:
        def tup(a: np.ndarray) -> Box:
            return (float(a[0]), float(a[1]), float(a[2]), float(a[3]))

        return Track(
            camera_id=self.camera_id,
            track_id=s.track_id,
            class_name=s.class_name(),
            box=tup(s.box),
            score=s.score,
            first_seen=s.first_seen,
            last_seen=s.last_seen,
            hits=s.hits,
            stationary_since=s.stationary_since,
            anchor_box=tup(s.anchor),
            look=tuple(float(v) for v in s.looks[-1]) if s.looks else (),
        )
