"""What an object looks like, cheaply: a coarse colour histogram of the middle of its box.

Used to tell one parked car from the next in the same space. A time-lapse camera may see a white
car at 07:05, nothing at 07:10 (it left, or the detector missed it) and a black car at 07:25 at
the same place; by place alone that is one car parked 20 minutes. The histogram (HSV, 4 hue × 2
saturation × 4 brightness bins, of the box's middle 70 % so less ground is in it) changes little
for one car under the sun and shadow of a day and a lot between cars of different colours. Two
looks are the same object when their Bhattacharyya distance is at most `SAME_LOOK`.
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = (4, 2, 4)
LOOK_SIZE = 4 * 2 * 4
SAME_LOOK = 0.45  # on PKLot UFPR05 one car across stills up to 95 min apart: ≤ 0.40; a white then a black car: 0.51
_INSET = 0.15


def look_of(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """The normalised histogram of a normalised box's middle in a BGR image; None if the box is too small."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * _INSET, (y2 - y1) * _INSET
    c = image[int((y1 + dy) * h):int(np.ceil((y2 - dy) * h)), int((x1 + dx) * w):int(np.ceil((x2 - dx) * w))]
    if c.shape[0] < 4 or c.shape[1] < 4:
        return None
    hist = cv2.calcHist([cv2.cvtColor(c, cv2.COLOR_BGR2HSV)], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256])
    return (hist.ravel() / max(float(hist.sum()), 1.0)).astype(np.float32)


def looks_of(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, bins) looks of normalised boxes; a row of NaN where a box is too small to judge."""
    n = LOOK_SIZE
    out = np.full((len(boxes), n), np.nan, np.float32)
    for i, b in enumerate(boxes):
        look = look_of(image, tuple(float(v) for v in b))
        if look is not None:
            out[i] = look
    return out


def look_distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Bhattacharyya distance (0 same … 1 disjoint); None when either look is unknown."""
    if a is None or b is None or np.isnan(a).any() or np.isnan(b).any():
        return None
    bc = float(np.sum(np.sqrt(np.clip(a, 0, None) * np.clip(b, 0, None))))
    return float(np.sqrt(max(0.0, 1.0 - min(bc, 1.0))))


def same_look(a: np.ndarray | None, b: np.ndarray | None, limit: float = SAME_LOOK) -> bool:
    """True unless both looks are known and differ by more than `limit` (unknown never splits)."""
    d = look_distance(a, b)
    return d is None or d <= limit
