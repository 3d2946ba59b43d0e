"""One analysed frame of one camera: detections → tracks → events → case changes.

The same object serves the batch runner and the live runner, so a recording and a stream of the
same footage give the same cases. It holds the per-camera state (tracker, merged rule settings,
reference image) and the case builder; it does no I/O beyond reading reference images once.
Where a camera has advertising areas it also reads their printed text at the text cue's slow
cadence (`text_schedule`), with the OCR reader it is given or, on first need, RapidOCR.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from citypatrol.models.detections import Detections
from citypatrol.models.text import RapidTextReader, TextReader, TextReaderError, TextReading
from citypatrol.pipeline.appearance import LOOK_SIZE, looks_of
from citypatrol.pipeline.cases.builder import CaseBuilder, CaseChange
from citypatrol.pipeline.config.models import Camera, Config, Rules
from citypatrol.pipeline.rules import ConfiguredTextRule, Rule, RuleContext, TextRegionRule, build_rules
from citypatrol.pipeline.detection.text_schedule import TextSchedule
from citypatrol.pipeline.tracker import StationaryTracker
from citypatrol.pipeline.types import Event, Track
from citypatrol.streams.frame import Frame

log = logging.getLogger("citypatrol.analyzer")


@dataclass
class CameraState:
    camera: Camera
    rules: Rules
    tracker: StationaryTracker
    reference: np.ndarray | None


@dataclass(frozen=True)
class FrameResult:
    frame: Frame
    detections: Detections
    tracks: tuple[Track, ...]
    events: tuple[Event, ...]
    changes: tuple[CaseChange, ...]


class Analyzer:
    """Tracks, rules and case building for many cameras; feed it frames in stream order per camera."""

    def __init__(self, config: Config, model_classes: frozenset[str], *, build_cases: bool = True,
                 text_reader: TextReader | None = None) -> None:
        """`build_cases=False`: events only, no case changes (a distributed worker; casekeepers build the cases).
        `text_reader`: the OCR for the text cue (default: RapidOCR, built when a camera first needs it)."""
        self.config = config
        self.build_cases = build_cases
        self.tz = ZoneInfo(config.site.timezone)
        self.rules: list[Rule]
        self.rules, self.disabled = build_rules(model_classes, config.rules, categories=config.categories)
        self.builder = CaseBuilder.from_config(config)
        self._cameras: dict[str, CameraState] = {}
        self.text_reader = text_reader
        self._text_on = any(isinstance(r, (TextRegionRule, ConfiguredTextRule)) for r in self.rules)
        # zone kinds of configured text_region categories: their zones are read as well as the ad areas
        self._text_kinds = tuple(dict.fromkeys(r.defn.zone_kind for r in self.rules if isinstance(r, ConfiguredTextRule)))
        self.text_schedule = TextSchedule()

    def describe_rules(self) -> list[str]:
        """One line per rule: active, or why it is off."""
        lines = [f"{r.name}: active" for r in self.rules]
        lines += [reason for _, reason in self.disabled]
        return lines

    def add_camera(self, camera: Camera) -> CameraState:
        reference = None
        if camera.reference_image is not None:
            reference = cv2.imread(str(camera.reference_image), cv2.IMREAD_COLOR)
            if reference is None:
                log.warning("camera %s: reference image %s cannot be read; scene-change cue off", camera.id, camera.reference_image)
        state = CameraState(camera, self.config.rules_for(camera), StationaryTracker(camera.id), reference)
        self._cameras[camera.id] = state
        return state

    def set_camera(self, camera: Camera) -> None:
        """New settings for a camera already added (zones redrawn): rules take them from the next frame; tracks stay."""
        state = self._cameras[camera.id]
        state.camera = camera
        state.rules = self.config.rules_for(camera)

    def camera(self, camera_id: str) -> CameraState:
        return self._cameras[camera_id]

    @staticmethod
    def _with_looks(tracker: StationaryTracker, frame: Frame, detections: Detections) -> Detections:
        """Vehicles get a look (colour histogram) so the tracker can tell one parked car from the next."""
        if not len(detections) or frame.image is None or "look" in detections.data:
            return detections
        vehicles = np.array([tracker.group_of(str(c)) == "vehicle" for c in detections.class_name])
        if not vehicles.any():
            return detections
        looks = np.full((len(detections), LOOK_SIZE), np.nan, np.float32)
        looks[vehicles] = looks_of(frame.image, np.clip(detections.xyxyn[vehicles], 0.0, 1.0))
        return dataclasses.replace(detections, data={**detections.data, "look": looks})

    def process(self, frame: Frame, detections: Detections) -> FrameResult:
        cam = self._cameras[frame.camera_id]
        tracks = tuple(cam.tracker.update(self._with_looks(cam.tracker, frame, detections), frame.pts))
        local = frame.wall.astimezone(self.tz)
        local_time = local.time()
        ctx = RuleContext(
            camera=cam.camera,
            rules=cam.rules,
            tracks=tracks,
            detections=detections,
            pts=frame.pts,
            wall=frame.wall,
            local_time=local_time,
            image=frame.image,
            reference=cam.reference,
            texts=self._read_text(cam, frame, local_time),
            local_date=local.date(),
        )
        events, changes = evaluate_frame(self.rules, ctx, self.builder if self.build_cases else None)
        return FrameResult(frame, detections, tracks, tuple(events), tuple(changes))

    def _read_text(self, cam: CameraState, frame: Frame, local_time) -> TextReading | None:
        if not self._text_on or frame.image is None:
            return None
        area = self.text_schedule.due(cam.camera, cam.rules, local_time, frame.pts, self._text_kinds)
        if area is None:
            return None
        if self.text_reader is None:
            try:
                self.text_reader = RapidTextReader()
            except TextReaderError as exc:
                log.error("text cue off: %s", exc)
                self._text_on = False
                return None
        try:
            reading = self.text_reader.read(frame.image, area)
        except Exception as exc:  # an OCR failure on one frame must not stop the camera
            log.error("camera %s: text cue skipped this read: %s: %s", cam.camera.id, type(exc).__name__, exc)
            return None
        log.debug("camera %s: %d text regions read in %.2f s", cam.camera.id, len(reading.regions), reading.seconds)
        return reading


def evaluate_frame(rules: Sequence[Rule], ctx: RuleContext, builder: CaseBuilder | None) -> tuple[list[Event], list[CaseChange]]:
    """One analysed frame of one camera: every rule's events, then (with a builder) the case changes
    they cause — all of the frame's events at once, then the camera's clock, so the builder can expire
    what is gone. Batch, live, the workers and the rule tests all take this path."""
    events = [e for rule in rules for e in rule.evaluate(ctx)]
    if builder is None:
        return events, []
    changes = builder.add_all(events)
    changes += builder.tick(ctx.camera.id, ctx.pts, ctx.wall)
    return events, changes
