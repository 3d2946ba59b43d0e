"""citypatrol's own city-problem model: the dataset it is built from, the shipped weights through the
registry on real held-out images and footage, and `citypatrol train` end to end on real images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from citypatrol.models.assets import resolve_asset, sha256_file
from citypatrol.models.registry import load_registry
from citypatrol.models.training.dataset import CITY_CLASSES, build_city_dataset
from citypatrol.pipeline.config.models import ModelsConfig

REPO = Path(__file__).resolve().parents[2]
MODEL = "citypatrol-city"
GARBAGE = "datasets/garbage_bin_overflow_cn"
FACADE = "datasets/facade_advertising_spb"
VENDORS = "datasets/street_vendors_bogota_aerial"
SOURCE_PREFIX = {GARBAGE: "garbage_cn", FACADE: "facade_spb", VENDORS: "vendors_bogota"}  # mirror folder -> dataset name

# Validation-split images (test_examples_are_held_out checks they are held out), each looked at by
# eye: it shows the class. (The mirror's own train/valid folders are not our split.)
HELD_OUT_POSITIVES: list[tuple[str, str]] = [
    (f"{GARBAGE}/train/images/002066_jpg.rf.90a5040e704c039ed319a07cf6c9813f.jpg", "garbage_bin"),  # blue wheelie bin
    (f"{GARBAGE}/train/images/001986_jpg.rf.c80e03e3fd3ec83a544b6fa2dff9837b.jpg", "garbage_bin"),  # row of 4 bins
    (f"{GARBAGE}/train/images/000220_jpg.rf.089e8628f663df50cf4b0237f41bb6f0.jpg", "garbage_overflow"),  # man by heaped bin
    (f"{GARBAGE}/train/images/000434_jpg.rf.577f9afebb1aab62e6e11f4a9e9a44f2.jpg", "garbage_overflow"),  # kerbside bin
    (f"{GARBAGE}/train/images/000980_jpg.rf.30f1efae363c0be30c3ea188629c62f9.jpg", "garbage_pile"),  # heap under trees
    (f"{GARBAGE}/train/images/001134_jpg.rf.3289a5555eea72374044c23bc63ea70a.jpg", "garbage_pile"),  # spill by a wall
    (f"{FACADE}/images/train/img_10.jpg", "billboard"),  # 'Букетико' fascia sign + projecting sign
    (f"{FACADE}/images/train/img_128.jpg", "billboard"),  # long fascia sign on a green facade
    # aerial orthophoto chips: a vendor's parasol seen from above
    (f"{VENDORS}/valid/images/ortofoto-bogota-2021_2_chip_20_45_png.rf.3cff8a55dd1517c99e0d36164f8e524d.jpg", "stall"),
    (f"{VENDORS}/valid/images/tunja_resample_clip_chip_22_15_png.rf.a009344a3e5928079a90049512d39f04.jpg", "stall"),
]
# Held-out images that show none of the listed classes.
HELD_OUT_NEGATIVES: list[tuple[str, set[str]]] = [
    (f"{FACADE}/images/train/img_156.jpg", {"garbage_bin", "garbage_overflow", "garbage_pile"}),  # clean facade
    (f"{FACADE}/images/train/img_128.jpg", {"garbage_bin", "garbage_overflow", "garbage_pile"}),
    (f"{GARBAGE}/train/images/000980_jpg.rf.30f1efae363c0be30c3ea188629c62f9.jpg", {"billboard", "garbage_bin"}),
    (f"{GARBAGE}/train/images/002066_jpg.rf.90a5040e704c039ed319a07cf6c9813f.jpg", {"billboard", "garbage_overflow", "garbage_pile"}),
    (f"{GARBAGE}/train/images/000220_jpg.rf.089e8628f663df50cf4b0237f41bb6f0.jpg", {"stall"}),  # bin and a man beside it
    # aerial chips without a vendor: a road with cars, a car park
    (f"{VENDORS}/valid/images/igac_reample_chip_13_13_png.rf.5b7e49ecdcd136b71579d73018e7432a.jpg", {"stall", "garbage_pile", "garbage_bin"}),
    (f"{VENDORS}/valid/images/tunja_resample_clip_chip_2_7_png.rf.50b75055ab49f07ed73163f7ffc0dc50.jpg", {"stall", "garbage_pile", "garbage_bin"}),
]


@pytest.fixture(scope="module")
def city_dataset(tmp_path_factory, assets) -> Path:
    return build_city_dataset(tmp_path_factory.mktemp("city") / "dataset", mirror=assets)


@pytest.fixture(scope="module")
def city_detector(assets):
    from citypatrol.models.detector import Detector

    (cfg,) = [d for d in ModelsConfig().detectors if d.name == "city"]  # as shipped
    return Detector(cfg)


def _image(assets: Path, rel: str) -> np.ndarray:
    img = cv2.imread(str(assets / rel))
    assert img is not None, rel
    return img


def _frame(path: Path, at_s: float) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            if frame.time is not None and frame.time >= at_s:
                return frame.to_ndarray(format="bgr24")
    raise AssertionError(f"{path} is shorter than {at_s} s")


# --- dataset -------------------------------------------------------------------------------------


def test_dataset_maps_labels_and_keeps_duplicates_out_of_validation(city_dataset: Path):
    split = json.loads((city_dataset.parent / "split.json").read_text())
    assert split["classes"] == CITY_CLASSES
    items = split["items"]
    # facade_spb ships 111 of its test images also in train: each file is used once, on one side
    assert len({i["sha1"] for i in items}) == len(items)
    assert sum(i["name"].startswith("facade_spb__") for i in items) == 521
    assert sum(i["name"].startswith("vendors_bogota__") for i in items) == 427
    # a near-duplicate group never straddles the split
    sides: dict[str, set[str]] = {}
    for i in items:
        sides.setdefault(i["group"], set()).add(i["split"])
    assert all(len(s) == 1 for s in sides.values())
    # Roboflow copies of one photo and same-scene re-shots share a group (seen: 002764/002765)
    groups = {i["name"].split("__")[1].split("_jpg")[0]: i["group"] for i in items if i["name"].startswith("garbage_cn")}
    assert groups["002764"] == groups["002765"]
    # every class is present on both sides; window/door/arch are gone
    for part in ("train", "val"):
        assert set(split["boxes"][part]) == set(CITY_CLASSES)
    assert 300 <= split["images"]["val"] <= 400 and split["images"]["train"] + split["images"]["val"] == 2352
    labels = list((city_dataset.parent / "labels" / "val").glob("*.txt"))
    ids = {int(line.split()[0]) for f in labels for line in f.read_text().splitlines()}
    assert ids == set(range(len(CITY_CLASSES)))


def test_dataset_is_reproducible(city_dataset: Path, tmp_path: Path, assets: Path):
    again = build_city_dataset(tmp_path / "again", mirror=assets)
    a = json.loads((city_dataset.parent / "split.json").read_text())["items"]
    b = json.loads((again.parent / "split.json").read_text())["items"]
    assert [(i["name"], i["split"]) for i in a] == [(i["name"], i["split"]) for i in b]


def test_examples_are_held_out(city_dataset: Path):
    val = {p.name for p in (city_dataset.parent / "images" / "val").iterdir()}
    for rel, _ in HELD_OUT_POSITIVES + HELD_OUT_NEGATIVES:
        (src,) = [name for folder, name in SOURCE_PREFIX.items() if rel.startswith(folder)]
        assert f"{src}__{Path(rel).name}" in val, rel


# --- shipped model -------------------------------------------------------------------------------


def test_release_weights_are_registered_and_small():
    entry = load_registry().get(MODEL)
    assert entry.in_repo and entry.label_map == "city"
    assert set(entry.classes) == set(CITY_CLASSES) - {"street_vendor"} | {"stall"}  # canonical names
    path = resolve_asset(entry)  # checks the sha256
    assert path == REPO / "models" / "weights" / "citypatrol-city-v2.pt"
    assert path.stat().st_size <= 15 * 2**20
    assert sha256_file(path) == entry.sha256


def test_default_config_runs_city_model_beside_coco():
    detectors = {d.name: d for d in ModelsConfig().detectors}
    assert detectors["city"].weights == MODEL and "coco" in detectors
    assert detectors["city"].imgsz == load_registry().get(MODEL).imgsz  # larger sizes add false bins on footage


def test_city_model_emits_canonical_classes(city_detector):
    # street_vendor is what the vending rule calls a stall (models/labelmaps.py)
    assert city_detector.classes == frozenset(CITY_CLASSES) - {"street_vendor"} | {"stall"}


@pytest.mark.parametrize(("rel", "expected"), HELD_OUT_POSITIVES, ids=[Path(r).stem[:12] + "-" + c for r, c in HELD_OUT_POSITIVES])
def test_detects_class_on_held_out_image(city_detector, assets, rel, expected):
    (det,) = city_detector.detect([_image(assets, rel)])
    assert expected in set(det.class_name), f"{rel}: got {list(zip(det.class_name, det.confidence.round(2)))}"


@pytest.mark.parametrize(("rel", "absent"), HELD_OUT_NEGATIVES, ids=[Path(r).stem[:12] for r, _ in HELD_OUT_NEGATIVES])
def test_no_false_class_on_held_out_image(city_detector, assets, rel, absent):
    (det,) = city_detector.detect([_image(assets, rel)])
    assert not (absent & set(det.class_name)), f"{rel}: got {list(zip(det.class_name, det.confidence.round(2)))}"


@pytest.mark.slow
def test_intersection_footage_has_no_billboard_or_garbage(city_detector, sample_video):
    frames = [_frame(sample_video("intersection"), t) for t in (1.0, 10.0, 20.0)]
    for det in city_detector.detect(frames):
        found = set(det.class_name)
        assert not (found & {"billboard", "garbage_overflow", "garbage_pile"}), found


# --- training ------------------------------------------------------------------------------------


def test_cpu_training_uses_every_core():
    """ultralytics leaves one core idle on the CPU (cpu_count - 1 threads): training takes them all."""
    import torch
    import ultralytics.utils.torch_utils as torch_utils

    from citypatrol.models.training.train import use_cpu_threads

    threads, constant = torch.get_num_threads(), torch_utils.NUM_THREADS
    try:
        assert use_cpu_threads(None) == os.cpu_count()
        torch_utils.select_device("cpu", verbose=False)
        assert torch.get_num_threads() == os.cpu_count()
        use_cpu_threads(1)
        torch_utils.select_device("cpu", verbose=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
        torch_utils.NUM_THREADS = constant


@pytest.mark.slow
def test_train_command_smoke(tmp_path: Path, assets: Path):
    """`citypatrol train` on 8 real images for one epoch at 160 px on the CPU, offline."""
    out = tmp_path / "run"
    env = {**os.environ, "CITYPATROL_ASSET_MIRROR": str(assets), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "citypatrol.pipeline.cli.main", "train", "--data", "city", "--max-train", "8",
         "--max-val", "4", "--epochs", "1", "--imgsz", "160", "--batch", "4", "--cache", "none",
         "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert list(summary["names"].values()) == CITY_CLASSES
    assert summary["settings"]["epochs"] == 1 and summary["settings"]["imgsz"] == 160
    assert (out / "best.pt").is_file()
    assert f"training with {os.cpu_count()} CPU threads" in log
    images = list((out / "dataset" / "images" / "train").iterdir())
    assert 8 <= len(images) <= 12
    # offline: nothing fetched (AMP check, fonts, hub), and the label caches stay in the run folder
    assert "download" not in log.lower(), [line for line in log.splitlines() if "ownload" in line]
    assert list((out / "dataset" / "labels").glob("*.cache"))
    tracked = subprocess.run(["git", "ls-files", "*.cache"], cwd=REPO, capture_output=True, text=True).stdout
    assert tracked == ""
