"""Event-level scoring: table tests on synthetic cases against a small truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from citypatrol.pipeline.config.models import Camera, Category
from citypatrol.pipeline.evaluation.scoring import ScoredCase, Truth, TruthItem, load_truth, per_category, score_video

CAR = TruthItem(category=Category.illegal_parking, box=(0.4, 0.4, 0.6, 0.6), start_s=10, end_s=100)
SIGN = TruthItem(category=Category.billboard, box=(0.8, 0.1, 0.9, 0.2), start_s=0, optional=True)
TRUTH = Truth(video="v", camera=Camera(id="c", source="v.mp4"), problems=[CAR, SIGN])
DWELL = {Category.illegal_parking: 30.0, Category.billboard: 5.0}


def case(cid: str, cat: Category, box, opened: float) -> ScoredCase:
    return ScoredCase(case_id=cid, camera_id="c", category=cat, box=box, opened_pts=opened)


@pytest.mark.parametrize(
    "cases, tp, fp, fn, why",
    [
        ([case("a", Category.illegal_parking, (0.42, 0.42, 0.61, 0.6), 41)], 1, 0, 0, "match"),
        ([], 0, 0, 1, "missed"),
        ([case("a", Category.illegal_parking, (0.0, 0.0, 0.1, 0.1), 41)], 0, 1, 1, "wrong place"),
        ([case("a", Category.street_vending, (0.42, 0.42, 0.6, 0.6), 41)], 0, 1, 1, "wrong category"),
        ([case("a", Category.illegal_parking, (0.42, 0.42, 0.6, 0.6), 20)], 0, 1, 1, "opened before dwell could pass"),
        ([case("a", Category.illegal_parking, (0.42, 0.42, 0.6, 0.6), 150)], 0, 1, 1, "opened after the problem ended"),
        (
            [case("a", Category.illegal_parking, (0.42, 0.42, 0.6, 0.6), 41), case("b", Category.illegal_parking, (0.4, 0.4, 0.6, 0.6), 60)],
            1, 1, 0, "duplicate case is a false case",
        ),
        ([case("s", Category.billboard, (0.8, 0.1, 0.9, 0.2), 6)], 0, 0, 1, "optional item: neither true nor false"),
        ([case("a", Category.illegal_parking, (0.45, 0.45, 0.55, 0.55), 41)], 1, 0, 0, "box inside the truth box"),
    ],
)
def test_score_video(cases, tp, fp, fn, why):
    s = score_video(TRUTH, cases, DWELL, tolerance_s=2.0)
    total = per_category([s])
    assert sum(c.true_positives for c in total.values()) == tp, why
    assert sum(c.false_positives for c in total.values()) == fp, why
    assert sum(c.false_negatives for c in total.values()) == fn, why


def test_precision_recall_none_when_nothing_to_measure():
    scores = per_category([score_video(TRUTH, [], DWELL, 2.0)])
    assert scores[Category.street_vending].precision is None
    assert scores[Category.illegal_parking].recall == 0.0


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[3] / "sample_videos").glob("*.truth.yaml")))
def test_sample_truth_files_load(path: Path):
    truth = load_truth(path)
    assert truth.camera.zones, "every sample is judged under zones"
    assert truth.problems or truth.not_problems, "a truth file says what is and is not a problem"


def test_a_photo_sample_is_held_as_a_fixed_camera(tmp_path: Path):
    from citypatrol.models.assets import sha256_file
    from citypatrol.pipeline.evaluation.samples import fetch_samples, load_samples

    [sample] = [s for s in load_samples() if s.name == "amsterdam_garbage_frame299"]
    [folder] = fetch_samples(tmp_path, names=[sample.name])
    assert folder == tmp_path / sample.name and sample.hold == 3
    assert sorted(p.name for p in folder.iterdir()) == ["still_000.jpg", "still_001.jpg", "still_002.jpg"]
    assert {sha256_file(p) for p in folder.iterdir()} == {sample.entry.sha256}
    assert fetch_samples(tmp_path, names=[sample.name]) == [folder]  # in place: kept
