"""Tiled inference for small, far vehicles: grids, class-aware merging, and a real car-park still."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from citypatrol.models.detections import Detections
from citypatrol.models.tiles import TileGrid, auto_grid, merge_nms, tile_boxes
from citypatrol.pipeline.config.models import Camera, Config, Zone
from citypatrol.pipeline.detection.tiling import camera_grid, zones_region


@pytest.mark.parametrize(
    "size, imgsz, min_px, want",
    [
        ((640, 480), 640, 40, None),  # a 40 px car is 40 px at the model input: no tiles
        ((1280, 720), 640, 80, None),
        ((1280, 720), 640, 40, (1, 2)),  # 20 px at the input: two tiles bring it to ≥ 32
        ((1920, 1080), 640, 30, (2, 4)),
        ((3840, 2160), 640, 10, (4, 4)),  # capped
    ],
)
def test_auto_grid_from_resolution_and_smallest_vehicle(size, imgsz, min_px, want):
    grid = auto_grid(*size, imgsz, min_px)
    assert (None if grid is None else (grid.rows, grid.cols)) == want


def test_tiles_cover_the_region_with_overlap():
    boxes = tile_boxes(1000, 500, TileGrid(2, 3, 0.2, (0.1, 0.0, 0.9, 1.0)))
    assert len(boxes) == 6
    assert min(b[0] for b in boxes) == 100 and max(b[2] for b in boxes) in (900, 901)
    assert min(b[1] for b in boxes) == 0 and max(b[3] for b in boxes) in (500, 501)
    (a, b) = boxes[0], boxes[1]
    assert a[2] > b[0], "neighbours overlap"


def test_merge_keeps_the_best_of_one_family_and_both_of_two():
    d = Detections.from_lists(
        [[0, 0, 100, 50], [2, 1, 101, 52], [0, 0, 60, 50], [300, 0, 400, 50], [0, 0, 100, 50]],
        [0.9, 0.6, 0.5, 0.8, 0.7], ["car", "truck", "car", "car", "person"], (1000, 1000))
    kept = merge_nms(d)
    # the truck is the same vehicle as the car; the cut-off half car lies inside it; the person is another kind
    assert sorted(zip(kept.class_name.tolist(), [round(float(c), 2) for c in kept.confidence])) == [
        ("car", 0.8), ("car", 0.9), ("person", 0.7)]


def test_camera_tiles_setting():
    zone = Zone(id="z", kind="no_parking", polygon=[[0.2, 0.1], [0.9, 0.1], [0.9, 0.8]])
    assert zones_region(Camera(id="c", source="x", zones=[zone])) == pytest.approx((0.17, 0.07, 0.93, 0.83))
    off = Camera(id="c", source="x", zones=[zone])
    fixed = Camera(id="c", source="x", zones=[zone], detector={"tiles": {"rows": 2, "cols": 3}})
    auto = Camera(id="c", source="x", zones=[zone], detector={"tiles": "auto", "min_vehicle_px": 30})
    assert camera_grid(off, 1280, 720, 640) is None
    assert (camera_grid(fixed, 1280, 720, 640).rows, camera_grid(fixed, 1280, 720, 640).cols) == (2, 3)
    assert camera_grid(auto, 1280, 720, 640) is not None


def test_tiles_on_a_real_car_park_still_find_at_least_the_whole_frame_cars_once(assets):
    from citypatrol.models.detector import load_detectors
    from citypatrol.models.tiles import VEHICLES, detect_all_tiled

    image = cv2.imread(str(assets / "sequences/pklot_ufpr05_polo/labelled/sequence3/frames/2013-03-19_07_25_01.png"))
    detector = load_detectors(Config().models)
    grid = TileGrid(2, 2, 0.2, (0.17, 0.0, 1.0, 0.96))
    whole, tiled = (detect_all_tiled(detector, [image], [g])[0] for g in (None, grid))
    cars = lambda d: d[np.array([c in VEHICLES for c in d.class_name], bool)]  # noqa: E731
    w, t = cars(whole), cars(tiled)
    assert len(t) >= len(w) >= 10, (len(w), len(t))  # 24 of 40 spaces are taken in this still
    iou = _iou(t.xyxy)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.5, "one box per car after merging the tiles"


def _iou(b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(b[:, None, 0], b[None, :, 0])
    y1 = np.maximum(b[:, None, 1], b[None, :, 1])
    x2 = np.minimum(b[:, None, 2], b[None, :, 2])
    y2 = np.minimum(b[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area[:, None] + area[None, :] - inter)
