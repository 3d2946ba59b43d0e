"""Smoke test of the ingest benchmark: `--quick` with one backend on the shortest video gives the numbers.

No timing asserts: this machine is shared and its speed varies; only that every figure is there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_ingest.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_ingest", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path, assets: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\nanother benchmark's notes stay.\n")
    raw = tmp_path / "run.json"
    env = dict(os.environ, CITYPATROL_ASSET_MIRROR=str(assets))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", "openvino-int8", "--json", str(raw),
         "--write", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout

    run = json.loads(raw.read_text())
    assert [r["variant"] for r in run["rows"]] == ["naive", "sampled:openvino-int8", "pipeline", "stride:2"]
    assert len(run["durations"]) == 1  # --quick: the shortest video only
    for row in run["rows"]:
        assert row["per_wall"] > 0 and row["per_cpu"] > 0 and row["peak_rss_mib"] > 0, row
        assert row["frames_analysed"] > 0
    naive, sampled = run["rows"][0], run["rows"][1]
    assert naive["frames_analysed"] == naive["frames_decoded"]  # (a) infers every frame
    assert sampled["frames_analysed"] < naive["frames_analysed"]  # (b) samples at the cadence
    stride = run["rows"][3]
    assert stride["frames_analysed"] < stride["frames_decoded"] == naive["frames_decoded"]  # (d) reads all, infers 1 in N

    assert re.search(r"ratio sampled:openvino-int8/\(a\): [\d.]+× per wall-second, [\d.]+× per CPU-second", out), out
    assert re.search(r"\(c\) pipeline: [\d.]+× \(a\) per wall-second .*× \(d\) vid_stride per wall-second", out), out
    assert "camera-s per wall-s" in out and "peak RSS" in out
    assert "load average before" in out

    text = results.read_text()
    assert "another benchmark's notes stay." in text
    assert text.count("<!-- bench_ingest:start -->") == 1 and text.count("<!-- bench_ingest:end -->") == 1
    assert "Quick smoke run" in text and "Load average before the run" in text


def test_write_results_replaces_only_its_own_section(tmp_path: Path) -> None:
    bench = _load_bench()
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n\n<!-- other:start -->\nother\n<!-- other:end -->\n")
    first = f"{bench.MARK_START}\nfirst\n{bench.MARK_END}\n"
    bench.write_results(path, first)
    bench.write_results(path, f"{bench.MARK_START}\nsecond\n{bench.MARK_END}\n")
    text = path.read_text()
    assert "other\n<!-- other:end -->" in text
    assert "second" in text and "first" not in text
    assert text.count(bench.MARK_START) == 1
