"""Printed text in a picture: where it is and what it says, as `TextRegion`s (the edge for OCR).

The text cue for billboards needs to know that a poster, banner or painted board carries text, and
what the text says for the reviewer. RapidOCR (`rapidocr-onnxruntime`, PP-OCRv4 models inside the
wheel, runs offline on ONNX Runtime) does both: a detector finds text lines, a recogniser reads
them (Chinese and English).

Detection decides; reading only explains. A line the recogniser cannot read confidently (another
script, blur, a stylised logo) is still a text region, reported with `readable=False` and the
reason, so a poster in an unexpected script is still a case and the reviewer is told why its text
is missing.

Only the part of the frame the caller asks for is read (the camera's advertising areas), scaled so
its long side is `work_px`: small text on a far hoarding gets enough pixels, and the cost stays
bounded whatever the camera's resolution. On a shared 2-core CPU a 730×367 crop scaled to 1280 px
took 1.1–2.3 s and a whole 1080p frame 5–6 s, so callers read at a slow cadence.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # normalised x1, y1, x2, y2 of the whole frame

#: Below this recogniser score a line's text is not trusted (another script, blur, a logo).
MIN_READ_SCORE = 0.5


def is_readable(text: str, score: float) -> bool:
    """Trusted text: the recogniser is confident and read at least one letter, digit or hanzi."""
    return score >= MIN_READ_SCORE and any(ch.isalnum() for ch in text)


class TextReaderError(RuntimeError):
    """The OCR engine cannot be built (package missing, models unreadable)."""


@dataclass(frozen=True, slots=True)
class TextRegion:
    """One line of printed text: where (normalised to the whole frame) and what it says."""

    box: Box
    text: str  # what the recogniser read ("" when nothing)
    read_score: float  # the recogniser's confidence in `text`, 0..1
    readable: bool  # text trusted (zh/en, score ≥ MIN_READ_SCORE)

    def describe(self) -> str:
        if self.readable:
            return f'"{self.text}"'
        return f'not legible as Chinese or English (best guess "{self.text}" at {self.read_score:.2f})'


@dataclass(frozen=True, slots=True)
class TextReading:
    """The text regions found in one frame's area, and what reading them cost."""

    regions: tuple[TextRegion, ...]
    area: Box  # the part of the frame that was read
    seconds: float  # wall seconds the OCR took


class TextReader(Protocol):
    def read(self, image: np.ndarray, area: Box = (0.0, 0.0, 1.0, 1.0)) -> TextReading:
        """Text regions inside `area` of a BGR image."""
        ...

    def recognise(self, lines: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) of each BGR picture of one text line (a plate cut out already)."""
        ...


class RapidTextReader:
    """RapidOCR's PP-OCRv4 text detector and recogniser (ONNX Runtime, CPU)."""

    def __init__(self, *, work_px: int = 1280, max_upscale: float = 4.0, box_thresh: float = 0.5, threads: int = 0) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise TextReaderError(f"rapidocr-onnxruntime is not installed: {exc}") from exc
        params = {
            "Global.print_verbose": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": work_px,
            "Det.box_thresh": box_thresh,
        }
        if threads > 0:
            for part in ("Det", "Cls", "Rec"):
                params[f"{part}.intra_op_num_threads"] = threads
        try:
            self._ocr = RapidOCR(params=params)
        except Exception as exc:  # ONNX Runtime raises its own types for unreadable models
            raise TextReaderError(f"RapidOCR could not load its models: {exc}") from exc
        self.work_px = work_px
        self.max_upscale = max_upscale

    def read(self, image: np.ndarray, area: Box = (0.0, 0.0, 1.0, 1.0)) -> TextReading:
        t0 = time.perf_counter()
        if image.ndim == 2:  # a grey camera
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        x0, y0 = int(np.floor(area[0] * w)), int(np.floor(area[1] * h))
        x1, y1 = max(x0 + 1, int(np.ceil(area[2] * w))), max(y0 + 1, int(np.ceil(area[3] * h)))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1, :3])
        scale = min(self.work_px / max(crop.shape[:2]), self.max_upscale)
        if scale > 1.0:  # small text on a far wall needs pixels; the detector itself only shrinks
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        else:
            scale = 1.0
        boxes, _ = self._ocr.text_det(crop)
        regions: list[TextRegion] = []
        if boxes is not None and len(boxes):
            lines = self._ocr.get_crop_img_list(crop, list(boxes))
            reads, _ = self._ocr.text_rec(lines)
            for quad, (text, score) in zip(boxes, reads):
                qx, qy = quad[:, 0] / scale + x0, quad[:, 1] / scale + y0
                box = (float(qx.min() / w), float(qy.min() / h), float(qx.max() / w), float(qy.max() / h))
                box = tuple(float(np.clip(v, 0.0, 1.0)) for v in box)
                text = str(text).strip()
                regions.append(TextRegion(box, text, float(score), is_readable(text, float(score))))  # type: ignore[arg-type]
        return TextReading(tuple(regions), area, time.perf_counter() - t0)

    def recognise(self, lines: list[np.ndarray]) -> list[tuple[str, float]]:
        if not lines:
            return []
        reads, _ = self._ocr.text_rec([np.ascontiguousarray(line[:, :, :3]) for line in lines])
        return [(str(text).strip(), float(score)) for text, score in reads]
