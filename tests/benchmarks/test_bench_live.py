"""Smoke test of the live benchmark: one loopback RTSP camera under `citypatrol run` for a few seconds.

No timing asserts (the machine is shared): only that every figure is measured and reported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_live.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_live", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_live"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_camera_for_a_few_seconds(tmp_path: Path, assets: Path) -> None:
    bench = _load_bench()
    why = bench.server_available()
    if why:
        pytest.skip(f"no loopback RTSP server: {why} (make system-deps)")
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n<!-- bench_ingest:start -->\ningest figures stay\n<!-- bench_ingest:end -->\n")
    raw = tmp_path / "run.json"
    env = dict(os.environ, CITYPATROL_ASSET_MIRROR=str(assets))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "1", "--measure-s", "5", "--settle-s", "1", "--clips", "intersection",
         "--height", "240", "--phases", "1", "--min-clip-s", "6", "--cache", str(tmp_path / "cache"),
         "--json", str(raw), "--write", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run = json.loads(raw.read_text())
    assert [s["n"] for s in run["steps"]] == [1]
    step = run["steps"][0]
    assert step["startup_s"] is not None, step["reason"]
    cam = step["cameras"]["cam000"]
    assert cam["frames"] >= 1 and cam["lag_p50"] is not None and cam["states"] == ["running"], cam
    assert step["runner_cpu_s"] > 0 and step["rss_mib"] > 0 and step["window_s"] >= 4
    assert step["fps_min"] is not None and step["lag_p95_worst"] is not None

    out = proc.stdout
    assert "| N | sustained |" in out and "GPU: not measured" in out and "load average before" in out

    text = results.read_text()
    assert "ingest figures stay" in text  # another benchmark's section is untouched
    assert text.count(bench.MARK_START) == 1 and text.count(bench.MARK_END) == 1
    assert "Smoke run" in text and "per camera" in text
    assert "GPU: not measured" in text and "Load average before the run" in text


def test_write_results_replaces_only_its_own_section(tmp_path: Path) -> None:
    bench = _load_bench()
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n\n<!-- other:start -->\nother\n<!-- other:end -->\n")
    bench.write_results(path, f"{bench.MARK_START}\nfirst\n{bench.MARK_END}\n")
    bench.write_results(path, f"{bench.MARK_START}\nsecond\n{bench.MARK_END}\n")
    text = path.read_text()
    assert "other\n<!-- other:end -->" in text and "second" in text and "first" not in text
    assert text.count(bench.MARK_START) == 1


def test_largest_sustained_needs_every_smaller_step_to_pass() -> None:
    bench = _load_bench()
    steps = [bench.Step(2, True), bench.Step(4, True), bench.Step(8, False), bench.Step(6, True), bench.Step(7, False)]
    best, fail = bench.largest_sustained(steps)
    assert best.n == 6 and fail.n == 7
    # A lucky pass above a failure does not count.
    best, fail = bench.largest_sustained([bench.Step(2, True), bench.Step(4, False), bench.Step(3, True), bench.Step(5, True)])
    assert best.n == 3 and fail.n == 4
