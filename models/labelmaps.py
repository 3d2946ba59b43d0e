"""Label maps: a model's own labels → citypatrol's canonical class names.

Rules never see a model-specific label: each detector maps its labels once, at the edge. A label
that is not in the map is dropped (COCO's giraffes and toothbrushes never reach the rules).
`DetectorConfig.label_map` overrides entries per deployment; mapping a label to '' drops it.

Choices for COCO (the detectors we ship are COCO-trained):
- vehicles keep their COCO names (`car`, `truck`, `bus`, `motorcycle`, `bicycle`): the parking
  rules tell motor vehicles (code 0505) from bicycles and e-bikes (0506) by these names;
- `person`, `umbrella`, `chair`, `bench` keep their names; `dining table` → `table` (a vendor's
  folding table is what COCO calls a dining table);
- `suitcase` → `goods`: cases, crates and boxes standing on the pavement are a vending cue;
- `handbag` and `backpack` are dropped: they are carried by passers-by, and as vending cues they
  would turn every pedestrian into a stall candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

COCO: dict[str, str] = {
    "person": "person",
    "car": "car",
    "truck": "truck",
    "bus": "bus",
    "motorcycle": "motorcycle",
    "bicycle": "bicycle",
    "umbrella": "umbrella",
    "dining table": "table",
    "chair": "chair",
    "bench": "bench",
    "suitcase": "goods",
}

# citypatrol's own city model (models/weights/MODEL_CARD.md): its labels are canonical, except
# `street_vendor`, which is what the vending rule calls a `stall` (a stall by itself, no cues needed).
CITY: dict[str, str] = {
    **{name: name for name in ("garbage_bin", "garbage_overflow", "garbage_pile", "billboard")},
    "street_vendor": "stall",
}

LABEL_MAPS: dict[str, dict[str, str]] = {"coco": COCO, "city": CITY}


class LabelMapError(KeyError):
    """An unknown label map name."""


def get_label_map(name: str) -> dict[str, str]:
    """A copy of a named label map ("coco", …)."""
    try:
        return dict(LABEL_MAPS[name])
    except KeyError:
        raise LabelMapError(f"unknown label map {name!r}; known: {', '.join(sorted(LABEL_MAPS))}") from None


def identity_map(labels: Sequence[str]) -> dict[str, str]:
    """For a model of our own whose labels already are canonical class names."""
    return {label: label for label in labels}


def build_label_map(base: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` with `overrides` applied; a label mapped to '' (in either) is removed."""
    merged = {**base, **(overrides or {})}
    return {label: canonical for label, canonical in merged.items() if canonical}


def map_labels(labels: Sequence[str], label_map: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical names (object array) and a keep mask; dropped labels get '' and False."""
    canonical = np.array([label_map.get(label, "") for label in labels], dtype=object)
    return canonical, np.array([bool(c) for c in canonical], dtype=bool)
