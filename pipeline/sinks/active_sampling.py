"""Active sampling: keep a few frames worth labelling, out of the stream the runner analyses anyway.

A frame is worth a person's time when the detector was unsure about something in it (a score
within `band` of `threshold`) or it shows a rare class (`rare_classes`, e.g. stall, billboard,
garbage_overflow: the ones reviewers see least). The sample is rate-capped per camera: at most
`max_per_hour` frames an hour of stream time and at least `min_gap_s` between two, so a camera
that is uncertain all night fills neither the disk nor the labeller's queue.

`ActiveSampler.consider(frame, detections)` is pure (a reason or None, and the cap's bookkeeping);
calling the sampler writes the frame (clean JPEG) and a JSON beside it with the detections as
pre-labels (canonical class, score, normalised box) and why it was kept. The batch runner takes it
as `frame_sink=`.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from citypatrol.models.detections import Detections
from citypatrol.streams.frame import Frame

DEFAULT_RARE = frozenset({"stall", "billboard", "garbage_overflow", "garbage_pile", "umbrella", "goods"})


@dataclass(frozen=True)
class SamplingConfig:
    threshold: float = 0.5  # the score that decides (rules and review act above it)
    band: float = 0.15  # |score - threshold| <= band is "uncertain"
    rare_classes: frozenset[str] = DEFAULT_RARE
    max_per_hour: int = 12  # per camera, in stream time
    min_gap_s: float = 60.0  # per camera, stream seconds between two kept frames


@dataclass
class ActiveSampler:
    out_dir: Path
    config: SamplingConfig = field(default_factory=SamplingConfig)
    kept: int = 0
    seen: int = 0
    _recent: dict[str, deque] = field(default_factory=dict, repr=False)

    def consider(self, frame: Frame, detections: Detections) -> str | None:
        """Why this frame should be labelled, or None (not interesting, or over the camera's cap)."""
        self.seen += 1
        c = self.config
        reasons = []
        near = [f"{n} {s:.2f}" for n, s in zip(detections.class_name, detections.confidence) if abs(float(s) - c.threshold) <= c.band]
        if near:
            reasons.append("uncertain: " + ", ".join(near[:5]))
        rare = sorted({str(n) for n in detections.class_name} & c.rare_classes)
        if rare:
            reasons.append("rare: " + ", ".join(rare))
        if not reasons:
            return None
        recent = self._recent.setdefault(frame.camera_id, deque())
        while recent and frame.pts - recent[0] >= 3600.0:
            recent.popleft()
        if len(recent) >= c.max_per_hour or (recent and frame.pts - recent[-1] < c.min_gap_s):
            return None
        recent.append(frame.pts)
        return "; ".join(reasons)

    def __call__(self, frame: Frame, detections: Detections) -> Path | None:
        why = self.consider(frame, detections)
        if why is None:
            return None
        folder = Path(self.out_dir) / frame.camera_id
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{frame.camera_id}_{frame.wall.strftime('%Y%m%dT%H%M%S')}_{frame.pts:09.1f}"
        image = folder / f"{stem}.jpg"
        cv2.imwrite(str(image), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        boxes = detections.xyxyn if len(detections) else []
        prelabels = [{"class": str(n), "score": round(float(s), 3), "box": [round(float(v), 4) for v in b]}
                     for n, s, b in zip(detections.class_name, detections.confidence, boxes)]
        (folder / f"{stem}.json").write_text(json.dumps({
            "camera": frame.camera_id, "pts": frame.pts, "wall": frame.wall.isoformat(), "why": why,
            "model": detections.model, "prelabels": prelabels}, ensure_ascii=False, indent=1))
        self.kept += 1
        return image
