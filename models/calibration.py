"""Frames from a city's own cameras to calibrate an INT8 export on (`export: openvino-int8`).

INT8 quantization measures the range of every layer's activations on sample pictures; pictures of
the scenes the detector will watch give ranges that fit them. `collect_frames` takes up to
`per_camera` frames from each enabled camera's source, `every_s` seconds of stream time apart (a
recording is read as fast as it decodes, a live camera in real time), and writes them as JPEGs
named after the camera. A camera that cannot be read is reported and skipped; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from citypatrol.pipeline.config.models import Camera
from citypatrol.streams.open import open_source
from citypatrol.streams.source import SourceError


@dataclass
class Collected:
    written: dict[str, int] = field(default_factory=dict)  # camera id → frames written
    failed: dict[str, str] = field(default_factory=dict)  # camera id → why it could not be read

    @property
    def total(self) -> int:
        return sum(self.written.values())


def collect_frames(cameras: Sequence[Camera], out: Path, *, per_camera: int = 20, every_s: float = 10.0,
                   on_frame: Callable[[str], None] = lambda camera_id: None) -> Collected:
    """Write up to `per_camera` frames of each enabled camera into `out` (`<camera>_<n>.jpg`)."""
    out.mkdir(parents=True, exist_ok=True)
    done = Collected()
    for cam in (c for c in cameras if c.enabled):
        n = 0
        try:
            with open_source(cam.id, cam.source, every_s, **cam.stills_args()) as source:
                for frame in source.frames():
                    cv2.imwrite(str(out / f"{_safe(cam.id)}_{n:03d}.jpg"), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    n += 1
                    on_frame(cam.id)
                    if n >= per_camera:
                        break
        except (SourceError, OSError, ValueError) as exc:
            done.failed[cam.id] = str(exc)
        done.written[cam.id] = n
    return done


def _safe(camera_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in camera_id)
