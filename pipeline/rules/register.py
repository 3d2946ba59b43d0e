"""The approved-ads register: is a sign found on a wall one the city approved?

A register entry is an `approved_ad` zone of the camera's view: its polygon, and optionally the
permit number, the permit's last day (`valid_until`) and the approved sign's look (a 64-bit
perceptual hash of the zone's bounding box in the picture it was approved from). A sign whose
centre lies in an entry is approved when the permit has not run out and, where the entry has a
look, the same part of the current frame still looks like the approved sign: a registered sign
replaced by another one, or one whose permit expired, is a case again, and the case says why.

The look is a 32×32 grey thumbnail of the zone's bounding box, compared cell by cell (4×4 cells,
normalised cross-correlation, so the light changing over a day does not matter): the sign is the
approved one when most cells agree. A walker or a car in front spoils some cells for a moment, so
an entry whose sign looked right at any time within the last dwell still approves: only a sign that
has not looked like the approved one for a whole dwell is a different sign.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date

import cv2
import numpy as np

from citypatrol.pipeline.config.models import Zone, ZoneKind
from citypatrol.pipeline.types import Box
from citypatrol.pipeline.zones import Anchor, box_in_zone

#: Share of the 16 cells that must agree for the same sign. Measured on the London hoarding (five
#: signs, frames 0.5 s apart over 3 s): a sign against itself 0.81–1.0 with nothing in front, 0.5–0.88
#: with a walker in front (0–0.25 while a car passes); against the other signs 0–0.44.
MIN_AGREEMENT = 0.6
THUMB = 32
CELLS = 4
FLAT = 4.0  # grey-level spread below which a cell is plain (a blank panel, the sky)


def zone_box(zone: Zone) -> Box:
    xs, ys = [p[0] for p in zone.polygon], [p[1] for p in zone.polygon]
    return min(xs), min(ys), max(xs), max(ys)


def _thumb(image: np.ndarray, box: Box) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1 = int(np.floor(box[0] * w)), int(np.floor(box[1] * h))
    x2, y2 = max(x1 + 1, int(np.ceil(box[2] * w))), max(y1 + 1, int(np.ceil(box[3] * h)))
    crop = image[y1:y2, x1:x2]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def sign_look(image: np.ndarray, box: Box) -> str:
    """The look of a normalised box of a BGR picture: its grey thumbnail, base64."""
    return base64.b64encode(_thumb(image, box).tobytes()).decode("ascii")


def decode_look(look: str) -> np.ndarray:
    raw = base64.b64decode(look, validate=True)
    if len(raw) != THUMB * THUMB:
        raise ValueError(f"a look is {THUMB}×{THUMB} grey bytes, base64; this one is {len(raw)} bytes")
    return np.frombuffer(raw, np.uint8).reshape(THUMB, THUMB)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of cells where two thumbnails agree: both plain, or correlated (NCC ≥ 0.5)."""
    k = THUMB // CELLS
    agree = 0
    for i in range(CELLS):
        for j in range(CELLS):
            ca = a[i * k:(i + 1) * k, j * k:(j + 1) * k].astype(np.float32)
            cb = b[i * k:(i + 1) * k, j * k:(j + 1) * k].astype(np.float32)
            sa, sb = float(ca.std()), float(cb.std())
            if sa < FLAT or sb < FLAT:
                agree += sa < FLAT and sb < FLAT
            else:
                agree += float(((ca - ca.mean()) * (cb - cb.mean())).mean()) / (sa * sb) >= 0.5
    return agree / (CELLS * CELLS)


@dataclass(frozen=True, slots=True)
class Approval:
    approved: bool
    why: str = ""  # for a sign inside an entry that does not approve it: why not


class Register:
    """The register checks of every camera, remembering when each entry's sign last looked right."""

    def __init__(self) -> None:
        self._looked_right: dict[tuple[str, str], float] = {}  # (camera, entry zone id) → pts

    def check(self, camera_id: str, entries: list[Zone], box: Box, image: np.ndarray | None, today: date, pts: float,
              memory_s: float) -> Approval:
        """Whether the sign at `box` is approved by one of the camera's register entries; `memory_s`:
        how long a sign that looked right still counts as there while something hides it."""
        reasons = []
        for z in (z for z in entries if box_in_zone(z, box, anchor=Anchor.center)):
            name = f"permit {z.permit}" if z.permit else f"register entry {z.name or z.id}"
            if z.valid_until is not None and today > z.valid_until:
                reasons.append(f"{name} ran out on {z.valid_until.isoformat()}")
                continue
            if z.look and image is not None:
                key = (camera_id, z.id)
                share = agreement(_thumb(image, zone_box(z)), decode_look(z.look))
                if share >= MIN_AGREEMENT:
                    self._looked_right[key] = pts
                elif pts - self._looked_right.get(key, float("-inf")) > memory_s:
                    reasons.append(f"not the sign approved under {name} (only {share:.0%} of it looks the same)")
                    continue
            return Approval(True)
        return Approval(False, "; ".join(reasons))


def entry_for_sign(zone_id: str, box: Box, frame_size: tuple[int, int], crop: np.ndarray, crop_origin: tuple[int, int],
                   permit: str, valid_until: date, name: str = "") -> Zone:
    """A register entry for the sign at `box` (normalised), from a clean crop of its frame that
    starts at pixel `crop_origin` of a `frame_size` (width, height) frame: the entry's polygon is
    the sign's box and its look is taken from the same pixels the rules will compare."""
    w, h = frame_size
    ox, oy = crop_origin
    ch, cw = crop.shape[:2]
    inner = ((box[0] * w - ox) / cw, (box[1] * h - oy) / ch, (box[2] * w - ox) / cw, (box[3] * h - oy) / ch)
    if not (-0.02 <= inner[0] < inner[2] <= 1.02 and -0.02 <= inner[1] < inner[3] <= 1.02):
        raise ValueError("the crop does not hold the sign's box")
    inner = tuple(float(np.clip(v, 0.0, 1.0)) for v in inner)
    x1, y1, x2, y2 = (round(float(v), 4) for v in box)
    return Zone(id=zone_id, name=name or f"approved sign {permit}", kind=ZoneKind.approved_ad,
                polygon=[[x1, y1], [x2, y1], [x2, y2], [x1, y2]], permit=permit, valid_until=valid_until,
                look=sign_look(crop, inner))  # type: ignore[arg-type]
