"""Pictures to calibrate an INT8 export on, from the asset mirror, for the benchmarks.

A city calibrates on frames of its own cameras (`detectors[].calibration`); the benchmarks have
none, so they take street-level pictures from the mirror that no benchmark or evaluation sample
shows: Chinese street-bin photos, St Petersburg facades, and frames of the top-down car-park aisle
clip. Deterministic (seeded), so two runs calibrate on the same pictures.

    python benchmarks/calibration_frames.py OUT_DIR [--count 180]
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

import av
import cv2

from citypatrol.models.assets import mirror_dir


def write_frames(out: Path, count: int = 180) -> int:
    assets = mirror_dir()
    if assets is None:
        raise SystemExit("set CITYPATROL_ASSET_MIRROR to the asset mirror")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    bins = sorted((assets / "datasets/garbage_bin_overflow_cn/train/images").glob("*.jpg"))
    facades = sorted((assets / "datasets/facade_advertising_spb/images/train").glob("*.jpg"))
    stills = rng.sample(bins, min(len(bins), count // 2)) + rng.sample(facades, min(len(facades), count * 5 // 18))
    for i, path in enumerate(stills):
        shutil.copyfile(path, out / f"still_{i:04d}{path.suffix}")
    clip = count - len(stills)
    with av.open(str(assets / "videos/parking_lot_topdown_car_detection.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 20 == 0 and clip > 0:
                cv2.imwrite(str(out / f"aisle_{i:05d}.jpg"), frame.to_ndarray(format="bgr24"))
                clip -= 1
    return sum(1 for _ in out.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=180)
    args = ap.parse_args()
    print(f"{write_frames(args.out, args.count)} pictures in {args.out}")


if __name__ == "__main__":
    main()
