"""The batch path end to end: real footage, the real default detector, the real store.

- every sample video meets its truth file (what must be found, and nothing else);
- a car parked for 10 minutes of stream time is one case; an occlusion does not split it;
- a car that leaves expires its case, and its return within the window reopens it;
- bad files are reported while the others are analysed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.models import Camera, CasesConfig, Category, Config, Zone, ZoneKind
from citypatrol.pipeline.evaluation.run import evaluate_samples
from citypatrol.pipeline.evaluation.scoring import box_iou
from citypatrol.pipeline.types import CaseStatus
from footage import PARKED_BAYS, PARKED_CARS, PARKING, encode, frame_at, paste

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config() -> Config:
    return Config()


@pytest.fixture(scope="module")
def detector(config: Config):
    return load_detectors(config.models)


@pytest.fixture(scope="module")
def evaluation(config, detector, tmp_path_factory):
    return evaluate_samples(config, detector, tmp_path_factory.mktemp("eval"), show_progress=False)


def test_no_false_cases_on_any_sample(evaluation):
    false = [(v.video, c.case_id, c.category.value, why) for v in evaluation.videos for c, why in v.false_cases]
    assert false == [], f"cases that are not problems: {false}"


# Categories whose sample truth the default models are known to miss, and why. The test fails when
# another category is missed, and also when one of these starts to be found (update this list).
KNOWN_MISSES: dict[Category, str] = {
    # exposed_garbage is at 0.5: the bags in the motion-blurred Amsterdam frame 123 are missed.
}


def test_truth_found_for_every_category_the_model_can_see(evaluation, detector):
    missed = {}
    for cat, score in evaluation.categories.items():
        needs = {Category.billboard: "billboard", Category.garbage_overflow: "garbage_overflow"}.get(cat)
        if score.true_positives + score.false_negatives == 0:
            continue
        if needs and needs not in detector.classes:
            # the rule is off for lack of classes, and the run says so
            assert any(cat.value in r or needs in r for r in evaluation.batch.disabled_rules)
            continue
        if score.recall is None or score.recall < 0.5:
            missed[cat] = score.recall
    assert set(missed) == set(KNOWN_MISSES), f"recall under 0.5: {missed}; known misses: {list(KNOWN_MISSES)}"
    assert evaluation.categories[Category.illegal_parking].recall == 1.0
    # the text cue finds the London train poster and the facade signs, the panel cue the station render
    assert evaluation.categories[Category.billboard].recall == 1.0


def test_batch_outputs_are_consistent(evaluation):
    b = evaluation.batch
    lines = b.detections_jsonl.read_text().splitlines()
    assert len(lines) == sum(o.frames for o in b.outcomes) > 50
    rec = json.loads(lines[0])
    assert {"camera", "pts", "wall", "detections"} <= set(rec)
    assert json.loads(b.cases_json.read_text()) == [] or all("code" in c for c in json.loads(b.cases_json.read_text()))
    assert b.report is not None and b.report.is_file()
    assert (b.out_dir / "frames").is_dir() and any((b.out_dir / "frames").iterdir())


def _parking_config(cases: CasesConfig, dwell: float) -> Config:
    cam_rules = {"illegal_parking": {"dwell_s": dwell}}
    zone = Zone(id="bays", name="消防通道 fire lane", kind=ZoneKind.no_parking, polygon=PARKED_BAYS)
    camera = Camera(id="lot", name="停车场 lot", source="x", cadence_s=2.0, zones=[zone], rules=cam_rules)
    return Config(cameras=[camera], cases=cases)


def _run(tmp_path: Path, config: Config, detector, video: Path):
    cam = config.cameras[0].model_copy(update={"source": str(video)})
    return run_batch(config, [cam], tmp_path / "out", detector, show_progress=False)


def _cases_per_car(result) -> dict[int, list]:
    per_car: dict[int, list] = {i: [] for i in range(len(PARKED_CARS))}
    for r in result.cases:
        best = max(range(len(PARKED_CARS)), key=lambda i: box_iou(r.case.box, PARKED_CARS[i]))
        assert box_iou(r.case.box, PARKED_CARS[best]) > 0.4, f"case {r.case.case_id} at {r.case.box} is not on a parked car"
        per_car[best].append(r)
    return per_car


def test_car_parked_ten_minutes_is_one_case_even_through_an_occlusion(tmp_path, assets, detector):
    parked = frame_at(assets / PARKING, 4.0)
    grey = parked.copy()
    grey[int(0.5 * 480) : int(0.8 * 480), int(0.5 * 640) : int(0.8 * 640)] = 128  # a van passes in front
    video = encode(tmp_path / "parked.mp4", 600, lambda s: grey if 300 <= s < 312 else parked)
    config = _parking_config(CasesConfig(grace_s=120, reopen_window_s=600), dwell=120)
    result = _run(tmp_path, config, detector, video)
    per_car = _cases_per_car(result)
    assert sum(1 for v in per_car.values() if v) >= 2, "the parked cars in the zone are found"
    for car, cases in per_car.items():
        assert len(cases) <= 1, f"car {car} split into {len(cases)} cases"
        for r in cases:
            assert 120 - 4 <= r.case.opened_pts <= 120 + 4, "opened when the dwell was reached"
            assert r.case.status is CaseStatus.detected and r.case.last_seen_pts >= 600 - 60 - 4  # rules re-fire every 60 s while it persists
            assert r.sightings >= 1  # refreshes of one episode are one sighting


def test_car_that_leaves_expires_and_its_return_reopens_the_case(tmp_path, assets, detector):
    parked = frame_at(assets / PARKING, 4.0)
    empty = paste(parked, frame_at(assets / PARKING, 0.0), (0.5, 0.5, 0.8, 0.8))
    video = encode(tmp_path / "leaves.mp4", 700, lambda s: empty if 200 <= s < 500 else parked)
    config = _parking_config(CasesConfig(grace_s=120, reopen_window_s=600), dwell=60)
    result = _run(tmp_path, config, detector, video)
    per_car = _cases_per_car(result)
    assert any(per_car.values())
    for cases in per_car.values():
        assert len(cases) <= 1, "the return is the same case, not a new one"
        for r in cases:
            steps = [t.to_status for t in r.case.history]
            assert steps[:3] == [CaseStatus.detected, CaseStatus.expired, CaseStatus.reopened], steps
            expired_at = next(t for t in r.case.history if t.to_status is CaseStatus.expired)
            assert "not seen" in expired_at.reason
            assert r.case.last_seen_pts >= 700 - 60 - 4


def test_analyze_reports_bad_files_and_goes_on(tmp_path, assets):
    good = tmp_path / "good.mp4"
    shutil.copy(assets / "videos/pedestrian_street_bins_1080p_4s.mp4", good)
    data = (assets / "videos/london_street_hoardings_1080p_3s.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.mp4").write_text("this is not a video\n")
    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "analyze"]
    run = subprocess.run(exe + [str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    text = run.stdout + run.stderr
    assert "notes" in text and "truncated" in text
    cams = {json.loads(line)["camera"] for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines()}
    assert "good" in cams and "notes" not in cams
    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "notes.mp4").write_text("no video here\n")
    run = subprocess.run(exe + [str(bad_only), "--out", str(tmp_path / "out2"), "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "nothing could be analysed" in run.stdout + run.stderr


def test_a_run_on_a_shared_store_reports_only_its_own_cases(tmp_path, assets, detector):
    from citypatrol.pipeline.store.case_store import open_store

    parked = frame_at(assets / PARKING, 4.0)
    video = encode(tmp_path / "parked.mp4", 150, lambda s: parked)
    config = _parking_config(CasesConfig(), dwell=60)
    store = open_store(f"sqlite:///{tmp_path / 'shared.db'}")
    lot = config.cameras[0].model_copy(update={"source": str(video)})
    first = run_batch(config, [lot], tmp_path / "first", detector, store=store, show_progress=False)
    assert first.cases and {r.case.camera_id for r in first.cases} == {"lot"}

    # a second run, another camera of the same footage, into the same store (a camera the first run never had)
    other = lot.model_copy(update={"id": "lot-east"})
    second = run_batch(config.model_copy(update={"cameras": [other]}), [other], tmp_path / "second", detector,
                       store=store, show_progress=False)
    assert second.cases and {r.case.camera_id for r in second.cases} == {"lot-east"}
    listed = json.loads(second.cases_json.read_text())
    assert sorted(c["case_id"] for c in listed) == sorted(r.case.case_id for r in second.cases)
    assert sum(o.cases for o in second.outcomes) == len(second.cases)
    assert len(store.list_cases(limit=1000)) == len(first.cases) + len(second.cases)  # the store keeps both runs
    store.close()
