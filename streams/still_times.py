"""When each still of a time-lapse folder was taken: from its name, its EXIF, or its modification time.

A folder of stills is one camera when its pictures carry capture times; those times give the
frames their stream time (seconds since the first still) and wall time. Where the times come from
is a choice (`TimeFrom`): `auto` reads times in the names, else EXIF DateTimeOriginal, else
sequence numbers; `name`, `exif` and `mtime` insist on one reading and name every still it fails
on. Every reading says what it chose and why, so a summary can tell the user.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from citypatrol.streams.media import natural_key

_STAMP = re.compile(r"(?<!\d)((?:19|20)\d\d)[-_.]?(\d\d)[-_.]?(\d\d)[T _-]?(\d\d)[-_.:]?(\d\d)[-_.:]?(\d\d)(?!\d)")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")
# strptime directives a `pattern` may use, as the digits they stand for
_DIRECTIVES = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}", "M": r"\d{1,2}",
               "S": r"\d{1,2}", "f": r"\d{1,6}", "%": "%"}
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306


class TimeFrom(StrEnum):
    auto = "auto"  # times in the names, else EXIF, else sequence numbers
    name = "name"  # the file name (default pattern, or `pattern`)
    exif = "exif"  # EXIF DateTimeOriginal (DateTime if absent)
    mtime = "mtime"  # the file's modification time (lost when files are copied carelessly)


class StillsTimeError(ValueError):
    """The stills' times cannot be read as asked; the message names the files."""


@dataclass(frozen=True, slots=True)
class Still:
    path: Path
    pts: float
    taken: datetime | None  # naive capture time; None for sequence numbers


@dataclass(frozen=True, slots=True)
class StillsReading:
    """How a folder's stills were put on a timeline; `stills` is empty when they are not one camera."""

    stills: tuple[Still, ...]
    reading: str  # "file names", "EXIF DateTimeOriginal", "file modification times", "sequence numbers", "none"
    why: str

    @property
    def timed(self) -> bool:
        """The stills carry real capture times (not just an order)."""
        return bool(self.stills) and self.stills[0].taken is not None


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A strptime-style `pattern` (`IMG_%Y%m%d_%H%M%S`) as a regex that finds it inside a name."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            if i + 1 >= len(pattern) or pattern[i + 1] not in _DIRECTIVES:
                raise ValueError(f"pattern {pattern!r}: only %Y %y %m %d %H %M %S %f %% are understood")
            out.append(_DIRECTIVES[pattern[i + 1]])
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    if "%Y" not in pattern and "%y" not in pattern or "%H" not in pattern:
        raise ValueError(f"pattern {pattern!r} needs at least a year (%Y or %y) and an hour (%H)")
    return re.compile("".join(out))


def parse_still_time(name: str, pattern: str | None = None) -> datetime | None:
    """The capture time in a file name (`2013-02-24_06_15_04`, `20130224T061504`, or `pattern`), naive; None if absent."""
    if pattern is not None:
        for m in pattern_regex(pattern).finditer(name):
            try:
                return datetime.strptime(m.group(0), pattern)
            except ValueError:
                continue
        return None
    for m in _STAMP.finditer(name):
        try:
            return datetime(*(int(g) for g in m.groups()))
        except ValueError:
            continue
    return None


def parse_sequence_number(name: str) -> int | None:
    """The last number in a file stem (`frame_000123.jpg` → 123); None if it has none."""
    m = _NUMBER.search(Path(name).stem)
    return int(m.group(1)) if m else None


def exif_time(path: Path) -> datetime | None:
    """EXIF DateTimeOriginal (else DateTime) of an image, naive; None if it has none or cannot be read."""
    from PIL import Image  # noqa: PLC0415 (only folders read by EXIF need it)

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            text = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    except (OSError, ValueError, SyntaxError):
        return None
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def mtime_time(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime)


def _timeline(paths: Sequence[Path], times: Sequence[datetime]) -> tuple[Still, ...]:
    ordered = sorted(zip(paths, times), key=lambda pt: (pt[1], natural_key(pt[0])))
    t0 = ordered[0][1]
    return tuple(Still(p, (t - t0).total_seconds(), t) for p, t in ordered)


def _names(paths: Sequence[Path], limit: int = 8) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _all_or_error(paths: Sequence[Path], times: Sequence[datetime | None], what: str) -> tuple[Still, ...]:
    missing = [p for p, t in zip(paths, times) if t is None]
    if missing:
        raise StillsTimeError(f"{len(missing)} of {len(paths)} still(s) have no readable {what}: {_names(missing)}")
    return _timeline(paths, times)  # type: ignore[arg-type]


def read_stills(
    paths: Sequence[Path],
    time_from: TimeFrom | str = TimeFrom.auto,
    *,
    pattern: str | None = None,
    interval_s: float = 60.0,
) -> StillsReading:
    """Put `paths` on a timeline by `time_from`; raises StillsTimeError naming the stills that fail.

    `auto`: when every name carries a time, the names; when most do and some don't, an error
    naming those (a mixed folder is a mistake, not a camera); else EXIF when every still has it;
    else sequence numbers `interval_s` apart when every name has one; else no timeline.
    """
    time_from = TimeFrom(time_from)
    paths = list(paths)
    if not paths:
        return StillsReading((), "none", "the folder holds no stills")
    if time_from is TimeFrom.name or (time_from is TimeFrom.auto and pattern is not None):
        times = [parse_still_time(p.name, pattern) for p in paths]
        what = f"time in its name matching {pattern!r}" if pattern else "time in its name"
        return StillsReading(_all_or_error(paths, times, what), "file names", "asked for: times in the file names")
    if time_from is TimeFrom.exif:
        stills = _all_or_error(paths, [exif_time(p) for p in paths], "EXIF DateTimeOriginal")
        return StillsReading(stills, "EXIF DateTimeOriginal", "asked for: EXIF capture times")
    if time_from is TimeFrom.mtime:
        return StillsReading(_timeline(paths, [mtime_time(p) for p in paths]), "file modification times",
                             "asked for: file modification times")
    times = [parse_still_time(p.name) for p in paths]
    named = sum(t is not None for t in times)
    if named == len(paths):
        return StillsReading(_timeline(paths, times), "file names",  # type: ignore[arg-type]
                             f"all {len(paths)} names carry a capture time")
    if named * 2 > len(paths):
        missing = [p for p, t in zip(paths, times) if t is None]
        raise StillsTimeError(f"{named} of {len(paths)} stills carry a time in their name but these do not: "
                              f"{_names(missing)}; rename or remove them, or set `time_from`")
    exif = [exif_time(p) for p in paths] if named == 0 else [None]
    if all(t is not None for t in exif) and len(exif) == len(paths):
        return StillsReading(_timeline(paths, exif), "EXIF DateTimeOriginal",  # type: ignore[arg-type]
                             f"the names carry no time; all {len(paths)} stills have an EXIF capture time")
    numbers = [parse_sequence_number(p.name) for p in paths]
    if all(n is not None for n in numbers):
        ordered = sorted(zip(paths, numbers), key=lambda pn: (pn[1], natural_key(pn[0])))
        n0 = ordered[0][1]
        stills = tuple(Still(p, (n - n0) * interval_s, None) for p, n in ordered)  # type: ignore[operator]
        return StillsReading(stills, "sequence numbers",
                             f"the names carry no time and no EXIF time; numbered, read {interval_s:g} s apart")
    return StillsReading((), "none", "the names carry no time or number and the stills no EXIF time")


def stills_timeline(paths: Sequence[Path], interval_s: float) -> list[Still] | None:
    """Order stills by the times (else sequence numbers) in their names; None if the names carry neither.

    Reads names only (no file is opened): the quick check of whether a folder is a stills camera.
    """
    times = [parse_still_time(p.name) for p in paths]
    if paths and all(t is not None for t in times):
        return list(_timeline(paths, times))  # type: ignore[arg-type]
    numbers = [parse_sequence_number(p.name) for p in paths]
    if paths and all(n is not None for n in numbers):
        ordered_n = sorted(zip(paths, numbers), key=lambda pn: (pn[1], natural_key(pn[0])))
        n0 = ordered_n[0][1]
        return [Still(p, (n - n0) * interval_s, None) for p, n in ordered_n]  # type: ignore[operator]
    return None
