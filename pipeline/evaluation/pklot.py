"""Truth from per-space occupancy labels (PKLot XML): a space occupied for at least the dwell is a problem.

PKLot-style labels give, for each still, every parking space's polygon and whether a car is in it
(`<space id occupied="0|1"><contour><point x y/>…`). For a camera judged with the whole lot as a
no-parking zone, each run of stills in which a space stays occupied for at least the dwell becomes
one `illegal_parking` truth item: the space's box, from the first still it was seen occupied,
until the last (open-ended when still occupied in the last still). A car seen in a single still,
or for less than the dwell, is no item: no case should open for it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from citypatrol.pipeline.config.models import Category
from citypatrol.pipeline.evaluation.scoring import TruthItem
from citypatrol.streams.media import is_image, list_media
from citypatrol.streams.still_times import parse_still_time


class PklotError(ValueError):
    """The folder or a label file cannot be read as PKLot occupancy; the message names the file."""


@dataclass(frozen=True)
class Space:
    id: str
    occupied: bool
    contour: tuple[tuple[float, float], ...]  # pixels


def read_spaces(path: Path) -> list[Space]:
    """The spaces of one PKLot XML file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise PklotError(f"{path}: not a readable PKLot XML file ({exc})") from None
    spaces = []
    for el in root.iter("space"):
        points = tuple((float(p.get("x", "nan")), float(p.get("y", "nan"))) for p in el.iter("point"))
        if len(points) < 3 or not all(np.isfinite(points).all(axis=1)):
            raise PklotError(f"{path}: space {el.get('id')!r} has no contour of 3 or more points")
        spaces.append(Space(str(el.get("id")), el.get("occupied") == "1", points))
    if not spaces:
        raise PklotError(f"{path}: no <space> elements")
    return spaces


def space_box(contour: Sequence[tuple[float, float]], width: int, height: int) -> tuple[float, float, float, float]:
    xs, ys = [x for x, _ in contour], [y for _, y in contour]
    clip = lambda v: round(min(max(v, 0.0), 1.0), 4)  # noqa: E731
    return (clip(min(xs) / width), clip(min(ys) / height), clip(max(xs) / width), clip(max(ys) / height))


def lot_polygon(spaces: Sequence[Space], width: int, height: int, margin: float = 0.04) -> list[list[float]]:
    """The convex hull of every space, grown by `margin` of its size so wheels at a space's edge are inside."""
    import cv2

    pts = np.array([p for s in spaces for p in s.contour], np.float32)
    hull = cv2.convexHull(pts).reshape(-1, 2)
    centre = hull.mean(axis=0)
    grown = centre + (hull - centre) * (1 + margin)
    return [[round(float(np.clip(x / width, 0, 1)), 4), round(float(np.clip(y / height, 0, 1)), 4)] for x, y in grown]


def occupancy_items(
    stills: Sequence[tuple[float, Mapping[str, bool]]],
    boxes: Mapping[str, tuple[float, float, float, float]],
    dwell_s: float,
) -> list[TruthItem]:
    """Truth items from (pts, {space: occupied}) per labelled still, in time order (pure)."""
    items = []
    last = len(stills) - 1
    for space in sorted(boxes, key=lambda k: (len(k), k)):
        i = 0
        while i <= last:
            if not stills[i][1].get(space, False):
                i += 1
                continue
            j = i
            while j < last and stills[j + 1][1].get(space, False):
                j += 1
            start, end = stills[i][0], stills[j][0]
            if end - start >= dwell_s:
                ongoing = j == last
                items.append(TruthItem(
                    category=Category.illegal_parking, box=boxes[space], start_s=start, end_s=None if ongoing else end,
                    note=f"space {space}, occupied {'from' if ongoing else 'between'} {start:g} s"
                         + ("" if ongoing else f" and {end:g} s") + f" ({j - i + 1} labelled stills)",
                ))
            i = j + 1
    return items


@dataclass(frozen=True)
class PklotTruth:
    frames: Path  # the folder of stills the truth judges
    size: tuple[int, int]
    zone: list[list[float]]  # the whole lot: the hull of every space
    items: list[TruthItem]
    labelled: int  # stills with a label file
    first: datetime


def pklot_truth(folder: Path, dwell_s: float, spaces_file: Path | None = None) -> PklotTruth:
    """Read a PKLot folder (`frames/` + `bounding_boxes/`, or stills beside their XML) into truth items.

    A folder of stills with no labels needs `spaces_file` (one PKLot XML of the same camera): the
    lot is then judged empty in every still (a day known to be empty).
    """
    frames = folder / "frames" if (folder / "frames").is_dir() else folder
    images = [p for p in list_media(frames) if is_image(p)]
    if not images:
        raise PklotError(f"{frames}: no stills")
    untimed = [p.name for p in images if parse_still_time(p.name) is None]
    if untimed:
        raise PklotError(f"{frames}: these stills carry no time in their name: {', '.join(untimed[:8])}")
    from PIL import Image

    with Image.open(images[0]) as im:
        width, height = im.size
    t0 = min(parse_still_time(p.name) for p in images)  # type: ignore[type-var]
    labels = sorted(folder.rglob("*.xml"))
    if not labels and spaces_file is None:
        raise PklotError(f"{folder}: no PKLot XML labels; give --spaces with one XML of this camera to judge an empty day")
    stills: list[tuple[float, dict[str, bool]]] = []
    every: dict[str, Space] = {}
    for xml in labels:
        taken = parse_still_time(xml.name)
        if taken is None:
            raise PklotError(f"{xml}: the label file's name carries no time")
        spaces = read_spaces(xml)
        every.update({s.id: s for s in spaces})
        stills.append(((taken - t0).total_seconds(), {s.id: s.occupied for s in spaces}))
    if not labels:
        every = {s.id: s for s in read_spaces(spaces_file)}  # type: ignore[arg-type]
    stills.sort(key=lambda s: s[0])
    boxes = {sid: space_box(s.contour, width, height) for sid, s in every.items()}
    items = occupancy_items(stills, boxes, dwell_s)
    return PklotTruth(frames, (width, height), lot_polygon(list(every.values()), width, height), items, len(labels), t0)


def truth_document(truth: PklotTruth, name: str, dwell_s: float, cadence_s: float = 60.0) -> dict:
    """The truth file (same format as sample_videos/*.truth.yaml): the whole lot one no-parking zone."""
    cam_id = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)[:64] or "pklot"
    return {
        "video": name,
        "camera": {
            "id": cam_id,
            "name": f"{name} (PKLot labels)",
            "source": {"stills": {"folder": str(truth.frames.resolve()), "time_from": "name"}},
            "cadence_s": cadence_s,
            "zones": [{"id": "lot", "name": "closed car park", "kind": "no_parking", "polygon": truth.zone}],
            "rules": {"illegal_parking": {"dwell_s": dwell_s}},
        },
        "problems": [
            {"category": i.category.value, "box": list(i.box), "start_s": i.start_s, "end_s": i.end_s, "note": i.note}
            for i in truth.items
        ],
        "not_problems": [
            f"Cars that stood in a space for less than {dwell_s:g} s, or were seen in one labelled still only.",
            "Spaces never labelled occupied." if truth.labelled else "Every space: the lot is judged empty all day.",
        ],
    }
