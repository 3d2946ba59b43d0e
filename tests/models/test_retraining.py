"""The retraining loop on real data: reviewer decisions (through the review center over HTTP) →
export → a one-epoch CPU fine-tune → candidate vs current → promote → new cases carry the new
version → rollback; the split never shares a camera-minute; the verifier holds back known false
cases from a held-out set of real bin crops; active sampling is rate-capped; shadow mode lists
disagreements.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from citypatrol.models.detections import Detections
from citypatrol.models.promotion import ModelState, PromotionError, load_promoted, with_weights
from citypatrol.models.shadow import disagreements, run_shadow
from citypatrol.models.training.compare import compare
from citypatrol.models.training.export import ExportOptions, export_from_store, group_and_split
from citypatrol.models.training.train import TrainSettings, train
from citypatrol.models.training.verifier_data import export_crops, garbage_cn_crops
from citypatrol.models.verifier import CropVerifier, measure, train_verifier
from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.sinks.active_sampling import ActiveSampler, SamplingConfig
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.boxes import box_iou
from citypatrol.pipeline.config.models import Camera
from citypatrol.pipeline.sinks.second_stage import load_check
from citypatrol.streams.frame import Frame
from tests.conftest import ASSETS
from tests.fixtures_retraining import Decided, Seeded, coco_detector, decided, lot_config, parked_video, seeded, side  # noqa: F401

pytestmark = pytest.mark.slow
BASE = ASSETS / "models/yolo11n_coco_recovered.pt"


@pytest.fixture(scope="module")
def exported(seeded: Seeded, decided: Decided, tmp_path_factory):
    return export_from_store(seeded.db_url, seeded.evidence, tmp_path_factory.mktemp("export"), ExportOptions(classes=["coco"]))


@pytest.fixture(scope="module")
def candidate(exported, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("train") / "run"
    summary = train(TrainSettings(data=str(exported.data_yaml), epochs=1, imgsz=64, batch=4, out=run, base=str(BASE),
                                  cache=False, workers=0))
    return Path(summary["weights"])


def _minute(iso: str) -> str:
    return iso[:16]


def test_export_turns_decisions_into_labelled_images(seeded: Seeded, decided: Decided, exported):
    m = json.loads(exported.manifest.read_text())
    assert m["decisions"]["confirm"] == len(decided.confirmed)
    assert m["decisions"]["reject"] == len(decided.rejected_false + decided.rejected_compliant + decided.skipped)
    assert m["decisions"]["skipped"] == ({"reject: unclear": len(decided.skipped)} if decided.skipped else {})
    assert m["decisions"]["evidence_problems"] == {}
    # every used case's clean frame came from its clip (the annotated frame is never a training image)
    cases = {c["case_id"]: c for img in m["images"] for c in img["cases"]}
    assert set(cases) == set(decided.confirmed + decided.rejected_false + decided.rejected_compliant)
    assert {img["source"] for img in m["images"]} == {"clip"}
    # positives: confirmed and compliant (the car is real); the false alarm's box is left unlabelled
    names = m["classes"]
    total_boxes = sum(sum(c["boxes"].values()) for c in m["counts"].values())
    assert total_boxes == len(decided.confirmed) + len(decided.rejected_compliant) - m["duplicates"]["conflicting_boxes_dropped"]
    assert names[2] == "car" and len(names) == 80
    for img in m["images"]:
        path = exported.out / img["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == img["sha256"]
        lines = (exported.out / img["file"].replace("images/", "labels/", 1)).with_suffix(".txt").read_text().split()
        assert lines[0::5] == ["2"] * len(img["boxes"])  # car
    # a box the reviewer drew is the label, not the detector's
    assert decided.reviewed_boxes and all(cases[c]["box_by_reviewer"] for c in decided.reviewed_boxes)
    assert not any(c["box_by_reviewer"] for cid, c in cases.items() if cid not in decided.reviewed_boxes)
    for case_id, (x1, y1, x2, y2) in decided.reviewed_boxes.items():
        img = next(i for i in m["images"] if any(c["case_id"] == case_id for c in i["cases"]))
        rows = [list(map(float, line.split()[1:])) for line in
                (exported.out / img["file"].replace("images/", "labels/", 1)).with_suffix(".txt").read_text().splitlines()]
        assert any(row == pytest.approx([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], abs=2e-3) for row in rows), rows
    # COCO JSON agrees with the YOLO labels
    for part in ("train", "val"):
        coco = json.loads((exported.out / "annotations" / f"{part}.json").read_text())
        assert len(coco["images"]) == m["counts"][part]["images"]
        assert len(coco["annotations"]) == sum(m["counts"][part]["boxes"].values())
    # verifier crops: confirmed → illegal_parking, rejected false/compliant → allowed_parking
    crops = {c["case_id"]: c["label"] for c in m["crops"]}
    assert all(crops[c] == "illegal_parking" for c in decided.confirmed if c in crops)
    assert all(crops[c] == "allowed_parking" for c in decided.rejected_false + decided.rejected_compliant if c in crops)
    assert m["date_range"]["opened_first"] < m["date_range"]["opened_last"]
    assert m["source"]["database"].startswith("sqlite:///")


def test_export_labels_the_objects_no_reviewer_judged_with_the_models_in_use(seeded: Seeded, decided: Decided, coco_detector, tmp_path):
    """The exported frames show the whole car park: the other parked cars get pseudo-labels from
    the COCO model, the reviewers' boxes stay as drawn, and nothing is labelled where a reviewer
    called the car a false alarm."""
    res = export_from_store(seeded.db_url, seeded.evidence, tmp_path / "export", ExportOptions(classes=["coco"], pseudo_detector=coco_detector))
    m = json.loads(res.manifest.read_text())
    assert m["pseudo_labels"]["model"] == coco_detector.version and m["pseudo_labels"]["boxes"].get("car", 0) >= 2, m["pseudo_labels"]
    for img in m["images"]:
        rows = [list(map(float, line.split())) for line in
                (res.out / img["file"].replace("images/", "labels/", 1)).with_suffix(".txt").read_text().splitlines()]
        assert len(rows) == len(img["boxes"]) + len(img["pseudo_boxes"])
        judged, pseudo = rows[: len(img["boxes"])], rows[len(img["boxes"]):]
        xyxy = [(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) for _, cx, cy, w, h in pseudo]
        for c in img["cases"]:
            if c["reason"] == "not_problem":  # the false alarm's car stays unlabelled, and is not greyed out
                record = next(r for r in seeded.batch.cases if r.case_id == c["case_id"])
                assert all(box_iou(b, record.case.box) < 0.3 for b in xyxy), (c["case_id"], xyxy)
                assert all(box_iou(b, record.case.box) < 0.1 for b in img["greyed_out"]), (c["case_id"], img["greyed_out"])
        # unsure detections are greyed out in the picture: flat there, textured elsewhere
        picture = cv2.imread(str(res.out / img["file"]))
        ph, pw = picture.shape[:2]
        for x1, y1, x2, y2 in img["greyed_out"]:
            patch = picture[int(y1 * ph) + 2 : int(y2 * ph) - 2, int(x1 * pw) + 2 : int(x2 * pw) - 2]
            assert patch.size and patch.std() < 4, (img["file"], (x1, y1, x2, y2), patch.std())
        for cid, (x1, y1, x2, y2) in decided.reviewed_boxes.items():
            if any(c["case_id"] == cid for c in img["cases"]):
                assert any(r[1:] == pytest.approx([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], abs=2e-3) for r in judged)
    total = sum(sum(c["boxes"].values()) for c in m["counts"].values())
    assert total == sum(len(i["boxes"]) + len(i["pseudo_boxes"]) for i in m["images"])


def test_dataset_export_command_pseudo_labels_by_default(seeded: Seeded, decided: Decided, tmp_path):
    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "dataset", "export", "--db", seeded.db_url,
           "--evidence", str(seeded.evidence), "--classes", "coco"]  # fmt: skip
    done = subprocess.run([*exe, "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["pseudo_labels"]["boxes"] and "yolo11n-coco" in m["pseudo_labels"]["model"]
    plain = subprocess.run([*exe, "--out", str(tmp_path / "b"), "--no-pseudo-labels"], capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0 and json.loads((tmp_path / "b" / "manifest.json").read_text())["pseudo_labels"] is None


def test_split_keeps_each_camera_minute_on_one_side(exported):
    m = json.loads(exported.manifest.read_text())
    sides: dict[tuple[str, str], set[str]] = {}
    for img in m["images"]:
        sides.setdefault((img["camera"], _minute(img["opened_at"])), set()).add(img["split"])
    assert all(len(s) == 1 for s in sides.values()), sides
    assert {img["split"] for img in m["images"]} == {"train", "val"}  # two cameras 90 min apart: one each side


def test_split_rule_on_many_cases():
    rng = random.Random(7)
    t0 = datetime(2026, 11, 18, 8, tzinfo=UTC)
    cams = [rng.choice(["a", "b", "c"]) for _ in range(400)]
    times = [t0 + timedelta(seconds=rng.uniform(0, 6 * 3600)) for _ in cams]
    hashes = [rng.getrandbits(64) for _ in cams]
    hashes[5] = hashes[300] ^ 0b11  # a near-duplicate picture hours apart
    cams[5] = cams[300]
    _, groups, split = group_and_split(cams, times, hashes, val_fraction=0.3, seed=1)
    seen: dict[tuple[str, str], set[str]] = {}
    for c, t, s in zip(cams, times, split):
        seen.setdefault((c, t.strftime("%H:%M")), set()).add(s)
    assert all(len(v) == 1 for v in seen.values())
    assert split[5] == split[300]
    assert 0.1 < split.count("val") / len(split) < 0.5
    # a neighbour less than a minute away across a minute boundary is on the same side too
    for i in range(len(cams)):
        for j in range(len(cams)):
            if cams[i] == cams[j] and abs((times[i] - times[j]).total_seconds()) < 60:
                assert split[i] == split[j]


def test_candidate_is_measured_promoted_carried_by_new_cases_and_rolled_back(
        seeded: Seeded, exported, candidate, coco_detector, parked_video, tmp_path, monkeypatch):
    state_path = tmp_path / "models" / "state.json"
    monkeypatch.setenv("CITYPATROL_MODEL_STATE", str(state_path))
    cfg = seeded.config
    cand = load_detectors(with_weights(cfg.models, None, str(candidate)))
    assert "car" in cand.classes and "person" in cand.classes  # fine-tuned on the 80-label export: the head is kept
    cmp = compare(cfg, coco_detector, cand, tmp_path / "cmp", data_yaml=exported.data_yaml, samples=["pklot_ufpr05_seq1"])
    for side in (cmp.current, cmp.candidate):
        det, ev = side["detection"], side["events"]
        assert det["images"] >= 1 and det["labels"] >= 1 and 0.0 <= det["mAP50"] <= 1.0
        assert ev["true_cases"] + ev["missed"] >= 4  # PKLot seq1 has four required illegal-parking problems
    assert cmp.current["detection"]["mAP50"] > 0.5  # the current model finds the confirmed cars
    assert json.loads(cmp.path.read_text())["candidate"]["model"] == cand.version

    st = ModelState(state_path)
    entry = st.register("coco", candidate, manifest=exported.manifest)
    assert entry["version"] == "v1" and entry["status"] == "candidate"
    assert entry["data_manifest"]["counts"] == json.loads(exported.manifest.read_text())["counts"]
    with pytest.raises(PromotionError, match="no recorded evaluation"):
        st.promote("coco", "v1")
    st.record_metrics("coco", "v1", cmp.as_dict())
    st.promote("coco", "v1", by="test")

    promoted = load_promoted(cfg.models, st)
    assert promoted.version == "coco@v1"
    cam = cfg.cameras[0].model_copy(update={"source": str(parked_video)})
    again = run_batch(cfg.model_copy(update={"cameras": [cam]}), [cam], tmp_path / "after", promoted, show_progress=False)
    assert again.cases, "the promoted model still finds the parked cars"
    assert {r.case.model for r in again.cases} == {"coco@v1"}
    assert again.model == "coco@v1"

    back = st.rollback("coco", by="test")
    assert back is None  # nothing was promoted before: the config's own weights again
    assert load_promoted(cfg.models, st).version == coco_detector.version
    history = [h["action"] for h in st.models()["coco"]["history"]]
    assert history == ["register", "promote", "rollback"]
    assert st.models()["coco"]["versions"]["v1"]["status"] == "rolled_back"


def test_shadow_lists_where_candidate_and_current_disagree(coco_detector, candidate, seeded: Seeded, tmp_path):
    cand = load_detectors(with_weights(seeded.config.models, None, str(candidate)))
    video = ASSETS / "videos/parking_lot_cctv_timelapse_640x480_8s.mp4"
    summary = run_shadow(seeded.config, coco_detector, cand, [str(video)], tmp_path, every=2)
    assert summary["frames_compared"] >= 2
    lines = [json.loads(x) for x in (tmp_path / "disagreements.jsonl").read_text().splitlines()]
    assert len(lines) == summary["frames_compared"] - summary["frames_agreeing"]
    for line in lines:
        assert line["disagreements"] and (line["picture"] is None or (tmp_path / line["picture"]).is_file())
    # the comparison itself, on the current model's real detections with one box taken away
    img = np.ascontiguousarray(__import__("cv2").imread(str(seeded.out / "evidence" / seeded.batch.cases[0].evidence[0].path)))
    det = coco_detector.detect([img])[0]
    strong = det[det.confidence >= 0.5]
    assert len(strong) >= 1
    assert disagreements(det, det) == []
    missing = disagreements(det, det[np.arange(len(det)) != int(np.argmax(det.confidence))])
    assert [d.kind for d in missing] == ["candidate misses"] and missing[0].class_name == str(det.class_name[np.argmax(det.confidence)])


def test_active_sampling_keeps_uncertain_and_rare_frames_within_the_cap(seeded: Seeded):
    s = seeded.sampler
    assert s.seen > 100
    files = sorted((seeded.out / "to_label").rglob("*.json"))
    assert 1 <= len(files) == s.kept <= 3 * 2  # at most 3 an hour per camera; both cameras' footage < 1 h
    for f in files:
        rec = json.loads(f.read_text())
        assert rec["why"] and rec["prelabels"] and f.with_suffix(".jpg").is_file()
    # pure rule: uncertain / rare / nothing, and the minimum gap
    sampler = ActiveSampler(Path("/nonexistent"), SamplingConfig(threshold=0.5, band=0.1, min_gap_s=30, max_per_hour=2))
    frame = lambda pts: Frame("cam", pts, datetime(2026, 11, 18, tzinfo=UTC), np.zeros((8, 8, 3), np.uint8))  # noqa: E731
    sure = Detections.from_lists([[0, 0, 4, 4]], [0.9], ["car"], (8, 8))
    unsure = Detections.from_lists([[0, 0, 4, 4]], [0.55], ["car"], (8, 8))
    rare = Detections.from_lists([[0, 0, 4, 4]], [0.9], ["garbage_overflow"], (8, 8))
    assert sampler.consider(frame(0), sure) is None
    assert "uncertain" in sampler.consider(frame(1), unsure)
    assert sampler.consider(frame(10), rare) is None  # within min_gap_s of the last kept frame
    assert "rare" in sampler.consider(frame(100), rare)
    assert sampler.consider(frame(500), unsure) is None  # two an hour already
    assert sampler.consider(frame(3700), unsure) is not None  # the hour has moved on


@pytest.fixture(scope="module")
def garbage_sets():
    train_c, train_l, _ = garbage_cn_crops("train", limit=220)
    held_c, held_l, _ = garbage_cn_crops("val", limit=120)
    return train_c, train_l, held_c, held_l


def test_verifier_holds_back_known_false_cases_on_held_out_bins(garbage_sets, tmp_path):
    train_c, train_l, held_c, held_l = garbage_sets
    assert {"bin_not_full", "garbage_overflow"} <= set(held_l) and len(held_l) >= 100
    v = train_verifier(train_c, train_l, feature_kind="hog-colour+backbone")
    v = CropVerifier.load(v.save(tmp_path / "verifier.npz"))  # what is used is what was saved
    assert (tmp_path / "verifier.npz").stat().st_size < 1_000_000
    [at_half, at_loss] = measure(v, held_c, held_l, (0.5,), max_loss=0.1)
    # known false cases: crops of bins that are not overflowing, as a garbage_overflow case would show them
    assert at_half.false_cases >= 40 and at_half.true_cases >= 40
    assert at_half.removed_share >= 0.6, at_half
    assert at_half.lost_share <= 0.35, at_half
    assert at_loss.lost_share <= 0.1 and at_loss.removed_share >= 0.25, at_loss
    # no check for a category it has not learnt: the policy holds such cases instead of trusting them
    assert v.score("billboard", held_c[:1]) is None


def test_verifier_from_export_holds_cases_through_the_recorder(exported, seeded: Seeded, decided: Decided, parked_video, tmp_path):
    """Trained on the export's crops, the verifier's score reaches the review policy through the batch
    runner: with dispatch on and `min_check_score` set, the car a reviewer called a false alarm is held
    for review and the confirmed ones are auto-submitted. (Scored on the cars it learnt from: this is
    the wiring; how well it generalises is measured on the held-out bins above.)"""
    crops, labels, _ = export_crops(exported.out, "train")
    vc, vl, _ = export_crops(exported.out, "val")
    assert set(labels + vl) == {"illegal_parking", "allowed_parking"}
    v = train_verifier(crops + vc, labels + vl, feature_kind="hog-colour")
    cam = seeded.config.cameras[0].model_copy(update={"source": str(parked_video)})
    cfg = lot_config([cam], dispatch={"enabled": True, "adapter": "file", "file_dir": str(tmp_path / "outbox")},
                     review={"default": {"min_score": 0.0, "min_check_score": 0.5}, "verifier": str(v.save(tmp_path / "v.npz"))})
    check = load_check(cfg.review)  # as `citypatrol analyze` / `run` / `casekeeper` load it
    result = run_batch(cfg, [cam], tmp_path / "out", seeded_detector(seeded), show_progress=False, check=check)
    assert {side(r.case.box) for r in result.cases} == {"left", "right"}
    for r in result.cases:
        first = r.case.history[1]
        assert first.actor == "review_policy" and "second-stage check" in first.reason, first
        # lot-a's reviewer confirmed the right car and called the left one a false alarm
        want = "approved" if side(r.case.box) == "right" else "pending_review"
        assert r.case.status.value == want, (r.case.box, first.reason)


def seeded_detector(seeded: Seeded):
    return load_detectors(seeded.config.models)
