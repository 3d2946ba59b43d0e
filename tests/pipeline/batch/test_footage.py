"""`citypatrol analyze FOLDER`: a time-lapse folder is one camera with the times in its names;
unrelated photos stay one camera each; a folder with mixed times is refused, naming the files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from citypatrol.pipeline.batch.footage import plan_cameras
from citypatrol.pipeline.config.loading import ConfigError, load_config
from citypatrol.pipeline.config.models import Config

SUNDAY = "sequences/pklot_ufpr05_polo/day_2013-02-24_sunday"


def _first(assets: Path, tmp_path: Path, n: int, name: str = "ufpr05") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for p in sorted((assets / SUNDAY).glob("*.jpg"))[:n]:
        (folder / p.name).symlink_to(p)
    return folder


def test_a_timelapse_folder_is_one_camera_and_photos_stay_apart(assets, tmp_path):
    stills = _first(assets, tmp_path, 4)
    photos = assets / "images/amsterdam_street_garbage"  # input5_frame0 …: numbered, no times
    plan = plan_cameras([stills, photos], Config())
    assert [c.id for c in plan.cameras[:1]] == ["ufpr05"] and plan.cameras[0].stills is not None
    assert len(plan.cameras) == 1 + 13, "each unrelated photo is its own camera"
    assert "one time-lapse camera of 4 stills" in plan.notes[0] and "file names" in plan.notes[0]
    assert "separate cameras" in plan.notes[1] and "no time" in plan.notes[1]
    assert plan.errors == []


def test_timed_photos_of_different_sizes_are_not_one_camera(assets, tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(next((assets / SUNDAY).glob("2013-02-24_06_15_00*.jpg")), folder / "IMG_20240101_120000.jpg")
    shutil.copy(assets / "images/amsterdam_street_garbage/input5_frame0.jpg", folder / "IMG_20240101_130000.jpg")
    plan = plan_cameras([folder], Config())
    assert len(plan.cameras) == 2 and "differ in size" in plan.notes[0]


def test_a_folder_with_mixed_times_is_refused_naming_the_files(assets, tmp_path):
    folder = _first(assets, tmp_path, 3)
    shutil.copy(assets / "images/amsterdam_street_garbage/input5_frame0.jpg", folder / "copy of gate.jpg")
    plan = plan_cameras([folder], Config())
    assert plan.cameras == [] and "copy of gate.jpg" in plan.errors[0]


def test_config_source_stills_form(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cameras": [{"id": "gate", "source": {"stills": {
        "folder": "/data/gate", "time_from": "name", "pattern": "IMG_%Y%m%d_%H%M%S"}}}]}))
    cam = load_config(path).cameras[0]
    assert cam.source == "/data/gate" and cam.stills_args() == {"time_from": "name", "pattern": "IMG_%Y%m%d_%H%M%S"}
    path.write_text(yaml.safe_dump({"cameras": [{"id": "gate", "source": {"stills": {"folder": "/d", "time_from": "clock"}}}]}))
    with pytest.raises(ConfigError, match="time_from"):
        load_config(path)


def test_analyze_sunday_stills_reads_one_camera_with_times_from_names(assets, tmp_path):
    folder = _first(assets, tmp_path, 3, name="day_2013-02-24_sunday")
    out = tmp_path / "out"
    exe = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "analyze", str(folder), "--out", str(out), "--no-progress"]
    run = subprocess.run(exe, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    text = run.stdout + run.stderr
    assert "one time-lapse camera of 3 stills" in text and "times from file names" in text
    rows = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert {r["camera"] for r in rows} == {"day_2013-02-24_sunday"}
    assert len(rows) == 3
    assert json.loads((out / "cases.json").read_text()) == [], "an empty lot gives no case"
    assert rows[-1]["pts"] == pytest.approx(600, abs=2)
    assert datetime.fromisoformat(rows[0]["wall"]) == datetime(2013, 2, 24, 6, 15, tzinfo=UTC)
