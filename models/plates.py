"""Number plates on a parked vehicle: the plate text when it can be read for certain, else "unread".

A dispatcher acts on the plate (a ticket, a call to the owner), so a wrong plate is worse than none:
the text is given only when it is a valid mainland Chinese plate (GA 36: a province character, a
letter, then five letters/digits, or six for a new-energy plate with D/F) and the recogniser is sure
of it. Everything else is `unread` with the reason, never a guess.

The OCR is the same RapidOCR reader as the text cue (`models.text`), run on the vehicle's box with a
margin: a plate is one line, or two pieces split at its middle dot, so adjacent pieces on one row
are joined before the plate grammar is checked.
"""

from __future__ import annotations

import logging
import re
import unicodedata

import cv2
import numpy as np

from citypatrol.models.text import Box, TextReader, TextRegion
from citypatrol.pipeline.types import PlateRead

log = logging.getLogger(__name__)

PROVINCES = "京津沪渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
_LETTER = "A-HJ-NP-Z"  # plates never use I or O (they read as 1 and 0)
_STANDARD = re.compile(rf"^[{PROVINCES}][{_LETTER}][{_LETTER}0-9]{{4}}[{_LETTER}0-9挂学警港澳]$")
_NEW_ENERGY = re.compile(rf"^[{PROVINCES}][{_LETTER}](?:[DF][{_LETTER}0-9][0-9]{{4}}|[0-9]{{5}}[DF])$")

#: Below this recogniser score a plate that fits the grammar is still not trusted (on the 200 real plate
#: photos of sample_videos/plates.csv, 0.90 kept every exact read of 0.80 and dropped two of five wrong ones).
MIN_PLATE_SCORE = 0.90
#: Margin added around the vehicle box, as a share of its size: boxes often cut through a bumper.
MARGIN = 0.08
_SEPARATORS = " ·•.-_:：·・"


def is_plate(text: str) -> bool:
    """A valid mainland plate: province + letter + 5 (standard) or 6 (new energy) characters."""
    return bool(_STANDARD.match(text) or _NEW_ENERGY.match(text))


def normalise(raw: str) -> str:
    """What the recogniser read, as plate characters: full-width forms folded, separators dropped,
    letters upper-cased, and O/I after the region letter read as 0/1 (plates never use O or I)."""
    text = "".join(ch for ch in unicodedata.normalize("NFKC", raw) if ch not in _SEPARATORS).upper()
    if len(text) > 2:
        text = text[:2] + text[2:].replace("O", "0").replace("I", "1")
    return text


def candidates(regions: tuple[TextRegion, ...]) -> list[tuple[str, float]]:
    """Each text line, and each run of up to three pieces side by side on one row, as (text, score);
    a run's score is its weakest piece's."""
    by_row: list[list[TextRegion]] = []
    for r in sorted(regions, key=lambda r: (r.box[1] + r.box[3]) / 2):
        row = by_row[-1] if by_row else None
        if row is not None and _same_row(row[-1].box, r.box):
            row.append(r)
        else:
            by_row.append([r])
    out: list[tuple[str, float]] = []
    for row in by_row:
        row.sort(key=lambda r: r.box[0])
        for i in range(len(row)):
            for j in range(i + 1, min(i + 3, len(row)) + 1):
                run = row[i:j]
                out.append(("".join(r.text for r in run), min(r.read_score for r in run)))
    return out


def _same_row(a: Box, b: Box) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > 0.5 * min(a[3] - a[1], b[3] - b[1])


def judge(text: str, score: float) -> PlateRead:
    """One reading of a plate: kept when it is a plate read with confidence, else unread."""
    plate = normalise(text)
    if not is_plate(plate):
        return PlateRead.unread("the text read is not a plate")
    if score < MIN_PLATE_SCORE:
        return PlateRead.unread(f"plate read with low confidence ({score:.2f} < {MIN_PLATE_SCORE:.2f})")
    return PlateRead(plate, round(score, 3), "read")


def choose(regions: tuple[TextRegion, ...]) -> PlateRead:
    """The plate among the text found on a vehicle, or why there is none (pure: testable on regions)."""
    if not regions:
        return PlateRead.unread("no text found on the vehicle")
    valid = [(normalise(t), s) for t, s in candidates(regions) if is_plate(normalise(t))]
    if not valid:
        return PlateRead.unread("no text on the vehicle reads as a plate")
    return judge(*max(valid, key=lambda c: c[1]))


def vehicle_area(box: Box, margin: float = MARGIN) -> Box:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return max(0.0, x1 - mx), max(0.0, y1 - my), min(1.0, x2 + mx), min(1.0, y2 + my)


def read_plate_crop(reader: TextReader, plate: np.ndarray, upscale_below_px: int = 48) -> PlateRead:
    """A picture that is already the plate (a plate detector's crop): recognised as one line, with
    no text detection (which finds nothing on a picture cut tight around its text)."""
    if plate.shape[0] < upscale_below_px:  # the recogniser works at 48 px line height
        f = upscale_below_px / plate.shape[0]
        plate = cv2.resize(plate, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
    try:
        ((text, score),) = reader.recognise([plate])
    except Exception as exc:  # ONNX Runtime raises its own types on a bad picture
        log.warning("plate recognition failed: %s", exc)
        return PlateRead.unread(f"plate reading failed: {exc}")
    return judge(text, score)


def read_plate(reader: TextReader, image: np.ndarray, box: Box) -> PlateRead:
    """The plate of the vehicle at `box` (normalised) in a BGR frame. Never raises: an OCR failure
    is an unread plate with the reason, so a case is never held up by its plate."""
    try:
        reading = reader.read(image, vehicle_area(box))
    except Exception as exc:  # ONNX Runtime and OpenCV raise their own types on a bad crop
        log.warning("plate reading failed: %s", exc)
        return PlateRead.unread(f"plate reading failed: {exc}")
    plate = choose(reading.regions)
    log.debug("plate %s from %d text lines in %.2f s", plate.describe(), len(reading.regions), reading.seconds)
    return plate
