"""Each model at the cadence its problems need.

Parked cars and vendors come and go in seconds; garbage and billboards change over minutes. Every
rule says how often the models that feed it must look (`rules.<rule>.look_every_s`); a model runs
on a camera's frame when the fastest rule it feeds is due, and in between the tracker and the rules
see that model's newest detections of the camera, so dwell goes on. The city model, which feeds
only garbage and billboards, then costs a fraction of an every-frame run.

Due is counted on a grid of stream time (the first analysed frame in each `look_every_s` window),
so a recording cut into segments looks at the same frames as one pass over the whole file once
each segment's warm-up has crossed a grid line. A model whose classes no rule watches runs on every
frame, as does every model for a rule with `look_every_s: 0`.

Before any of that, the change gate (`models.change_gate`): a frame whose zones look like the
camera's last looked-at frame (160×90 grey pictures; fewer than `min_changed` pixels moved by
`pixel_diff` grey levels or more) is not looked at by any model and reuses the newest detections;
at most `max_skipped` frames in a row, so slow changes are never missed for long.

A model that looks at a camera with `detector.tiles` also looks at the frame's tiles for vehicles
(`models/tiles.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from citypatrol.models.detections import Detections
from citypatrol.models.detector import MultiDetector
from citypatrol.models.tiles import detect_tiled
from citypatrol.pipeline.config.models import Camera, ChangeGate, Config
from citypatrol.pipeline.detection.tiling import CameraGrids
from citypatrol.streams.frame import Frame


THUMB = (160, 90)  # the gate's picture: enough for a car 20 px long in 1280×720 to move a few pixels


@dataclass(frozen=True)
class _Look:
    pts: float
    detections: Detections


@dataclass
class _Gate:
    mask: np.ndarray | None  # the camera's zones on the gate's picture; None = the whole frame
    last: np.ndarray | None = None  # the gate's picture of the camera's last looked-at frame
    skipped: int = 0


class DetectionSchedule:
    """`detect(frames)` → one `Detections` per frame: fresh from each model that is due for the
    frame's camera, the camera's newest ones from each model that is not."""

    def __init__(self, detector: MultiDetector, config: Config, cameras: Sequence[Camera] = ()) -> None:
        self.detector = detector
        self.config = config
        self.gate: ChangeGate = config.models.change_gate
        self._every: dict[str, list[float]] = {}  # camera → each model's look_every_s
        self._gates: dict[str, _Gate] = {}
        self._newest: dict[tuple[int, str], _Look] = {}
        self.runs = [0] * len(detector.detectors)  # images each model looked at
        self.reused = [0] * len(detector.detectors)  # frames that took a model's newest detections instead
        self.gated: dict[str, int] = {}  # camera → frames no model looked at because nothing changed
        self.grids = CameraGrids(cameras, detector)  # the tiles each camera's frames are cut into (detector.tiles)
        for cam in cameras:
            self.set_camera(cam)

    def set_camera(self, camera: Camera, *, as_id: str | None = None) -> None:
        """(Re)compute a camera's cadences from its rules (call again when its settings change);
        `as_id`: the id its frames carry when not the camera's own (a footage segment)."""
        rules = self.config.rules_for(camera)
        key = as_id or camera.id
        self._every[key] = [model_every_s(d.classes, rules) for d in self.detector.detectors]
        self._gates[key] = _Gate(zone_mask([z.polygon for z in camera.zones]))
        self.grids.set_camera(camera, as_id=as_id)

    def forget(self, camera_id: str) -> None:
        """A camera (or segment) no longer analysed here: drop what is kept for it."""
        self._every.pop(camera_id, None)
        self._gates.pop(camera_id, None)
        for m in range(len(self.detector.detectors)):
            self._newest.pop((m, camera_id), None)

    def every_s(self, camera_id: str) -> list[float]:
        return self._every.get(camera_id) or [0.0] * len(self.detector.detectors)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        looks: list[list[Detections | None]] = [[None] * len(self.detector.detectors) for _ in frames]
        looking: set[str] = set()  # cameras with a frame looked at earlier in this batch
        unchanged = []
        for f in frames:  # in order, so a batch decides as frame-by-frame calls would: batch and live agree
            unchanged.append(self._unchanged(f, looked_in_batch=f.camera_id in looking))
            if not unchanged[-1]:
                looking.add(f.camera_id)
        for m, model in enumerate(self.detector.detectors):
            last: dict[str, float] = {}
            due = []
            for k, f in enumerate(frames):  # in order: frames of one camera in one batch see each other
                if unchanged[k]:
                    continue
                prev = last.get(f.camera_id)
                newest = self._newest.get((m, f.camera_id))
                if prev is None and newest is not None:
                    prev = newest.pts
                    if newest.detections.image_size != (f.image.shape[1], f.image.shape[0]):
                        prev = None  # the picture changed size (a new stream): look again
                if _due(f.pts, prev, self.every_s(f.camera_id)[m]):
                    due.append(k)
                    last[f.camera_id] = f.pts
            fresh = detect_tiled(model, [frames[k].image for k in due], [self.grids.get(frames[k]) for k in due],
                                 [self.grids.imgsz(frames[k]) for k in due]) if due else []
            self.runs[m] += len(due)
            fresh_of = dict(zip(due, fresh))
            for k, f in enumerate(frames):
                if k in fresh_of:
                    self._newest[(m, f.camera_id)] = _Look(f.pts, fresh_of[k])
                else:
                    self.reused[m] += 1
                looks[k][m] = self._newest[(m, f.camera_id)].detections
        return [Detections.merge(list(parts)) for parts in looks]

    def _unchanged(self, frame: Frame, *, looked_in_batch: bool) -> bool:
        """True if the gate lets this frame reuse its camera's newest detections: every model has
        some, from an earlier batch or from a frame looked at earlier in this one."""
        gate = self._gates.setdefault(frame.camera_id, _Gate(None))
        picture = cv2.resize(cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY), THUMB, interpolation=cv2.INTER_AREA)
        known = looked_in_batch or all((m, frame.camera_id) in self._newest for m in range(len(self.detector.detectors)))
        if (self.gate.enabled and known and gate.last is not None and gate.skipped < self.gate.max_skipped
                and _changed_pixels(picture, gate.last, gate.mask, self.gate.pixel_diff) < self.gate.min_changed):
            gate.skipped += 1
            self.gated[frame.camera_id] = self.gated.get(frame.camera_id, 0) + 1
            return True
        gate.last, gate.skipped = picture, 0
        return False


def zone_mask(polygons: Sequence[Sequence[Sequence[float]]]) -> np.ndarray | None:
    """The zones (normalised polygons) filled on the gate's picture; None when there are none."""
    if not polygons:
        return None
    mask = np.zeros((THUMB[1], THUMB[0]), np.uint8)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float32) * np.array(THUMB, np.float32)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _changed_pixels(picture: np.ndarray, last: np.ndarray, mask: np.ndarray | None, pixel_diff: int) -> int:
    moved = cv2.absdiff(picture, last) >= pixel_diff
    return int(np.count_nonzero(moved & mask if mask is not None else moved))


def model_every_s(model_classes: frozenset[str], rules) -> float:  # noqa: ANN001 (config.Rules)
    """How often a model with these classes must look: the shortest `look_every_s` of the rules that
    watch any of its classes; 0 (every frame) when no rule does."""
    wanted = [settings.look_every_s for settings in _rule_settings(rules) if settings.enabled
              and model_classes & frozenset(settings.watched_classes())]
    return min(wanted) if wanted else 0.0


def _rule_settings(rules) -> list:  # noqa: ANN001
    return [getattr(rules, name) for name in type(rules).model_fields]


def _due(pts: float, last_pts: float | None, every_s: float) -> bool:
    if last_pts is None or every_s <= 0 or pts < last_pts:  # first look, every frame, or the stream started over
        return True
    return math.floor(pts / every_s) > math.floor(last_pts / every_s)
