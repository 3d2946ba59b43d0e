"""Reading a folder of stills as one camera: times from names, patterns, EXIF, modification times, and refusals."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from citypatrol.streams.open import open_source
from citypatrol.streams.source import SourceError
from citypatrol.streams.still_times import StillsTimeError, TimeFrom, parse_still_time, pattern_regex, read_stills


def _jpeg(path: Path, taken: datetime | None = None, size: tuple[int, int] = (64, 48)) -> Path:
    image = Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8))
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[36867] = taken.strftime("%Y:%m:%d %H:%M:%S")
    image.save(path, exif=exif)
    return path


@pytest.mark.parametrize(
    "name, pattern, when",
    [
        ("IMG_20240101_120000.jpg", None, datetime(2024, 1, 1, 12, 0, 0)),
        ("cam3_IMG_20240101_120005.jpg", "IMG_%Y%m%d_%H%M%S", datetime(2024, 1, 1, 12, 0, 5)),
        ("gate 24-01-01 07h05.jpg", "%y-%m-%d %Hh%M", datetime(2024, 1, 1, 7, 5)),
        ("IMG_20241301_120000.jpg", "IMG_%Y%m%d_%H%M%S", None),  # month 13
        ("snapshot.jpg", "IMG_%Y%m%d_%H%M%S", None),
    ],
)
def test_time_in_name_by_default_or_pattern(name, pattern, when):
    assert parse_still_time(name, pattern) == when


@pytest.mark.parametrize("pattern", ["%Y-%m-%d", "IMG_%Q%H", "%H%M%S"])
def test_a_pattern_without_year_and_hour_or_with_unknown_directives_is_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        pattern_regex(pattern)


def test_auto_reads_names_then_exif_then_numbers(tmp_path):
    named = [Path("IMG_20240101_120500.jpg"), Path("IMG_20240101_120000.jpg")]
    r = read_stills(named)
    assert r.reading == "file names" and r.timed and [s.pts for s in r.stills] == [0, 300]
    assert "all 2 names" in r.why

    shots = [_jpeg(tmp_path / "a.jpg", datetime(2024, 5, 1, 8, 0, 0)), _jpeg(tmp_path / "b.jpg", datetime(2024, 5, 1, 7, 55, 0))]
    r = read_stills(shots)
    assert r.reading == "EXIF DateTimeOriginal" and [s.path.name for s in r.stills] == ["b.jpg", "a.jpg"]
    assert r.stills[1].pts == 300

    numbered = [_jpeg(tmp_path / "f1.jpg"), _jpeg(tmp_path / "f2.jpg")]
    r = read_stills(numbered, interval_s=10)
    assert r.reading == "sequence numbers" and not r.timed and [s.pts for s in r.stills] == [0, 10]

    r = read_stills([_jpeg(tmp_path / "cat.jpg"), _jpeg(tmp_path / "dog.jpg")])
    assert r.stills == () and "no time" in r.why


def test_mixed_names_are_refused_naming_the_files():
    paths = [Path(f"2013-02-24_06_{m:02d}_00.jpg") for m in (15, 20, 25)] + [Path("copy of frame.jpg")]
    with pytest.raises(StillsTimeError, match=r"3 of 4 .*copy of frame\.jpg"):
        read_stills(paths)


def test_asked_readings_name_every_still_they_fail_on(tmp_path):
    good = _jpeg(tmp_path / "one.jpg", datetime(2024, 5, 1, 8, 0, 0))
    bare = _jpeg(tmp_path / "two.jpg")
    with pytest.raises(StillsTimeError, match=r"1 of 2 .*EXIF.*two\.jpg"):
        read_stills([good, bare], TimeFrom.exif)
    with pytest.raises(StillsTimeError, match=r"one\.jpg, two\.jpg"):
        read_stills([good, bare], TimeFrom.name, pattern="IMG_%Y%m%d_%H%M%S")
    os.utime(good, (1_700_000_000, 1_700_000_000))
    os.utime(bare, (1_700_000_060, 1_700_000_060))
    r = read_stills([bare, good], TimeFrom.mtime)
    assert [s.path.name for s in r.stills] == ["one.jpg", "two.jpg"] and r.stills[1].pts == 60


def test_open_source_with_exif_times_and_its_refusal(tmp_path):
    folder = tmp_path / "gate"
    folder.mkdir()
    for i in range(3):
        _jpeg(folder / f"shot{'abc'[i]}.jpg", datetime(2024, 5, 1, 8, 5 * i, 0))
    with open_source("gate", str(folder), 60.0, time_from="exif") as src:
        frames = list(src.frames())
        assert "EXIF" in src.reading
    assert [f.pts for f in frames] == [0, 300, 600]
    assert frames[2].wall.replace(tzinfo=None) == datetime(2024, 5, 1, 8, 10)
    _jpeg(folder / "shotd.jpg")
    with pytest.raises(SourceError, match="shotd.jpg"):
        open_source("gate", str(folder), 60.0, time_from="exif")
