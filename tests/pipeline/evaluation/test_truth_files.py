"""Evaluating on a city's own footage: truth files from PKLot labels, bad truth refused whole, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from citypatrol.pipeline.evaluation.pklot import occupancy_items, pklot_truth
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.evaluation.run import TruthFilesError, load_truth_files, undeclared_categories

LABELLED = "sequences/pklot_ufpr05_polo/labelled"
BOX = (0.1, 0.1, 0.2, 0.2)
CLI = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]


@pytest.mark.parametrize(
    "occupied, want",
    [
        ([1, 1, 1, 1], [(0, None)]),  # occupied throughout: one open-ended item
        ([0, 1, 1, 1, 0], [(300, 900)]),  # 10 minutes between the first and last still it was seen in
        ([0, 1, 0, 1], []),  # seen once, gone, seen once: never stood the dwell in view
        ([1, 1, 0, 0], []),  # 5 minutes only
        ([1, 1, 1, 0, 1, 1, 1], [(0, 600), (1200, None)]),  # left and another came: two items
    ],
)
def test_a_space_occupied_for_the_dwell_is_one_item(occupied, want):
    stills = [(300.0 * i, {"7": bool(o)}) for i, o in enumerate(occupied)]
    items = occupancy_items(stills, {"7": BOX}, dwell_s=600)
    assert [(i.start_s, i.end_s) for i in items] == want
    assert all(i.box == BOX and i.category.value == "illegal_parking" for i in items)


def test_pklot_sequence_gives_the_cars_that_stood_ten_minutes(assets):
    truth = pklot_truth(assets / LABELLED / "sequence1", 600)
    got = {i.note.split(",")[0]: (i.start_s, i.end_s) for i in truth.items}
    # the hand-checked sample truth (sample_videos/pklot_ufpr05_seq1.truth.yaml) lists the same spaces
    assert got == {"space 4": (0, None), "space 6": (1800, None), "space 10": (0, None), "space 11": (2401, None),
                   "space 16": (2401, None), "space 19": (1800, None)}
    assert truth.size == (1280, 720) and truth.labelled == 5 and len(truth.zone) >= 4


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _doc(footage: str, **problem) -> dict:
    return {"video": "gate", "camera": {"id": "gate", "source": footage, "zones": []},
            "problems": [{"category": "illegal_parking", "box": [0.1, 0.1, 0.2, 0.2], "start_s": 0, **problem}]}


def test_bad_truth_is_refused_with_its_key_path_and_nothing_runs(assets, tmp_path):
    footage = str(assets / LABELLED / "sequence0/frames")
    good = _write(tmp_path / "good.truth.yaml", _doc(footage))
    bad_box = _write(tmp_path / "box.truth.yaml", _doc(footage, box=[0.5, 0.1, 0.2, 0.2]))
    bad_cat = _write(tmp_path / "cat.truth.yaml", _doc(footage, category="double_parking"))
    no_footage = _write(tmp_path / "gone.truth.yaml", _doc(str(tmp_path / "nowhere")))
    with pytest.raises(TruthFilesError) as err:
        load_truth_files([good, bad_box, bad_cat, no_footage])
    text = "\n".join(err.value.problems)
    assert "box.truth.yaml" in text and "problems[0].box" in text
    assert "gone.truth.yaml" in text and "camera.source" in text
    assert "cat.truth.yaml" not in text  # a category the built-ins lack may be one the config declares: judged with the config
    assert len(load_truth_files([good, good])) == 2  # a repeated camera id is made unique
    (_, _, unknown), = load_truth_files([bad_cat])
    assert undeclared_categories(Config(), [unknown]) == [
        "gate: problems[0].category: 'double_parking' is not a built-in category and the config declares no such "
        "category (declared: none)"]
    out = tmp_path / "out"
    for wrong, says in ((bad_box, "problems[0].box"), (bad_cat, "declares no such category")):
        run = subprocess.run(CLI + ["evaluate", "--truth", str(good), "--truth", str(wrong), "--out", str(out)],
                             capture_output=True, text=True)
        assert run.returncode == 2 and says in run.stderr and "nothing was evaluated" in run.stderr, run.stderr[-1500:]
        assert not (out / "detections.jsonl").exists(), "nothing half-scored"


def test_a_configured_category_is_scored_from_a_truth_file(tmp_path):
    """乱堆物料 (material_piling, declared in configs/example.yaml) judged on the Amsterdam photo 273
    held as a fixed camera: the bags piled on cardboard by the door are its one item."""
    from citypatrol.models.detector import load_detectors
    from citypatrol.pipeline.evaluation.run import evaluate_truth_files, sample_cameras
    from citypatrol.pipeline.evaluation.samples import fetch_samples, load_samples
    from citypatrol.pipeline.evaluation.scoring import Truth, TruthItem
    from footage import box_zone, example_config

    name = "amsterdam_garbage_frame273"
    fetch_samples(tmp_path, [name])
    (cam, _), = sample_cameras([s for s in load_samples() if s.name == name], tmp_path)
    off = {r: {"enabled": False} for r in ("illegal_parking", "street_vending", "garbage", "billboard")}
    cam = cam.model_copy(update={"rules": cam.rules.model_copy(update=off),
                                 "zones": [box_zone("pavement", "pavement", (0.0, 0.1, 1.0, 1.0), dwell_s=120)]})
    truth = Truth(video=name, camera=cam, problems=[
        TruthItem(category="material_piling", box=(0.06, 0.30, 0.65, 0.91), start_s=0, note="bags piled on cardboard")])
    assert truth.problems[0].category.value == "material_piling"
    config = example_config()
    config = config.model_copy(update={"storage": config.storage.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'c.db'}"})})
    ev = evaluate_truth_files(config, load_detectors(config.models), tmp_path / "out", [(tmp_path / "t.truth.yaml", cam, truth)],
                              show_progress=False)
    piling = ev.categories["material_piling"]
    assert (piling.true_positives, piling.false_positives, piling.false_negatives) == (1, 0, 0)


def test_evaluate_own_footage_from_pklot_labels_as_json(assets, tmp_path):
    truth = tmp_path / "seq1.truth.yaml"
    made = subprocess.run(CLI + ["truth", "from-pklot", str(assets / LABELLED / "sequence1"), "--out", str(truth)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    run = subprocess.run(CLI + ["evaluate", "--truth", str(truth), "--json", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    parking = result["categories"]["illegal_parking"]
    assert parking["true_cases"] >= 5 and parking["false_cases"] == 0, result["videos"][0]
    video = result["videos"][0]
    assert video["footage"].endswith("sequence1/frames")
    for case in video["matched"]:
        assert Path(case["evidence"]).is_file()
    for miss in video["missed"]:
        assert Path(miss["look_at"]).is_file()
