"""Batch outputs that are not cases: the detections log and annotated sample frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import cv2
import numpy as np
import supervision as sv

from citypatrol.models.detections import Detections
from citypatrol.streams.frame import Frame


class DetectionLog:
    """`detections.jsonl`: one line per analysed frame (camera, pts, wall, boxes, classes, scores)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[str] = path.open("w", encoding="utf-8")
        self.frames = 0
        self.boxes = 0

    def write(self, frame: Frame, dets: Detections) -> None:
        record = {
            "camera": frame.camera_id,
            "pts": round(frame.pts, 3),
            "wall": frame.wall.isoformat(),
            "size": list(dets.image_size),
            "model": dets.model,
            "detections": [
                {"class": str(c), "score": round(float(s), 3), "box": [round(float(v), 1) for v in b]}
                for b, s, c in zip(dets.xyxy, dets.confidence, dets.class_name)
            ],
        }
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.frames += 1
        self.boxes += len(dets)

    def close(self) -> None:
        self._fh.close()


def draw_detections(image: np.ndarray, dets: Detections) -> np.ndarray:
    """All detections of a frame with class and score, for a quick look at what the model sees."""
    if len(dets) == 0:
        return image.copy()
    names = sorted(set(dets.class_name.tolist()))
    svd = sv.Detections(
        xyxy=dets.xyxy.astype(np.float32),
        confidence=dets.confidence.astype(np.float32),
        class_id=np.array([names.index(c) for c in dets.class_name], dtype=int),
    )
    scale = max(0.4, image.shape[0] / 1400)
    out = sv.BoxAnnotator(thickness=max(1, round(image.shape[0] / 400))).annotate(image.copy(), svd)
    labels = [f"{c} {s:.2f}" for c, s in zip(dets.class_name, dets.confidence)]
    return sv.LabelAnnotator(text_scale=scale, text_padding=3).annotate(out, svd, labels=labels)


class SampleFrames:
    """Annotated frames at a fixed stream-time interval per camera (the first frame always)."""

    def __init__(self, folder: Path, every_s: float = 10.0, max_per_camera: int = 30) -> None:
        self.folder = folder
        self.every_s = every_s
        self.max_per_camera = max_per_camera
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self.written: list[Path] = []

    def maybe_write(self, frame: Frame, dets: Detections) -> Path | None:
        cam = frame.camera_id
        last = self._last.get(cam)
        if self._count.get(cam, 0) >= self.max_per_camera or (last is not None and frame.pts - last < self.every_s):
            return None
        self._last[cam] = frame.pts
        self._count[cam] = self._count.get(cam, 0) + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{cam}_{frame.pts:08.2f}s.jpg"
        cv2.imwrite(str(path), draw_detections(frame.image, dets), [cv2.IMWRITE_JPEG_QUALITY, 85])
        self.written.append(path)
        return path
