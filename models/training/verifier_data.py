"""Labelled crops for the second-stage verifier: from an export, and from the mirror's garbage set.

* `export_crops(dir, split)`: `crops/<split>/<label>/*.jpg` of a `citypatrol dataset export`
  (confirmed cases under their category, rejected ones under their "not a problem" class).
* `garbage_cn_crops(split)`: every `garbage_bin` box of garbage_bin_overflow_cn as `bin_not_full`
  (垃圾桶未满溢) and every `overflow` box as `garbage_overflow`, cut as the evidence crop is
  (`crop_box`, 25 % margin). The split is the city model's (`dataset.py`: near-duplicate groups by
  source photo and dHash, seeded hash), so its held-out crops come from photos no training crop
  shares, and from images the city detector never trained on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from citypatrol.annotate.evidence import crop_box
from citypatrol.models.training import dataset as ds

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
GARBAGE_LABELS = {0: "bin_not_full", 1: "garbage_overflow"}  # CITY_CLASSES ids: garbage_bin, garbage_overflow


def export_crops(export_dir: Path, split: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(crops, labels, file names) of one split of an export."""
    crops, labels, names = [], [], []
    root = Path(export_dir) / "crops" / split
    if not root.is_dir():
        return crops, labels, names
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES and (img := cv2.imread(str(f))) is not None:
                crops.append(img)
                labels.append(label_dir.name)
                names.append(f"{split}/{label_dir.name}/{f.name}")
    return crops, labels, names


def garbage_cn_crops(split: str, *, limit: int | None = None, seed: int = 0,
                     val_fraction: float = 0.15) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Bin / overflow crops of garbage_bin_overflow_cn in the city split (`split` = 'train' or 'val').

    `limit` keeps a seeded random subset of the images (balanced enough: both labels are common).
    """
    src = tuple(s for s in ds.SOURCES if s.name == "garbage_cn")
    items = ds.drop_exact_duplicates(ds.collect(ds.asset_mirror(), src))
    ds.group_near_duplicates(items)
    chosen = [it for it in items if ds._goes_to_val(it.group, val_fraction, seed) == (split == "val")]
    if limit is not None and len(chosen) > limit:
        order = np.random.default_rng(seed).permutation(len(chosen))[:limit]
        chosen = [chosen[i] for i in sorted(order)]
    crops, labels, names = [], [], []
    for it in chosen:
        boxes = [b for b in it.boxes if b[0] in GARBAGE_LABELS]
        if not boxes:
            continue
        image = cv2.imread(str(it.image))
        for c, x, y, w, h in boxes:
            crops.append(crop_box(image, (x - w / 2, y - h / 2, x + w / 2, y + h / 2)))
            labels.append(GARBAGE_LABELS[c])
            names.append(f"{it.out_name}#{len(names)}")
    return crops, labels, names
