"""Each model at the cadence its rules need, on the real default models and real frames.

- the COCO model (parking, vending) looks at every analysed frame; the city model (garbage,
  billboards) once per 30 s of stream time, and in between its newest detections are reused;
- cameras keep their own schedules, also inside one batch;
- a rule set to look every frame, a stream that starts over, or a picture of another size makes
  a model look again; a model whose classes no rule watches looks every frame;
- the change gate: a frame where nothing changed in the zones reuses the newest detections, at most
  `max_skipped` in a row; a change inside a zone makes the models look, one outside does not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.config.models import Camera, Config, Rules
from citypatrol.pipeline.detection.schedule import DetectionSchedule, model_every_s
from citypatrol.streams.frame import Frame

ROW_OF_BINS = "datasets/garbage_bin_overflow_cn/train/images/001986_jpg.rf.c80e03e3fd3ec83a544b6fa2dff9837b.jpg"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:  # the gate off: these tests count each model's looks on a repeated picture
    return Config(cameras=[Camera(id="a", source="a.mp4"), Camera(id="b", source="b.mp4")],
                  models={"change_gate": {"enabled": False}})


@pytest.fixture(scope="module")
def detector(config):
    return load_detectors(config.models)


@pytest.fixture(scope="module")
def street(assets) -> np.ndarray:
    image = cv2.imread(str(assets / ROW_OF_BINS))
    assert image is not None
    return image


def _frame(cam: str, pts: float, image: np.ndarray) -> Frame:
    return Frame(cam, pts, T0 + timedelta(seconds=pts), image)


def _city_boxes(d) -> list:
    return [tuple(b) for b, m in zip(d.xyxy.tolist(), d.class_name) if m.startswith("garbage") or m == "billboard"]


def test_the_city_model_looks_every_10_s_and_its_newest_detections_fill_the_frames_between(config, detector, street):
    schedule = DetectionSchedule(detector, config, config.cameras)
    coco, city = schedule.every_s("a")
    assert coco == 0 and city == 10  # defaults: parking every frame, vending (the stall class) every 10 s, garbage 30 s
    frames = [_frame("a", float(pts), street) for pts in range(0, 64, 2)]  # 32 frames, cadence 2 s
    results = []
    for i in range(0, len(frames), 4):
        results += schedule.detect(frames[i:i + 4])
    assert len(results) == len(frames)
    assert schedule.runs == [32, 7]  # COCO on all 32 frames; the city model at 0, 10, 20 … 60 s
    assert schedule.reused == [0, 25]
    assert _city_boxes(results[0]), "the city model finds the row of bins"
    assert all(_city_boxes(r) == _city_boxes(results[0]) for r in results[1:5])  # reused until 10 s


def test_cameras_keep_their_own_schedules_even_in_one_batch(config, detector, street):
    schedule = DetectionSchedule(detector, config, config.cameras)
    schedule.detect([_frame("a", 0.0, street), _frame("b", 10.0, street), _frame("a", 2.0, street), _frame("b", 12.0, street)])
    assert schedule.runs == [4, 2]  # the city model once per camera: a at 0 s, b at 10 s
    schedule.detect([_frame("a", 31.0, street), _frame("b", 29.0, street)])
    assert schedule.runs == [6, 4]  # a crossed 30 s, b 20 s


def test_what_makes_a_model_look_again(config, detector, street):
    every_frame = Config(cameras=[Camera(id="a", source="a.mp4", rules={"garbage": {"look_every_s": 0}})],
                         models={"change_gate": {"enabled": False}})
    schedule = DetectionSchedule(detector, every_frame, every_frame.cameras)
    schedule.detect([_frame("a", float(p), street) for p in (0, 2, 4)])
    assert schedule.runs == [3, 3]  # a camera override: look every frame

    schedule = DetectionSchedule(detector, config, config.cameras)
    schedule.detect([_frame("a", 10.0, street)])
    schedule.detect([_frame("a", 12.0, street)])
    assert schedule.runs[1] == 1
    schedule.detect([_frame("a", 0.0, street)])  # the stream started over
    assert schedule.runs[1] == 2
    schedule.detect([_frame("a", 2.0, cv2.resize(street, (street.shape[1] // 2, street.shape[0] // 2)))])  # a picture of another size
    assert schedule.runs[1] == 3
    schedule.forget("a")
    schedule.detect([_frame("a", 4.0, street)])
    assert schedule.runs[1] == 4


def test_a_model_looks_as_often_as_the_fastest_rule_it_feeds():
    rules = Rules()
    assert model_every_s(frozenset({"car", "person", "umbrella"}), rules) == 0  # parking
    assert model_every_s(frozenset({"person", "umbrella"}), rules) == 10  # vending only
    assert model_every_s(frozenset({"garbage_bin", "garbage_overflow"}), rules) == 30
    assert model_every_s(frozenset({"billboard"}), rules) == 60
    assert model_every_s(frozenset({"billboard", "garbage_pile"}), rules) == 30
    assert model_every_s(frozenset({"stall", "garbage_bin"}), rules) == 10  # a vendor class makes it faster
    assert model_every_s(frozenset({"giraffe"}), rules) == 0  # no rule watches it: every frame, as before
    slow = Rules.model_validate({"garbage": {"look_every_s": 120}, "billboard": {"enabled": False}})
    assert model_every_s(frozenset({"billboard", "garbage_pile"}), slow) == 120


def test_the_change_gate_skips_unchanged_frames_but_not_a_change_in_a_zone(detector, street):
    zone = {"id": "bins", "kind": "no_parking", "polygon": [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]}
    config = Config(cameras=[Camera(id="a", source="a.mp4", zones=[zone])], models={"change_gate": {"max_skipped": 3}})
    schedule = DetectionSchedule(detector, config, config.cameras)
    first = schedule.detect([_frame("a", 0.0, street)])[0]
    same = schedule.detect([_frame("a", float(p), street) for p in (2, 4, 6, 8)])
    assert schedule.gated == {"a": 3} and schedule.runs[0] == 2  # three reused, the fourth looked regardless
    assert all(len(d) == len(first) and np.array_equal(d.xyxy, first.xyxy) for d in same[:3])

    outside = street.copy()
    h, w = outside.shape[:2]
    outside[: h // 3, w // 2 :] = 255 - outside[: h // 3, w // 2 :]  # a change above and right of the zone
    schedule.detect([_frame("a", 10.0, outside)])
    assert schedule.gated == {"a": 4} and schedule.runs[0] == 2

    inside = street.copy()
    inside[int(h * 0.7) : int(h * 0.8), int(w * 0.1) : int(w * 0.2)] = 0  # something dark appears in the zone
    schedule.detect([_frame("a", 12.0, inside)])
    assert schedule.gated == {"a": 4} and schedule.runs[0] == 3


def test_batches_decide_as_frame_by_frame_calls_would(detector, street):
    """Batch runs take frames four at a time, a live runner as they come: the same frames must get
    the same looks (case ids are derived from the boxes)."""
    config = Config(cameras=[Camera(id="a", source="a.mp4")])
    changed = street.copy()
    changed[: street.shape[0] // 2] = 0
    pictures = [street, street, street, changed, changed, street, street, street, street, street]
    frames = [_frame("a", 2.0 * i, p) for i, p in enumerate(pictures)]
    one_by_one = DetectionSchedule(detector, config, config.cameras)
    single = [one_by_one.detect([f])[0] for f in frames]
    in_batches = DetectionSchedule(detector, config, config.cameras)
    batched = [d for i in range(0, len(frames), 4) for d in in_batches.detect(frames[i:i + 4])]
    assert one_by_one.runs == in_batches.runs and one_by_one.gated == in_batches.gated
    assert in_batches.gated["a"] >= 3  # the repeats were let through unlooked
    assert all(np.array_equal(a.xyxy, b.xyxy) and list(a.class_name) == list(b.class_name) for a, b in zip(single, batched))
