"""Categories from configuration, on real footage: the two categories of configs/example.yaml
(店外经营, a scene_change category in door_front zones; 乱堆物料, a stationary_object category in
pavement zones), taken from that file as they are, run through the batch runner with the real
default detector and store.

The mirror has no footage of goods set out at a shop door nor of builders' materials, so the
positives are of the rule kinds on what the footage does show, named as such:

- scene_change: PKLot UFPR05 (sequence 1), against its 06:25 frame as the reference picture:
  cars that arrive and stay are new objects at rest (the car already there at 06:25 is not);
- stationary_object: the Amsterdam pavement photo 273 held as a fixed camera: garbage bags piled
  on cardboard in front of a door, a pile at rest.

Negatives: the pedestrian shopping street with door_front zones over its shop fronts and a
pavement zone (walkers, a pram, bins, benches: nothing set out, nothing piled), and the car
already in the PKLot reference picture.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.models import Config, ConfiguredCategory
from citypatrol.pipeline.evaluation.run import sample_cameras
from citypatrol.pipeline.evaluation.samples import fetch_samples, load_samples
from citypatrol.pipeline.evaluation.scoring import box_iou
from footage import PKLOT_SPACE_4, PKLOT_SPACE_6, PKLOT_SPACE_11, box_zone, example_config, frame_at, pklot_door_fronts

pytestmark = pytest.mark.slow

SHOP_FRONT, PILING = "shop_front_business", "material_piling"
BAGS = (0.06, 0.30, 0.65, 0.91)  # Amsterdam photo 273: the row of bags on cardboard


@pytest.fixture(scope="module")
def example() -> Config:
    return example_config()


@pytest.fixture(scope="module")
def run(example, tmp_path_factory):
    """One batch run over the three cameras, with the example config's categories and nothing else changed."""
    tmp = tmp_path_factory.mktemp("configured")
    names = ["pklot_ufpr05_seq1", "amsterdam_garbage_frame273", "pedestrian_street_bins_1080p_4s"]
    fetch_samples(tmp, names)
    cams = {c.id: c for c, _ in sample_cameras([s for s in load_samples() if s.name in names], tmp)}
    off = {"illegal_parking": {"enabled": False}, "street_vending": {"enabled": False},
           "garbage": {"enabled": False}, "billboard": {"enabled": False}}

    lot = pklot_door_fronts(cams["pklot_seq1"])  # the category's own dwell (600 s) applies

    photo = cams["ams_frame273"]
    photo = photo.model_copy(update={
        "rules": photo.rules.model_copy(update=off),
        "zones": [box_zone("pavement", "pavement", (0.0, 0.1, 1.0, 1.0), dwell_s=120)],
    })

    street = cams["pedestrian"]
    video = Path(street.source)
    # the clip has no moment without walkers: its reference picture is the per-pixel median of its frames
    background = np.median(np.stack([frame_at(video, t) for t in np.arange(0.0, 3.8, 0.25)]), axis=0).astype(np.uint8)
    cv2.imwrite(str(tmp / "pedestrian_reference.png"), background)
    street = street.model_copy(update={
        "reference_image": tmp / "pedestrian_reference.png",
        "rules": street.rules.model_copy(update=off),
        "zones": [box_zone("shops-west", "door_front", (0.0, 0.25, 0.25, 0.65), dwell_s=1.5),
                  box_zone("shops-north", "door_front", (0.28, 0.08, 0.62, 0.22), dwell_s=1.5),
                  box_zone("pavement-east", "pavement", (0.75, 0.15, 0.98, 0.95), dwell_s=1.5)],
    })

    config = example.model_copy(update={"cameras": [lot, photo, street]})
    config = Config.model_validate(config.model_dump())
    config = config.model_copy(update={"storage": config.storage.model_copy(update={"database_url": f"sqlite:///{tmp / 'cases.db'}"})})
    return run_batch(config, config.cameras, tmp / "out", load_detectors(config.models), show_progress=False)


def _cases(run, camera: str, category: str):
    return [r for r in run.cases if r.case.camera_id == camera and r.case.category == category]


def test_the_categories_come_from_the_example_config(example, run):
    assert [(c.name, c.rule.value, c.zone_kind) for c in example.categories] == [
        (SHOP_FRONT, "scene_change", "door_front"), (PILING, "stationary_object", "pavement")]
    assert not [r for r in run.disabled_rules if SHOP_FRONT in r or PILING in r]


def test_scene_change_finds_cars_that_arrive_and_stay_not_the_one_in_the_reference(run):
    cases = _cases(run, "pklot_seq1", SHOP_FRONT)
    assert cases, f"no {SHOP_FRONT} case on the lot: {[(r.case.camera_id, r.case.category) for r in run.cases]}"
    for r in cases:
        assert isinstance(r.case.category, ConfiguredCategory) and r.case.category.value == SHOP_FRONT
        assert (r.codes.code, r.codes.name, r.codes.major) == ("0504", "店外经营", "街面秩序")
        assert r.case.zone_id in ("space-6", "space-11")
        assert box_iou(r.case.box, PKLOT_SPACE_4) == 0
    found = {r.case.zone_id: r.case for r in cases}
    assert sorted(found) == ["space-11", "space-6"] and len(cases) == 2
    assert box_iou(found["space-6"].box, PKLOT_SPACE_6) >= 0.3 and found["space-6"].opened_pts >= 1800 + 600  # at rest from 06:55
    assert box_iou(found["space-11"].box, PKLOT_SPACE_11) >= 0.3 and found["space-11"].opened_pts >= 2401 + 600  # from 07:05


def test_stationary_object_finds_the_pile_of_bags(run):
    cases = _cases(run, "ams_frame273", PILING)
    assert len(cases) == 1, [(r.case.category, r.case.box) for r in run.cases if r.case.camera_id == "ams_frame273"]
    c = cases[0]
    assert box_iou(c.case.box, BAGS) >= 0.2 or _inside(c.case.box, BAGS)
    assert c.case.opened_pts >= 120 and (c.codes.code, c.codes.name) == ("0507", "乱堆物料")


def test_nothing_at_the_shop_fronts_of_the_pedestrian_street(run):
    assert [(r.case.category, r.case.zone_id, r.case.box) for r in run.cases if r.case.camera_id == "pedestrian"] == []


def test_no_other_cases(run):
    """Every built-in rule is off for these cameras: only the configured categories open cases."""
    assert {str(r.case.category) for r in run.cases} <= {SHOP_FRONT, PILING}


def _inside(box, outer, slack: float = 0.02) -> bool:
    return box[0] >= outer[0] - slack and box[1] >= outer[1] - slack and box[2] <= outer[2] + slack and box[3] <= outer[3] + slack

