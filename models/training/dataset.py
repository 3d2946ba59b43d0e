"""Build citypatrol's city-problem training set from the labelled datasets in the asset mirror.

One call (`build_city_dataset`, or `citypatrol train --data city`) turns the mirror's datasets into
one YOLO dataset in canonical class names, in a working folder outside git:

    <out>/images/{train,val}/<source>__<file>   symlinks into the mirror (nothing is copied)
    <out>/labels/{train,val}/<source>__<stem>.txt  labels re-mapped to canonical class ids
    <out>/data.yaml                               the dataset file ultralytics trains on
    <out>/split.json                              every image, its group and its split, class counts

Near-duplicates stay on one side of the split. Images are grouped (union-find) by
  * their source image: Roboflow exports name augmented copies `<stem>_jpg.rf.<hash>.jpg`, so the
    text before `.rf.` identifies the original photo;
  * a 64-bit difference hash (dHash) of the pixels: two images within `DUP_HAMMING` bits are the
    same scene (re-shot, re-cropped, re-exposed), whatever their names;
and whole groups go to validation by a seeded hash of the group key, so the split is reproducible
and does not depend on file order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from citypatrol.models.assets import cache_dir

log = logging.getLogger(__name__)

# citypatrol's canonical classes that this model predicts, in class-id order.
CITY_CLASSES: list[str] = ["garbage_bin", "garbage_overflow", "garbage_pile", "billboard", "street_vendor"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DUP_HAMMING = 10  # dHash bits, same source only; measured: re-shot/sheared copies of one scene at 7-10 (see DATA_CARD.md)


@dataclass(frozen=True)
class DatasetSource:
    """One labelled dataset in the mirror and how its labels map onto canonical classes."""

    name: str
    folder: str  # relative to the asset mirror
    image_dirs: tuple[tuple[str, str], ...]  # (images dir, labels dir) pairs relative to folder
    names: tuple[str, ...]  # the dataset's own class names, in id order
    label_map: dict[str, str | None] = field(default_factory=dict)  # own name -> canonical (None = drop)
    licence: str = ""
    origin: str = ""


SOURCES: tuple[DatasetSource, ...] = (
    DatasetSource(
        name="garbage_cn",
        folder="datasets/garbage_bin_overflow_cn",
        image_dirs=(("train/images", "train/labels"), ("valid/images", "valid/labels")),
        names=("garbage", "garbage_bin", "overflow"),
        label_map={"garbage": "garbage_pile", "garbage_bin": "garbage_bin", "overflow": "garbage_overflow"},
        licence="CC BY 4.0",
        origin="ATANU0023/garbage_detection_dataset @1e9fc550 (Roboflow '公开数据集111' v2)",
    ),
    DatasetSource(
        name="facade_spb",
        folder="datasets/facade_advertising_spb",
        image_dirs=(("images/train", "labels/train"), ("images/test", "labels/test")),
        names=("window", "cantilever", "arch", "signboard", "win_ad", "door"),
        label_map={
            "signboard": "billboard",
            "cantilever": "billboard",
            "win_ad": "billboard",
            "window": None,
            "door": None,
            "arch": None,
        },
        licence="CC0 1.0",
        origin="Urban-Research-Lab/building-facades-advertising-dataset @9782a3e7",
    ),
    DatasetSource(
        # Nadir aerial orthophoto chips: a box is a vendor's umbrella or canopy seen from above.
        name="vendors_bogota",
        folder="datasets/street_vendors_bogota_aerial",
        image_dirs=(("train/images", "train/labels"), ("valid/images", "valid/labels"), ("test/images", "test/labels")),
        names=("vendedor_ambulante",),
        label_map={"vendedor_ambulante": "street_vendor"},
        licence="CC BY 4.0",
        origin="Ingenieco/pesquisaMMQ @8bca6ae3 (Roboflow 'vendedores_ambulantes_pesquisa' v8)",
    ),
)


def asset_mirror() -> Path:
    env = os.environ.get("CITYPATROL_ASSET_MIRROR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "assets"


def default_cache_dir() -> Path:
    """The user cache (see `models.assets.cache_dir`): datasets and training runs go there."""
    return cache_dir()


@dataclass
class Item:
    source: str
    image: Path
    label: Path | None
    group: str
    dhash: int = 0
    sha1: str = ""
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)  # canonical id, xywhn

    @property
    def out_name(self) -> str:
        return f"{self.source}__{self.image.name}"


def source_stem(filename: str) -> str:
    """The original photo a Roboflow export came from: `000123_jpg.rf.<hash>.jpg` -> `000123`."""
    stem = filename.split(".rf.")[0] if ".rf." in filename else Path(filename).stem
    for ext in ("_jpg", "_jpeg", "_png"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    return stem


def dhash(path: Path, size: int = 8) -> int:
    """64-bit difference hash: sign of horizontal gradients of a (size+1)x size grey thumbnail."""
    with Image.open(path) as im:
        g = np.asarray(im.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def _read_labels(label: Path | None, src: DatasetSource) -> list[tuple[int, float, float, float, float]]:
    if label is None or not label.exists():
        return []
    out = []
    for line in label.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:  # polygons/keypoints do not occur in these sets; skip anything odd
            continue
        own = src.names[int(parts[0])]
        canon = src.label_map.get(own, own)
        if canon is None:
            continue
        if canon not in CITY_CLASSES:
            raise ValueError(f"{src.name}: label {own!r} maps to {canon!r}, not a city class")
        out.append((CITY_CLASSES.index(canon), *map(float, parts[1:])))
    return out


def collect(mirror: Path, sources: tuple[DatasetSource, ...] = SOURCES) -> list[Item]:
    items: list[Item] = []
    for src in sources:
        root = mirror / src.folder
        if not root.is_dir():
            raise FileNotFoundError(f"dataset {src.name} not found at {root}; set CITYPATROL_ASSET_MIRROR")
        for img_dir, lbl_dir in src.image_dirs:
            for img in sorted((root / img_dir).iterdir()):
                if img.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                lbl = root / lbl_dir / (img.stem + ".txt")
                item = Item(src.name, img, lbl if lbl.exists() else None, f"{src.name}:{source_stem(img.name)}")
                item.boxes = _read_labels(item.label, src)
                items.append(item)
    return items


def drop_exact_duplicates(items: list[Item]) -> list[Item]:
    """Keep the first of byte-identical images (facade_spb ships 111 of its 114 test images also in train)."""
    seen: dict[str, Item] = {}
    out = []
    relabelled = 0
    for it in items:
        it.sha1 = hashlib.sha1(it.image.read_bytes()).hexdigest()
        first = seen.get(it.sha1)
        if first is not None:
            if first.boxes != it.boxes:
                relabelled += 1
            continue
        seen[it.sha1] = it
        out.append(it)
    if len(out) < len(items):
        log.info("dropped %d byte-identical duplicate images (%d of them labelled slightly differently; "
                 "the first copy's labels are kept)", len(items) - len(out), relabelled)
    return out


def group_near_duplicates(items: list[Item], max_hamming: int = DUP_HAMMING) -> dict[str, int]:
    """Union-find over name groups and dHash neighbours (same source); returns images per group."""
    for it in items:
        it.dhash = dhash(it.image)
    parent = {it.group: it.group for it in items}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    hashes = np.array([it.dhash for it in items], dtype=np.uint64)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1)  # (N, 64)
    merged = 0
    source = np.array([it.source for it in items])
    for i in range(len(items)):
        d = np.count_nonzero(bits[i + 1 :] != bits[i], axis=1)
        near = (d <= max_hamming) & (source[i + 1 :] == source[i])
        for j in np.nonzero(near)[0] + i + 1:
            a, b = find(items[i].group), find(items[int(j)].group)
            if a != b:
                parent[b] = a
                merged += 1
    roots: Counter[str] = Counter()
    for it in items:
        it.group = find(it.group)
        roots[it.group] += 1
    log.info("near-duplicate grouping: %d images, %d groups, %d dHash merges", len(items), len(roots), merged)
    return dict(roots)


def _goes_to_val(group: str, val_fraction: float, seed: int) -> bool:
    h = hashlib.sha1(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < val_fraction


def build_city_dataset(
    out: Path | None = None,
    *,
    mirror: Path | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
    max_hamming: int = DUP_HAMMING,
) -> Path:
    """Build (or rebuild) the merged dataset; returns the path of its data.yaml.

    `max_train` keeps a seeded random subset of the training groups (for a time budget). `max_val`
    does the same to validation and is meant for smoke tests only: held-out numbers in the model card
    come from the full validation split.
    """
    mirror = mirror or asset_mirror()
    out = (out or default_cache_dir() / "datasets" / "city").resolve()
    items = drop_exact_duplicates(collect(mirror))
    group_sizes = group_near_duplicates(items, max_hamming)

    split = {it.out_name: ("val" if _goes_to_val(it.group, val_fraction, seed) else "train") for it in items}
    for part, cap in (("train", max_train), ("val", max_val)):
        if cap is None:
            continue
        groups = sorted({it.group for it in items if split[it.out_name] == part})
        np.random.default_rng(seed).shuffle(groups)
        keep, n = set(), 0
        for g in groups:
            if n >= cap:
                break
            keep.add(g)
            n += group_sizes[g]
        for it in items:
            if split[it.out_name] == part and it.group not in keep:
                split[it.out_name] = "unused"

    for sub in ("images/train", "images/val", "labels/train", "labels/val"):
        d = out / sub
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():  # rebuild from scratch: stale files would leak into the split
            f.unlink()
    for cache in out.glob("labels/*.cache"):
        cache.unlink()

    records, counts = [], {"train": Counter(), "val": Counter()}
    images_with = {"train": Counter(), "val": Counter()}
    n_images = Counter()
    for it in items:
        s = split[it.out_name]
        records.append({"image": str(it.image), "name": it.out_name, "group": it.group, "split": s,
                        "dhash": f"{it.dhash:016x}", "sha1": it.sha1, "boxes": len(it.boxes)})
        if s == "unused":
            continue
        n_images[s] += 1
        (out / "images" / s / it.out_name).symlink_to(it.image)
        lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in it.boxes]
        (out / "labels" / s / (Path(it.out_name).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
        for c in {b[0] for b in it.boxes}:
            images_with[s][CITY_CLASSES[c]] += 1
        for b in it.boxes:
            counts[s][CITY_CLASSES[b[0]]] += 1

    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out), "train": "images/train", "val": "images/val",
        "nc": len(CITY_CLASSES), "names": dict(enumerate(CITY_CLASSES)),
    }, sort_keys=False, allow_unicode=True))
    summary = {
        "classes": CITY_CLASSES, "seed": seed, "val_fraction": val_fraction, "max_train": max_train, "max_val": max_val,
        "max_hamming": max_hamming, "images": dict(n_images),
        "boxes": {s: dict(c) for s, c in counts.items()},
        "images_with_class": {s: dict(c) for s, c in images_with.items()},
        "sources": [{"name": s.name, "folder": s.folder, "licence": s.licence, "origin": s.origin,
                     "label_map": s.label_map} for s in SOURCES],
        "items": records,
    }
    (out / "split.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    log.info("city dataset at %s: %s images, boxes %s", out, dict(n_images), summary["boxes"])
    return data_yaml


if __name__ == "__main__":  # python -m citypatrol.models.training.dataset [OUT]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(build_city_dataset(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
