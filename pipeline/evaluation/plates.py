"""Exact-match accuracy of plate reading on real plate photos whose plate is known.

A plate set is a folder of pictures and a manifest CSV (`file, plate, kind, …, sha256`; the bundled
one is `sample_videos/plates.csv`, which names the public repository, commit and licence of every
picture). kind `vehicle`: a close photo of one vehicle, read the way a parking case's vehicle box is
(`read_plate`, the picture as the box: CCPD-style photos show a car too close for the detector to
box it whole, and finding vehicles is measured by `citypatrol evaluate`); kind `plate`: a picture
cut tight around the plate, recognised as one line (`read_plate_crop`). A read plate that differs from the truth is a wrong
read: the figure a dispatcher cares about most, since an unread plate is only less help.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from citypatrol.models.plates import is_plate, read_plate, read_plate_crop
from citypatrol.models.text import TextReader
from citypatrol.pipeline.types import PlateRead

KINDS = ("vehicle", "plate")
COLUMNS = ("file", "plate", "kind")


class PlateSetError(ValueError):
    """The plate set cannot be used as given (the message names the file, row and column)."""


@dataclass(frozen=True, slots=True)
class PlateSample:
    file: str
    plate: str
    kind: str
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class PlateResult:
    sample: PlateSample
    read: PlateRead
    seconds: float

    @property
    def exact(self) -> bool:
        return self.read.text == self.sample.plate

    @property
    def wrong(self) -> bool:
        return self.read.read and not self.exact


@dataclass(slots=True)
class PlateScore:
    kind: str
    n: int = 0
    exact: int = 0
    unread: int = 0
    wrong: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.exact / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "pictures": self.n, "exact": self.exact, "unread": self.unread, "wrong": self.wrong,
                "accuracy": round(self.accuracy, 4),
                "median_s": round(float(np.median(self.seconds)), 3) if self.seconds else None}


def load_plate_set(manifest: Path, images: Path) -> list[PlateSample]:
    """The manifest's rows whose pictures are in `images`, every row checked first (a missing
    column, an unknown kind, a truth that is not a plate, a missing or altered picture: an error
    naming the row)."""
    try:
        with manifest.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise PlateSetError(f"{manifest}: cannot read the plate manifest: {exc.strerror or exc}") from None
    if not rows:
        raise PlateSetError(f"{manifest}: no rows")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise PlateSetError(f"{manifest}: missing column(s) {', '.join(missing)}")
    samples, problems = [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{manifest.name} line {n} ({row['file']})"
        if row["kind"] not in KINDS:
            problems.append(f"{where}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
        elif not is_plate(row["plate"]):
            problems.append(f"{where}: plate {row['plate']!r} is not a valid plate")
        elif not (images / row["file"]).is_file():
            problems.append(f"{where}: picture not found in {images}")
        elif row.get("sha256") and _sha256(images / row["file"]) != row["sha256"]:
            problems.append(f"{where}: picture differs from the one in the manifest (sha256)")
        else:
            samples.append(PlateSample(row["file"], row["plate"], row["kind"], row.get("sha256", "")))
    if problems:
        raise PlateSetError("; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
    return samples


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sample(reader: TextReader, sample: PlateSample, images: Path) -> PlateResult:
    image = cv2.imread(str(images / sample.file), cv2.IMREAD_COLOR)
    t0 = time.perf_counter()
    if image is None:
        return PlateResult(sample, PlateRead.unread("picture cannot be decoded"), 0.0)
    plate = read_plate_crop(reader, image) if sample.kind == "plate" else read_plate(reader, image, (0.0, 0.0, 1.0, 1.0))
    return PlateResult(sample, plate, time.perf_counter() - t0)


def score(results: Sequence[PlateResult]) -> list[PlateScore]:
    by_kind = {k: PlateScore(k) for k in KINDS}
    for r in results:
        s = by_kind[r.sample.kind]
        s.n += 1
        s.exact += r.exact
        s.unread += not r.read.read
        s.wrong += r.wrong
        s.seconds.append(r.seconds)
    return [s for s in by_kind.values() if s.n]
