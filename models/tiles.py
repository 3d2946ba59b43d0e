"""Tiled inference for small, far vehicles: the frame cut into overlapping tiles, each seen at the
model's full input size, merged back with the whole-frame detections.

A 1280×720 car-park camera scaled to a 640 input shrinks a far car 40 px tall to 20 px, below what
a small COCO model finds reliably. Cutting the zones' part of the frame into tiles brings it back
to ≥ `TARGET_PX` at the model input. Only the detectors that emit vehicle classes run on the tiles
(the city model's bins and billboards are big), and only vehicle detections come back from them.
A tile's box cut by an edge it shares with a neighbour is dropped (the overlap shows a small
vehicle whole next door; a big one is the whole frame's). Merging is class-aware: among boxes of one class family (car, van, pickup, truck, bus are one)
that overlap (IoU ≥ `iou`, or a box mostly inside a bigger one: a car cut at a tile edge), the
most confident is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from citypatrol.models.detections import Detections

TARGET_PX = 32  # smallest object side at the model input that a small COCO model finds reliably
MAX_SIDE = 4  # at most 4×4 tiles: 17 inferences per frame
VEHICLES = frozenset({"car", "van", "pickup", "truck", "bus", "vehicle"})


@dataclass(frozen=True, slots=True)
class TileGrid:
    rows: int
    cols: int
    overlap: float  # share of a tile shared with its neighbour
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # normalised part of the frame tiled

    def describe(self) -> str:
        return f"{self.rows}x{self.cols} tiles, overlap {self.overlap:g}"


def auto_grid(width: int, height: int, imgsz: int, min_object_px: float,
              region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0), overlap: float = 0.2) -> TileGrid | None:
    """The fewest tiles over `region` that show a `min_object_px` object at ≥ TARGET_PX; None if the whole frame does."""
    scale = imgsz / max(width, height)
    if min_object_px * scale >= TARGET_PX:
        return None
    side = imgsz * min_object_px / TARGET_PX  # frame pixels a tile may span
    rw, rh = (region[2] - region[0]) * width, (region[3] - region[1]) * height
    step = side * (1 - overlap)
    cols = min(MAX_SIDE, max(1, math.ceil((rw - side) / step) + 1 if rw > side else 1))
    rows = min(MAX_SIDE, max(1, math.ceil((rh - side) / step) + 1 if rh > side else 1))
    if rows == cols == 1 and rw <= side and rh <= side:
        return TileGrid(1, 1, 0.0, region)  # the region alone, cropped, is enough
    return TileGrid(rows, cols, overlap, region)


def tile_boxes(width: int, height: int, grid: TileGrid) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x1, y1, x2, y2) of the tiles, neighbours sharing `overlap` of a tile."""
    rx1, ry1, rx2, ry2 = grid.region[0] * width, grid.region[1] * height, grid.region[2] * width, grid.region[3] * height
    tw = (rx2 - rx1) / (grid.cols - grid.overlap * (grid.cols - 1))
    th = (ry2 - ry1) / (grid.rows - grid.overlap * (grid.rows - 1))
    out = []
    for r in range(grid.rows):
        for c in range(grid.cols):
            x1 = rx1 + c * tw * (1 - grid.overlap)
            y1 = ry1 + r * th * (1 - grid.overlap)
            out.append((int(x1), int(y1), min(width, int(math.ceil(x1 + tw))), min(height, int(math.ceil(y1 + th)))))
    return out


def _family(name: str) -> str:
    return "vehicle" if name in VEHICLES else name


def merge_nms(dets: Detections, iou: float = 0.5, inside: float = 0.7) -> Detections:
    """Class-family-aware suppression: keep the most confident of overlapping boxes of one family."""
    if len(dets) < 2:
        return dets
    order = np.argsort(-dets.confidence, kind="stable")
    boxes = dets.xyxy.astype(np.float64)
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    families = np.array([_family(str(c)) for c in dets.class_name], dtype=object)
    keep: list[int] = []
    for i in order:
        ok = True
        for k in keep:
            if families[k] != families[i]:
                continue
            ix = max(0.0, min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]))
            iy = max(0.0, min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]))
            inter = ix * iy
            union = areas[i] + areas[k] - inter
            if (union > 0 and inter / union >= iou) or (min(areas[i], areas[k]) > 0 and inter / min(areas[i], areas[k]) >= inside):
                ok = False
                break
        if ok:
            keep.append(int(i))
    return dets[np.array(sorted(keep))]


def _off_inner_edges(d: Detections, tile: tuple[int, int, int, int], size: tuple[int, int], margin: float = 2.0) -> Detections:
    """Drop boxes cut by an edge the tile shares with a neighbour: the overlap shows a small vehicle
    whole in the neighbour, and a big one is the whole-frame pass's."""
    if not len(d):
        return d
    x1, y1, x2, y2 = tile
    w, h = size
    b = d.xyxy
    cut = np.zeros(len(d), bool)
    if x1 > 0:
        cut |= b[:, 0] <= margin
    if y1 > 0:
        cut |= b[:, 1] <= margin
    if x2 < w:
        cut |= b[:, 2] >= (x2 - x1) - margin
    if y2 < h:
        cut |= b[:, 3] >= (y2 - y1) - margin
    return d[~cut]


def _shift(d: Detections, x: int, y: int, size: tuple[int, int]) -> Detections:
    return Detections(d.xyxy + np.array([x, y, x, y], np.float32), d.confidence, d.class_name, size, d.model, d.data)


def detect_tiled(model, images: Sequence[np.ndarray], grids: Sequence[TileGrid | None],
                 sizes: Sequence[int | None] | None = None) -> list[Detections]:
    """One model's whole-frame detections of every image (at `sizes`, each image's input size; None =
    the model's) plus, where a grid is given and the model emits vehicles, the vehicles it finds in
    the image's tiles (at the model's own size), merged per image."""
    whole = model.detect(list(images), sizes) if sizes is not None and any(sizes) else model.detect(list(images))
    if not any(grids) or not (model.classes & VEHICLES):
        return whole
    crops: list[np.ndarray] = []
    owners: list[tuple[int, tuple[int, int, int, int]]] = []  # (image index, tile box)
    for i, (image, grid) in enumerate(zip(images, grids, strict=True)):
        if grid is None:
            continue
        h, w = image.shape[:2]
        for box in tile_boxes(w, h, grid):
            x1, y1, x2, y2 = box
            crops.append(np.ascontiguousarray(image[y1:y2, x1:x2]))
            owners.append((i, box))
    extra: dict[int, list[Detections]] = {}
    for (i, tile), found in zip(owners, model.detect(crops), strict=True):
        size = (images[i].shape[1], images[i].shape[0])
        kept = _off_inner_edges(found.with_classes(VEHICLES), tile, size)
        if len(kept):
            extra.setdefault(i, []).append(_shift(kept, tile[0], tile[1], size))
    return [merge_nms(Detections.merge([d, *extra[i]])) if i in extra else d for i, d in enumerate(whole)]


def detect_all_tiled(detector, images: Sequence[np.ndarray], grids: Sequence[TileGrid | None]) -> list[Detections]:
    """Every model of a `MultiDetector` through `detect_tiled`, merged per image."""
    per_model = [detect_tiled(d, images, grids) for d in detector.detectors]
    return [Detections.merge(list(parts)) for parts in zip(*per_model, strict=True)]
