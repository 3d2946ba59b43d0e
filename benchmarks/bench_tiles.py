"""Tiled inference: CPU cost per analysed frame with and without tiles (`detector.tiles`).

    python benchmarks/bench_tiles.py            # prints the table
    python benchmarks/bench_tiles.py --write    # … and replaces this benchmark's section of RESULTS.md

Frames: stills of the PKLot UFPR05 camera (1280×720) from the asset mirror, the lot as the zone
(the truth files' polygon). Each variant runs the default detectors (COCO model on the whole frame
and, where tiled, on each tile; the city model on the whole frame) through `detect_tiled`, one frame
at a time as a single camera would, after one warm-up frame. CPU-s is the process's CPU time (all
threads), so it counts what a machine pays per analysed frame whatever the thread pools do.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
MARK_START = "<!-- bench_tiles:start -->"
MARK_END = "<!-- bench_tiles:end -->"
STILLS = ["sequences/pklot_ufpr05_polo/labelled/sequence3/frames", "sequences/pklot_ufpr05_polo/labelled/sequence1/frames"]
LOT = [[0.9996, 0.4167], [0.9882, 0.5106], [0.9354, 0.5958], [0.5779, 0.9324], [0.4698, 0.8732], [0.3748, 0.6146],
       [0.2326, 0.2174], [0.2017, 0.1177], [0.209, 0.0614], [0.2716, 0.0383], [0.5072, 0.0022], [0.6429, 0.0051],
       [0.8403, 0.0354], [0.8842, 0.0686], [0.9354, 0.1091]]


def _bench_ingest():
    spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "benchmarks" / "bench_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(passes: int) -> dict:
    import cv2

    from citypatrol.models.detector import load_detectors
    from citypatrol.models.tiles import VEHICLES, detect_all_tiled
    from citypatrol.pipeline.config.models import Camera, Config, TileSpec, Zone
    from citypatrol.pipeline.detection.tiling import camera_grid

    mirror = Path(os.environ.get("CITYPATROL_ASSET_MIRROR", REPO.parent / "shared" / "assets"))
    images = [cv2.imread(str(p)) for d in STILLS for p in sorted((mirror / d).glob("*.png"))]
    config = Config()
    detector = load_detectors(config.models)
    imgsz = min(d.imgsz for d in detector.detectors if d.classes & VEHICLES)
    zone = Zone(id="lot", kind="no_parking", polygon=LOT)
    h, w = images[0].shape[:2]
    variants = {
        "off (whole frame only)": "off",
        "auto (min_vehicle_px 40)": "auto",
        "2×2, overlap 0.2": TileSpec(rows=2, cols=2, overlap=0.2),
        "3×3, overlap 0.2": TileSpec(rows=3, cols=3, overlap=0.2),
    }
    rows = []
    for label, tiles in variants.items():
        cam = Camera(id="lot", source="x", zones=[zone], detector={"tiles": tiles})
        grid = camera_grid(cam, w, h, imgsz)
        detect_all_tiled(detector, [images[0]], [grid])  # warm-up
        cpu, wall, found = [], [], 0
        for _ in range(passes):
            for image in images:
                c0, t0 = time.process_time(), time.perf_counter()
                dets = detect_all_tiled(detector, [image], [grid])[0]
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - t0)
                found += int(sum(c in VEHICLES for c in dets.class_name))
        rows.append({"variant": label, "grid": grid.describe() if grid else "–",
                     "inferences": 2 + (grid.rows * grid.cols if grid else 0),
                     "cpu_ms": 1000 * sorted(cpu)[len(cpu) // 2], "wall_ms": 1000 * sorted(wall)[len(wall) // 2],
                     "vehicles": found / passes / len(images)})
    return {"rows": rows, "frames": len(images), "passes": passes, "size": f"{w}×{h}"}


def render(run: dict) -> str:
    base = run["rows"][0]["cpu_ms"]
    lines = [MARK_START, "## Tiled inference: CPU per analysed frame (`benchmarks/bench_tiles.py`)", "",
             f"Measured {run['when']} on {run['machine']} (no GPU). {run['frames']} PKLot UFPR05 stills "
             f"({run['size']}, sequences 3 and 1), {run['passes']} pass(es), one frame per call as one camera; "
             "default models (COCO yolo11n OpenVINO INT8 @640 on the whole frame and on each tile, the city model @384 "
             "on the whole frame); tiles cover the lot zone's bounding box.", "",
             "| tiles | grid | inferences per frame | CPU ms per frame (median) | × off | wall ms (median) | vehicles found per frame |",
             "|---|---|---|---|---|---|---|"]
    for r in run["rows"]:
        lines.append(f"| {r['variant']} | {r['grid']} | {r['inferences']} | {r['cpu_ms']:.0f} | {r['cpu_ms'] / base:.1f}× "
                     f"| {r['wall_ms']:.0f} | {r['vehicles']:.1f} |")
    lines += ["", "Conditions:", *run["conditions"], MARK_END, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of --results")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    run = measure(args.passes)
    bench = _bench_ingest()
    info = bench.machine_info()
    run["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run["machine"] = f"{info['cpu_model']}, {info['usable_cpus']} usable cores, Python {info['python']}"
    run["conditions"] = [f"- Load average before: {tuple(round(v, 2) for v in load_before)}; after: "
                         f"{tuple(round(v, 2) for v in os.getloadavg())} (the machine is shared; compare the ratios)"]
    section = render(run)
    print(section)
    if args.write:
        bench.write_results(args.results, section, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
