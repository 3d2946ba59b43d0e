"""Detections: parallel numpy arrays for one image, in canonical class names.

Backends convert their raw output into this once, at the edge; everything downstream (tracking,
rules, evidence) works on it and never sees a model-specific label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, pixels
    confidence: np.ndarray  # (N,) float32
    class_name: np.ndarray  # (N,) object array of canonical class names
    image_size: tuple[int, int]  # (width, height) of the image the boxes refer to
    model: str = ""  # name@version of the model that produced them
    data: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-box arrays (e.g. raw label)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4) or len(self.confidence) != n or len(self.class_name) != n:
            raise ValueError("Detections arrays must have matching lengths and xyxy must be (N, 4)")

    @classmethod
    def empty(cls, image_size: tuple[int, int], model: str = "") -> "Detections":
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            confidence=np.zeros((0,), dtype=np.float32),
            class_name=np.array([], dtype=object),
            image_size=image_size,
            model=model,
        )

    @classmethod
    def from_lists(
        cls,
        boxes: list[list[float]] | np.ndarray,
        scores: list[float] | np.ndarray,
        names: list[str],
        image_size: tuple[int, int],
        model: str = "",
    ) -> "Detections":
        if len(names) == 0:
            return cls.empty(image_size, model)
        return cls(
            xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            confidence=np.asarray(scores, dtype=np.float32),
            class_name=np.asarray(names, dtype=object),
            image_size=image_size,
            model=model,
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | int) -> "Detections":
        if isinstance(index, int):
            index = np.array([index])
        return Detections(
            xyxy=self.xyxy[index].reshape(-1, 4),
            confidence=self.confidence[index].reshape(-1),
            class_name=self.class_name[index].reshape(-1),
            image_size=self.image_size,
            model=self.model,
            data={k: v[index] for k, v in self.data.items()},
        )

    @property
    def xyxyn(self) -> np.ndarray:
        """Boxes normalised to 0..1 by the image size."""
        w, h = self.image_size
        return self.xyxy / np.array([w, h, w, h], dtype=np.float32)

    def with_classes(self, names: set[str] | frozenset[str]) -> "Detections":
        mask = np.array([c in names for c in self.class_name], dtype=bool)
        return self[mask]

    @staticmethod
    def merge(parts: list["Detections"]) -> "Detections":
        """Concatenate detections of the same image from several models."""
        if not parts:
            raise ValueError("nothing to merge")
        # an empty part (a model that found nothing) has no data columns; it must not drop the others'
        filled = [p for p in parts if len(p)] or parts
        keys = set.intersection(*(set(p.data) for p in filled))
        return Detections(
            xyxy=np.concatenate([p.xyxy for p in parts]).astype(np.float32),
            confidence=np.concatenate([p.confidence for p in parts]).astype(np.float32),
            class_name=np.concatenate([p.class_name for p in parts]),
            image_size=parts[0].image_size,
            model="+".join(p.model for p in parts if p.model),
            data={k: np.concatenate([p.data[k] for p in filled]) for k in keys},
        )
