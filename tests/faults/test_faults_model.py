"""A corrupt model file at start-up: `citypatrol analyze` and `citypatrol run` stop before touching
any footage or camera, with exit status 2 and one message naming the file; no traceback.

(Loading each backend's corrupt file raises `DetectorError` naming it: tests/models/test_models_detector.py;
a mirror copy whose sha256 does not match is refused: tests/models/test_models_assets.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "citypatrol.pipeline.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _clean_failure(done: subprocess.CompletedProcess, path: Path) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "cannot load the detector" in out and path.name in out.replace("\n", ""), out
    assert "Traceback" not in out and "╭" not in out, out  # no Python or rich traceback


def test_truncated_weights_stop_analyze_with_a_clear_error(tmp_path, assets, sample_video):
    weights = tmp_path / "city_truncated.pt"
    real = (assets / "models" / "yolo11n_coco_recovered.pt").read_bytes()
    weights.write_bytes(real[: len(real) // 2])
    (tmp_path / "c.yaml").write_text(f"models:\n  detectors:\n    - name: city\n      weights: {weights}\n")
    done = _cli("analyze", str(sample_video("parking_lot")), "--config", "c.yaml", "--out", "out", "--no-progress", cwd=tmp_path)
    _clean_failure(done, weights)
    assert not (tmp_path / "out" / "cases.json").exists()  # nothing analysed with a broken model


def test_garbage_onnx_stops_run_before_any_camera_is_opened(tmp_path):
    weights = tmp_path / "city.onnx"
    weights.write_bytes(os.urandom(64 * 1024))
    (tmp_path / "c.yaml").write_text(
        "cameras:\n  - id: gate\n    source: rtsp://admin:pw@127.0.0.1:9/live\n"
        f"models:\n  detectors:\n    - name: city\n      weights: {weights}\n"
        "live:\n  metrics_port: 0\n")
    done = _cli("run", "--config", "c.yaml", cwd=tmp_path)
    _clean_failure(done, weights)
    assert not (tmp_path / "citypatrol-status.json").exists()
