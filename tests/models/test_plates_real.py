"""Plate reading on real pictures.

What must not be found runs everywhere: the asset mirror's real cars carry no mainland plate (UK
plates on the London street), so every plate there is unread. What must
be found needs the 200 real CCPD plate photos of `sample_videos/plates.csv` (public repositories;
the pictures are not shipped): set CITYPATROL_PLATE_SET to the folder that holds them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import cv2
import pytest

from citypatrol.models.plates import read_plate
from citypatrol.models.text import RapidTextReader
from citypatrol.pipeline.evaluation.plates import PlateSetError, load_plate_set, read_sample, score
from citypatrol.pipeline.evaluation.samples import SAMPLES_DIR

MANIFEST = SAMPLES_DIR / "plates.csv"
PLATE_SET = Path(os.environ.get("CITYPATROL_PLATE_SET", "/nonexistent"))


@pytest.fixture(scope="module")
def reader() -> RapidTextReader:
    return RapidTextReader()


def test_real_cars_without_a_mainland_plate_are_unread_never_guessed(reader, sample_video) -> None:
    with av.open(str(sample_video("london"))) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == 30).to_ndarray(format="bgr24")
    # the Honda coming up the London street: its UK plate "GK09 BJE" is read, and it is not a mainland plate
    honda = read_plate(reader, frame, (0.37, 0.42, 0.62, 0.68))
    assert not honda.read and honda.text == "" and honda.note == "no text on the vehicle reads as a plate", honda
    far = read_plate(reader, frame, (0.20, 0.48, 0.31, 0.59))  # the black car further up
    assert not far.read and far.text == ""


def test_a_plate_set_with_bad_rows_is_refused_naming_each(tmp_path: Path, assets) -> None:
    still = assets / "sequences/pklot_ufpr05_polo/labelled/sequence1/frames/2013-02-22_07_05_01.png"
    shutil.copy(still, tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,plate,kind,sha256\n"
                        "a.png,皖A12345,vehicle,\n"
                        "a.png,皖A12345,drone,\n"
                        "a.png,ABC123,plate,\n"
                        "missing.jpg,皖A12345,plate,\n"
                        f"a.png,皖A12345,plate,{'0' * 64}\n", encoding="utf-8")
    with pytest.raises(PlateSetError) as err:
        load_plate_set(manifest, tmp_path)
    msg = str(err.value)
    assert "line 3 (a.png): kind 'drone'" in msg and "line 4 (a.png): plate 'ABC123' is not a valid plate" in msg
    assert "line 5 (missing.jpg): picture not found" in msg and "line 6 (a.png): picture differs" in msg
    assert "line 2" not in msg
    (tmp_path / "h.csv").write_text("file,text\n", encoding="utf-8")
    with pytest.raises(PlateSetError, match="no rows"):
        load_plate_set(tmp_path / "h.csv", tmp_path)


@pytest.mark.skipif(not (PLATE_SET / "ccpd_full_000.jpg").is_file(),
                    reason="real plate photos not present: set CITYPATROL_PLATE_SET to the folder of sample_videos/plates.csv's pictures")
def test_exact_match_on_real_plate_photos(reader) -> None:
    results = [read_sample(reader, s, PLATE_SET) for s in load_plate_set(MANIFEST, PLATE_SET)]
    scores = {s.kind: s for s in score(results)}
    assert scores["vehicle"].n == 27 and scores["plate"].n == 173
    assert scores["vehicle"].accuracy >= 0.90 and scores["plate"].accuracy >= 0.95
    wrong = sum(s.wrong for s in scores.values())
    assert wrong <= 4, [(r.sample.file, r.sample.plate, r.read.text) for r in results if r.wrong]  # ≤ 2 % of 200
