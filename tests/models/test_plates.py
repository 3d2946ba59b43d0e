"""Plate grammar and the choice among the text lines found on a vehicle (pure: no OCR needed).

Reading real plate photos is measured in tests/models/test_plates_real.py."""

from __future__ import annotations

import numpy as np
import pytest

from citypatrol.models.plates import MIN_PLATE_SCORE, choose, is_plate, normalise, read_plate, vehicle_area
from citypatrol.models.text import TextReading, TextRegion


@pytest.mark.parametrize("text", ["皖A12345", "京N8P8F8", "粤B1234学", "沪AD12345", "浙A12345F", "苏E0A9D警"])
def test_valid_plates(text: str) -> None:
    assert is_plate(text)


@pytest.mark.parametrize("text, why", [
    ("A12345", "no province"),
    ("皖12345", "no region letter"),
    ("皖I12345", "I is never a region letter"),
    ("皖A1234", "too short"),
    ("皖A1234567", "too long"),
    ("港A12345", "not a mainland province"),
    ("皖AB12345", "eight characters without D/F is not new energy"),
    ("皖A12345X", "new energy needs D or F"),
    ("OPEN 24H", "not a plate"),
])
def test_invalid_plates(text: str, why: str) -> None:
    assert not is_plate(text), why


def test_normalise_folds_separators_width_and_o_i() -> None:
    assert normalise("皖A·12345") == "皖A12345"
    assert normalise("皖Ａ ＤO12I5") == "皖AD01215"  # full-width letters, O and I after the region letter
    assert normalise("京o-8888") == "京O8888"  # the region letter is not rewritten: 京O is not a plate
    assert not is_plate(normalise("京o-88888"))


def region(text: str, score: float, box: tuple[float, float, float, float]) -> TextRegion:
    return TextRegion(box, text, score, score >= 0.5)


def test_choose_joins_pieces_split_at_the_dot() -> None:
    plate = choose((region("皖A", 0.97, (0.30, 0.60, 0.40, 0.66)), region("·D7758", 0.93, (0.41, 0.605, 0.60, 0.665))))
    assert plate.read and plate.text == "皖AD7758" and plate.score == pytest.approx(0.93)


def test_choose_picks_the_plate_among_other_lettering() -> None:
    lines = (region("顺丰速运", 0.99, (0.1, 0.2, 0.6, 0.3)), region("皖A12345", 0.95, (0.3, 0.7, 0.5, 0.75)),
             region("95338", 0.99, (0.6, 0.7, 0.7, 0.75)))
    assert choose(lines).text == "皖A12345"


def test_unread_is_never_a_guess() -> None:
    assert choose(()).note == "no text found on the vehicle"
    lettering = choose((region("SALE 50%", 0.99, (0.1, 0.1, 0.5, 0.2)),))
    assert not lettering.read and lettering.text == "" and "reads as a plate" in lettering.note
    unsure = choose((region("皖A12345", MIN_PLATE_SCORE - 0.05, (0.3, 0.7, 0.5, 0.75)),))
    assert not unsure.read and unsure.text == "" and "low confidence" in unsure.note


def test_vehicle_area_adds_a_margin_inside_the_frame() -> None:
    x1, y1, x2, y2 = vehicle_area((0.0, 0.5, 0.5, 1.0))
    assert x1 == 0.0 and y2 == 1.0 and y1 < 0.5 and x2 > 0.5


class BrokenReader:
    def read(self, image: np.ndarray, area=(0.0, 0.0, 1.0, 1.0)) -> TextReading:
        raise RuntimeError("onnxruntime: bad input")


def test_an_ocr_failure_is_an_unread_plate() -> None:
    plate = read_plate(BrokenReader(), np.zeros((10, 10, 3), np.uint8), (0.1, 0.1, 0.9, 0.9))
    assert not plate.read and "bad input" in plate.note
