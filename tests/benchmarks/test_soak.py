"""Smoke test of the soak (`make soak`): one loopback RTSP camera under `citypatrol run` for under a
minute (42 s), its server restarted once, 21 s in. No timing or memory asserts (the machine is shared): only that
the run recovers by itself, stops cleanly and every figure is reported in its own section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "soak.py"


@pytest.mark.slow
def test_a_short_soak_with_a_server_restart(tmp_path: Path, assets: Path) -> None:
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n<!-- bench_live:start -->\nlive figures stay\n<!-- bench_live:end -->\n")
    env = dict(os.environ, CITYPATROL_ASSET_MIRROR=str(assets))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--minutes", "0.7", "--cameras", "1", "--sample-s", "2", "--warmup-s", "6",
         "--restart-every-min", "0.3", "--clips", "intersection", "--height", "240", "--cache", str(tmp_path / "cache"),
         "--write", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    if "cannot serve RTSP on loopback" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # the runner stopped with 0 on SIGTERM

    text = results.read_text()
    assert "live figures stay" in text  # another benchmark's section is untouched
    section = text.split("<!-- soak:start -->", 1)[1].split("<!-- soak:end -->", 1)[0]
    assert re.search(r"\*\*Memory (flat|NOT flat)\*\*: RSS \d+ MiB after warm-up", section)
    assert re.search(r"\| RTSP server restarts \| 1 ", section), section
    reconnects = int(re.search(r"\| reconnects \| (\d+) \|", section).group(1))
    assert reconnects >= 1  # the camera went offline with its server and came back by itself
    frames = int(re.search(r"\| frames analysed \| (\d+) ", section).group(1))
    assert frames >= 5
    assert re.search(r"\| lag behind live, s \| p50 [\d.]+ ", section)
    assert "| runner exit after SIGTERM | 0 |" in section and "RSS over time" in section
