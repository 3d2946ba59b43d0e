"""Printed panels on a plain surface: the picture posters a text reader and a class detector miss.

A poster that is only a picture (a building render, a product photo) has no text for the OCR cue
and is nothing the city model was trained on. What it has is its setting: an advertising surface
(a construction hoarding, a painted wall, a pole wrap) is mostly one colour, and a panel pasted on
it is an island of other colours, with detail inside, that the surface runs all the way round.

`find_panels` looks for exactly that inside one area of a frame:

1. the surface colour is the most common colour (CIE Lab, coarse bins) of the area; an area where
   less than `MIN_SURFACE_SHARE` of the pixels have it has no plain surface (a shop front, a busy
   street, a hoarding hidden by a bus) and gives no panels, rather than calling every window a poster;
2. a panel is a hole in the surface: a region of other colours that touches neither the area's
   edge nor the outside of its polygon. The sky above a hoarding, the pavement below it and a
   walker in front of it all run off the edge, so none of them is a panel, and neither are the
   posters they cover in that frame (the tracker bridges a missed reading or two);
3. the hole must fill `MIN_FILL` of its box (holes inside a dark picture that share the surface's
   colour are filled first), carry detail (`MIN_DETAIL`: a plain patch carries none), be neither a
   speck nor most of the area, nor a thin seam; one centred on a person or vehicle (a badge on a
   coat) is left out.

Pure: image in, boxes out (normalised to the whole frame). The area is scaled so its long side is
`WORK_PX`; a search costs a few milliseconds beside OCR's second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from citypatrol.pipeline.types import Box
from citypatrol.pipeline.zones import Anchor, anchor_point

WORK_PX = 640  # long side of the area as searched
LAB_BIN = 16  # coarse Lab bins for the surface colour
SURFACE_DELTA = 25.0  # Lab distance (OpenCV 8-bit scale) within which a pixel is the surface
MIN_SURFACE_SHARE = 0.3  # of the area: below it the area has no plain surface
MIN_AREA = 0.002  # of the area: smaller holes are specks (bolts, stickers' corners)
MAX_AREA = 0.5  # of the area: a larger hole is the scene, not a panel
MIN_FILL = 0.5  # of its box a panel fills
MIN_DETAIL = 15.0  # grey standard deviation inside: a printed panel has content
MAX_ASPECT = 6.0  # longer side over shorter: thinner is a pole, a railing, a seam


@dataclass(frozen=True, slots=True)
class Panel:
    """A panel found on the surface: where (normalised to the frame) and how much of its box it fills."""

    box: Box
    score: float


@dataclass(frozen=True, slots=True)
class PanelReading:
    """The panels of one area, or why the area has none to give."""

    panels: tuple[Panel, ...]
    surface_share: float  # of the area that has the surface colour
    note: str = ""  # why nothing was looked for ("" when the area was searched)


def find_panels(image: np.ndarray, area: Box, polygon: Sequence[Sequence[float]] | None = None,
                exclude: Sequence[Box] = ()) -> PanelReading:
    """Panels inside `area` (normalised box of a BGR image), within `polygon` when given
    (normalised frame points); a panel centred in one of the `exclude` boxes (people, vehicles) is
    left out."""
    fh, fw = image.shape[:2]
    x1, y1 = int(area[0] * fw), int(area[1] * fh)
    x2, y2 = int(np.ceil(area[2] * fw)), int(np.ceil(area[3] * fh))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return PanelReading((), 0.0, "area too small to search")
    scale = min(1.0, WORK_PX / max(x2 - x1, y2 - y1))
    crop = cv2.resize(image[y1:y2, x1:x2], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = crop.shape[:2]
    inside = np.zeros((h, w), np.uint8)
    if polygon:
        points = [(round((px * fw - x1) * scale), round((py * fh - y1) * scale)) for px, py in polygon]
        cv2.fillPoly(inside, [np.array(points, np.int32)], 1)
    else:
        inside[:] = 1
    within = inside.astype(bool)
    if within.sum() < 64:
        return PanelReading((), 0.0, "area too small to search")

    lab = cv2.cvtColor(cv2.GaussianBlur(crop, (5, 5), 0), cv2.COLOR_BGR2LAB).astype(np.float32)
    distance = np.linalg.norm(lab - _surface_colour(lab[within]), axis=2)
    surface = (distance < SURFACE_DELTA) & within
    share = float(surface.sum() / within.sum())
    if share < MIN_SURFACE_SHARE:
        return PanelReading((), share, f"no plain surface ({share:.0%} of the area has one colour, {MIN_SURFACE_SHARE:.0%} needed)")

    other = (~surface).astype(np.uint8)  # outside the polygon counts as not surface: it reaches the edge
    count, labels, stats, _ = cv2.connectedComponentsWithStats(other, connectivity=4)
    on_edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    area_px = float(within.sum())
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    panels = []
    for i in range(1, count):
        bx, by, bw, bh, pixels = (int(v) for v in stats[i])
        if i in on_edge or not MIN_AREA * area_px <= bw * bh <= MAX_AREA * area_px:
            continue
        if max(bw, bh) > MAX_ASPECT * min(bw, bh):
            continue
        hole = (labels[by:by + bh, bx:bx + bw] == i).astype(np.uint8)
        contours, _ = cv2.findContours(hole, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(hole, contours, -1, 1, thickness=cv2.FILLED)
        fill = float(hole.sum() / (bw * bh))
        if fill < MIN_FILL or float(grey[by:by + bh, bx:bx + bw][hole.astype(bool)].std()) < MIN_DETAIL:
            continue
        box = tuple(float(np.clip(v, 0.0, 1.0)) for v in (
            (bx / scale + x1) / fw, (by / scale + y1) / fh, ((bx + bw) / scale + x1) / fw, ((by + bh) / scale + y1) / fh))
        cx, cy = anchor_point(box, Anchor.center)
        if any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in exclude):
            continue
        panels.append(Panel(box, round(fill, 3)))
    panels.sort(key=lambda p: (p.box[1], p.box[0]))
    return PanelReading(tuple(panels), share)


def _surface_colour(pixels: np.ndarray) -> np.ndarray:
    """The most common colour: the fullest coarse Lab bin, refined to the mean of the pixels near it."""
    n = 256 // LAB_BIN
    bins = np.clip(pixels // LAB_BIN, 0, n - 1).astype(np.int64)
    mode = int(np.bincount((bins[:, 0] * n + bins[:, 1]) * n + bins[:, 2], minlength=n ** 3).argmax())
    centre = (np.array([mode // (n * n), (mode // n) % n, mode % n], np.float32) + 0.5) * LAB_BIN
    near = pixels[np.linalg.norm(pixels - centre, axis=1) < SURFACE_DELTA]
    return near.mean(axis=0) if len(near) else centre
