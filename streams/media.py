"""Which files are footage, and in what order: extension sets, natural name order, folder expansion."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

VIDEO_EXTS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .ts .m2ts .mts .mpg .mpeg .flv .wmv .asf .3gp .h264 .264 .h265 .265 .hevc .dav".split()
)
IMAGE_EXTS = frozenset(".jpg .jpeg .png .bmp .tif .tiff .webp".split())


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def natural_key(path: Path) -> tuple:
    """Sort key so that `clip2` comes before `clip10` (numbers compared as numbers)."""
    parts = re.split(r"(\d+)", str(path).lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def list_media(folder: Path) -> list[Path]:
    """Video and image files under `folder` (sub-folders included), in natural name order.

    Hidden files and folders (names starting with '.') are left out.
    """
    found = [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and (is_video(p) or is_image(p))
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder)))


def iter_media_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files `citypatrol analyze PATH…` processes: folders expanded, order kept, no repeats.

    A file named explicitly is kept whatever its extension (FFmpeg may still read it); a path
    that does not exist raises FileNotFoundError naming it.
    """
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            items = list_media(path)
        elif path.is_file():
            items = [path]
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
        for item in items:
            key = item.resolve()
            if key not in seen:
                seen.add(key)
                yield item
