"""Smoke test of the footage-segment benchmark: `--quick` measures both ways and finds the same frames.

No timing asserts: only that the figures are there and that seeking decodes less for a later segment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_segments.py"


def test_quick_run_measures_both_ways(tmp_path: Path, assets: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\nanother benchmark's notes stay.\n")
    raw = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--write", "--results", str(results), "--json", str(raw)],
                          cwd=REPO, env=dict(os.environ, CITYPATROL_ASSET_MIRROR=str(assets)), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(raw.read_text())
    rows = run["rows"]
    assert [r["start_s"] for r in rows] == [0.0, 60.0] and all(r["same_frames"] and r["frames_kept"] > 30 for r in rows)
    first, later = rows
    assert first["seek"]["decoded"] == first["from_start"]["decoded"]  # nothing to skip at the start
    assert later["seek"]["decoded"] < 0.6 * later["from_start"]["decoded"], later
    text = results.read_text()
    assert "another benchmark's notes stay." in text and "| 60 s | " in text and "<!-- bench_segments:end -->" in text
