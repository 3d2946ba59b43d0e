"""One parked car or the next: looks (colour histograms) in the tracker and the case builder.

Tables of small synthetic inputs for the logic, and the real PKLot stills where a white car leaves
a space and a black one parks there while the detector sees nothing in between."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest

from citypatrol.models.detections import Detections
from citypatrol.pipeline.appearance import LOOK_SIZE, look_distance, look_of, same_look
from citypatrol.pipeline.boxes import box_iou
from citypatrol.pipeline.cases.builder import CaseBuilder, ChangeKind
from citypatrol.pipeline.config.models import CasesConfig, Category
from citypatrol.pipeline.tracker import StationaryTracker
from citypatrol.pipeline.types import Event
from tests.fixtures_logic import T0, dets

CAR = (0.40, 0.50, 0.50, 0.60)
WHITE, BLACK = np.zeros(LOOK_SIZE, np.float32), np.zeros(LOOK_SIZE, np.float32)
WHITE[-1], BLACK[0] = 1.0, 1.0


def seen(look: np.ndarray | None, box=CAR, cls: str = "car") -> Detections:
    d = dets((cls, tuple(v * 1000 for v in box)))
    looks = np.full((1, LOOK_SIZE), np.nan, np.float32) if look is None else look[None]
    return dataclasses.replace(d, data={"look": looks})


def test_looks_of_real_colours():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, 50:] = 255
    black, white = look_of(img, (0.0, 0.0, 0.5, 1.0)), look_of(img, (0.5, 0.0, 1.0, 1.0))
    assert look_distance(black, black) == pytest.approx(0.0, abs=1e-6)
    assert not same_look(black, white) and same_look(black, None)
    assert look_of(img, (0.0, 0.0, 0.02, 0.02)) is None, "too small to judge"


@pytest.mark.parametrize(
    "frames, one_track, dwell",
    [
        ([WHITE, WHITE, WHITE, WHITE], True, 900),  # one car parked
        ([WHITE, None, WHITE, WHITE], True, 900),  # missed once: dwell by place survives
        ([WHITE, WHITE, BLACK, BLACK], False, 300),  # the next car within one step: a new track, dwell from its arrival
        ([WHITE, "gone", BLACK, BLACK], False, 300),  # left, then another car parked
    ],
)
def test_tracker_keeps_dwell_by_place_and_splits_on_a_new_look(frames, one_track, dwell):
    tr = StationaryTracker("cam", max_gap_frames=3)
    ids = []
    for i, look in enumerate(frames):
        d = dets() if isinstance(look, str) else seen(look) if look is not None else dets()
        tracks = tr.update(d, 300.0 * i)
        ids += [t.track_id for t in tracks if t.last_seen == 300.0 * i]
    assert (len(set(ids)) == 1) is one_track
    (last,) = [t for t in tracks if t.last_seen == 900.0]
    assert last.stationary_for == dwell


def test_a_dropped_car_is_remembered_by_its_place_and_look():
    tr = StationaryTracker("cam", max_gap_s=10, max_gap_frames=1, place_memory_s=600)
    for pts in (0, 2, 4):
        tr.update(seen(WHITE), pts)
    for pts in range(6, 200, 2):  # a bus stands in front for over three minutes
        tr.update(dets(), pts)
    (back,) = tr.update(seen(WHITE), 200)
    assert back.track_id == 1 and back.stationary_since == 0
    tr2 = StationaryTracker("cam", max_gap_s=10, max_gap_frames=1, place_memory_s=600)
    for pts in (0, 2, 4):
        tr2.update(seen(WHITE), pts)
    for pts in range(6, 200, 2):
        tr2.update(dets(), pts)
    (other,) = tr2.update(seen(BLACK), 200)
    assert other.track_id != 1 and other.stationary_since is None


def _event(pts: float, since: float, look: np.ndarray) -> Event:
    return Event(camera_id="cam1", category=Category.illegal_parking, box=CAR, zone_id="lot", pts=pts,
                 wall=T0 + timedelta(seconds=pts), since_pts=since, score=0.8, look=tuple(float(v) for v in look))


@pytest.mark.parametrize("look, kind", [(WHITE, ChangeKind.attached), (BLACK, ChangeKind.opened)])
def test_a_different_car_in_the_same_space_is_a_new_case(look, kind):
    b = CaseBuilder(CasesConfig(match_iou=0.3, grace_s=600, reopen_window_s=3600), {"cam1": ""})
    first = b.add(_event(600, 0, WHITE))
    b.tick("cam1", 600, T0 + timedelta(seconds=600))
    change = b.add(_event(1000, 700, look))  # came to rest after the case was last seen
    assert change.kind is kind
    assert (change.case.case_id == first.case.case_id) is (kind is ChangeKind.attached)
    drift = b.add(_event(1100, 0, BLACK)) if kind is ChangeKind.attached else None
    if drift is not None:  # a car at rest since before the last sighting keeps its case, whatever the light does
        assert drift.case.case_id == first.case.case_id


def test_pklot_white_car_leaves_black_car_parks_no_case_there(assets, tmp_path):
    """Space 10 of PKLot sequence 3: a white car at 07:05, nothing at 07:10, a black car at 07:25.
    Neither stood 10 minutes in view, so no case there; the cars that did stand are found."""
    import yaml

    from citypatrol.models.detector import load_detectors
    from citypatrol.pipeline.config.models import Config
    from citypatrol.pipeline.evaluation.pklot import pklot_truth, truth_document
    from citypatrol.pipeline.evaluation.run import evaluate_truth_files, load_truth_files

    truth = pklot_truth(assets / "sequences/pklot_ufpr05_polo/labelled/sequence3", 600)
    path = tmp_path / "seq3.truth.yaml"
    path.write_text(yaml.safe_dump(truth_document(truth, "seq3", 600)))
    config = Config()
    ev = evaluate_truth_files(config, load_detectors(config.models), tmp_path / "out", load_truth_files([path]),
                              show_progress=False)
    space10 = (0.2172, 0.0708, 0.2844, 0.1347)
    cases = [r.case for r in ev.batch.cases]
    assert not [c for c in cases if c.box[0] < space10[2] and c.box[1] < space10[3]], "no case for two cars seen once each"
    (video,) = ev.videos
    # The lamp head at the aisle's edge is called a car at 0.33-0.35, on the rule's 0.35 line: whether it
    # crosses depends on the CPU's INT8 arithmetic (0.351 on an Intel Xeon, under 0.35 on an AMD EPYC).
    # It is the one false case allowed; any other fails.
    lamp_head = (0.734, 0.600, 0.779, 0.655)
    others = [(c, why) for c, why in video.false_cases if box_iou(c.box, lamp_head) < 0.5]
    assert len(video.matched) >= 9 and others == [], (video.false_cases, video.missed)
