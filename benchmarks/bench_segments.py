#!/usr/bin/env python3
"""Footage segments: what reading one segment of a long recording costs, seeking vs reading from the start.

`citypatrol batch-queue` cuts a recording into segments that workers analyse in parallel; each
segment is read from its warm-up (see `pipeline/distributed/segments.py`). This measures the
reading alone (demux + decode + cadence sampling + BGR conversion, no detector) for segments at
several offsets of one long file, two ways:

  seek        `open_source(…, start_s=warm-up)`: seek to the keyframe before the warm-up (what
              workers do);
  from start  `open_source(…)` and drop the frames before the warm-up (what they did before).

and checks that both give the same frames. The long file is the mirror's intersection footage
looped (`--loops`, default 10 → about 5 min) and re-encoded with a 2 s GOP at 25 fps, cached in
.citypatrol-cache/bench/. Figures: frames decoded, frames kept, CPU seconds of the process.

    python benchmarks/bench_segments.py            # print the table
    python benchmarks/bench_segments.py --write    # … and replace this benchmark's section of RESULTS.md
    python benchmarks/bench_segments.py --quick    # a 90 s file, two segments (smoke test)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CACHE = REPO / ".citypatrol-cache" / "bench"
MARK_START = "<!-- bench_segments:start -->"
MARK_END = "<!-- bench_segments:end -->"
SOURCE = "videos/intersection_cctv_640x480_30s.mp4"
CADENCE_S = 1.0
SEGMENT_S = 60.0
WARMUP_S = 12.0  # the default overlap for a 10 s dwell at cadence 1 s


def _bench_ingest():
    spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "benchmarks" / "bench_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def long_file(loops: int) -> Path:
    mirror = Path(os.environ.get("CITYPATROL_ASSET_MIRROR", REPO.parent / "shared" / "assets"))
    src = mirror / SOURCE
    if not src.is_file():
        raise SystemExit(f"{src} not found: set CITYPATROL_ASSET_MIRROR to the asset mirror")
    out = CACHE / f"intersection_x{loops}_gop2s.mp4"
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(src), "-an", "-vf", "fps=25",
                        "-c:v", "libx264", "-preset", "ultrafast", "-x264-params", "keyint=50:min-keyint=50:scenecut=0",
                        str(out)], check=True)  # fmt: skip
    return out


def read_segment(path: Path, warmup: float, end: float, seek: bool) -> dict:
    from citypatrol.streams import open_source

    cpu0, wall0 = time.process_time(), time.perf_counter()
    kept = []
    with open_source("bench", str(path), CADENCE_S, start_s=warmup if seek else 0.0) as src:
        for frame in src.frames():
            if frame.pts >= end - 1e-6:
                break
            if frame.pts >= warmup - 1e-6:
                kept.append((round(frame.pts, 3), int(frame.image[::16, ::16].sum())))
        decoded = src.stats.frames_decoded
    return {"decoded": decoded, "kept": kept, "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0}


def measure(path: Path, duration: float, offsets: list[float]) -> list[dict]:
    rows = []
    for start in offsets:
        warmup, end = max(0.0, start - WARMUP_S), min(duration, start + SEGMENT_S)
        seek, full = read_segment(path, warmup, end, True), read_segment(path, warmup, end, False)
        rows.append({"start_s": start, "warmup_s": warmup, "end_s": end, "same_frames": seek["kept"] == full["kept"],
                     "frames_kept": len(seek["kept"]),
                     "seek": {k: seek[k] for k in ("decoded", "cpu_s", "wall_s")},
                     "from_start": {k: full[k] for k in ("decoded", "cpu_s", "wall_s")}})  # fmt: skip
    return rows


def render(run: dict) -> str:
    lines = [MARK_START, "## Footage segments: seeking vs reading from the start (`benchmarks/bench_segments.py`)", "",
             f"Measured {run['when']} on {run['machine']} (no GPU; reading only: demux, decode, sampling at "
             f"{CADENCE_S:g} s, BGR conversion). File: the intersection footage looped to {run['duration_s']:.0f} s, "
             f"640×480, 25 fps, 2 s GOP (decode-and-drop: keyframes are further apart than the cadence). "
             f"Segments of {SEGMENT_S:g} s, each read from {WARMUP_S:g} s before its start.", "",
             "| segment start | frames kept | same frames both ways | decoded, seek | decoded, from start | CPU s, seek | CPU s, from start |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in run["rows"]:
        lines.append(f"| {r['start_s']:.0f} s | {r['frames_kept']} | {'yes' if r['same_frames'] else '**no**'} | {r['seek']['decoded']:,} "
                     f"| {r['from_start']['decoded']:,} | {r['seek']['cpu_s']:.2f} | {r['from_start']['cpu_s']:.2f} |")  # fmt: skip
    seek = sum(r["seek"]["cpu_s"] for r in run["rows"])
    full = sum(r["from_start"]["cpu_s"] for r in run["rows"])
    lines += ["", f"All segments together: {seek:.1f} CPU-s seeking, {full:.1f} CPU-s reading from the start "
                  f"({full / max(seek, 1e-9):.1f}×). Reading from the start grows with the segment's offset, so the "
                  "whole file costs the square of its length; seeking keeps each segment at its own length.", "",
              "Conditions:", *run["conditions"], MARK_END, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 90 s file, two segments (smoke test)")
    ap.add_argument("--loops", type=int, default=10, help="how many times the 30 s footage is looped")
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of --results")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--json", type=Path, help="also write the raw measurements here")
    args = ap.parse_args(argv)
    from citypatrol.streams.probe import duration_s

    loops = 3 if args.quick else args.loops
    path = long_file(loops)
    duration = duration_s(str(path)) or 30.0 * loops
    offsets = [k * SEGMENT_S for k in range(int(duration // SEGMENT_S) + (duration % SEGMENT_S > 1))]
    load_before = os.getloadavg()
    rows = measure(path, duration, sorted(set(offsets)))
    bench = _bench_ingest()
    run = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "duration_s": duration, "rows": rows,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "conditions": [f"- Load average before: {tuple(round(v, 2) for v in load_before)}; after: "
                          f"{tuple(round(v, 2) for v in os.getloadavg())}"]}  # fmt: skip
    info = bench.machine_info()
    run["machine"] = f"{info['cpu_model']}, {info['usable_cpus']} usable cores, {info['ram_gib']} GiB, Python {info['python']}, PyAV {info['versions']['av']}"
    section = render(run)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(run, indent=1))
    if args.write:
        bench.write_results(args.results, section, MARK_START, MARK_END)
    return 0 if all(r["same_frames"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
