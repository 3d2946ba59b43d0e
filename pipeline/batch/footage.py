"""Which cameras the paths given to `citypatrol analyze` are, and why.

A video file is a camera. A folder of videos is a camera per file. A folder of stills is one
time-lapse camera when the stills carry capture times (in their names or EXIF) and share one
picture size; otherwise (unrelated photos, numbered snapshots) each photo is its own camera.
Every folder of stills gets a note that says which reading was chosen and why; a folder whose
times are mixed (most stills timed, some not) is refused with a note naming the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from citypatrol.pipeline.config.models import Camera, Config, StillsOptions
from citypatrol.streams.media import is_image, iter_media_files, list_media
from citypatrol.streams.still_times import StillsTimeError, read_stills


@dataclass(frozen=True)
class FootagePlan:
    cameras: list[Camera]
    notes: list[str] = field(default_factory=list)  # how folders of stills were read
    errors: list[str] = field(default_factory=list)  # folders that could not be read (named files)


def _camera_id(stem: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in stem)[:64] or "camera"


def _sizes(paths: Sequence[Path]) -> set[tuple[int, int]]:
    from PIL import Image

    sizes = set()
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes.add(im.size)
        except (OSError, ValueError):
            continue  # the source reports an unreadable still when it gets there
    return sizes


class _Refused(Exception):
    pass


def _stills_folder(folder: Path, images: list[Path], notes: list[str]) -> StillsOptions | None:
    """How to read a folder of stills as one camera, or None for one camera per photo; _Refused if mixed."""
    try:
        reading = read_stills(images)
    except StillsTimeError as exc:
        raise _Refused(f"{folder}: {exc}") from None
    if not reading.timed:
        notes.append(f"{folder}: {len(images)} photos read as separate cameras: {reading.why} "
                      f"(to read them as one time-lapse camera, use a config `source: {{stills: {{folder: {folder}, "
                      f"time_from: mtime}}}}`)")
        return None
    sizes = _sizes(images)
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
        notes.append(f"{folder}: {len(images)} photos read as separate cameras: they carry times but differ in size "
                     f"({shown}), so they are not one camera's stills")
        return None
    first, last = reading.stills[0].taken, reading.stills[-1].taken
    notes.append(f"{folder}: one time-lapse camera of {len(images)} stills, {first} → {last}, times from "
                 f"{reading.reading} ({reading.why})")
    return StillsOptions(time_from="auto")


def plan_cameras(paths: Sequence[str | Path], config: Config) -> FootagePlan:
    """The cameras for `paths` (id = file or folder stem; a config camera with that id lends its settings)."""
    cameras: list[Camera] = []
    notes: list[str] = []
    errors: list[str] = []
    seen: set[str] = set()
    taken: set[Path] = set()

    def add(stem: str, source: Path, stills: StillsOptions | None = None) -> None:
        cam_id = _camera_id(stem)
        base = next((c for c in config.cameras if c.id == cam_id), None)
        unique, n = cam_id, 2
        while unique in seen:
            unique, n = f"{cam_id}-{n}", n + 1
        seen.add(unique)
        update = {"id": unique, "source": str(source)}
        if stills is not None and (base is None or base.stills is None):
            update["stills"] = stills
        if base is not None:
            cameras.append(base.model_copy(update=update))
        else:
            cameras.append(Camera(id=unique, name=source.name, source=str(source), stills=update.get("stills")))

    for raw in paths:
        path = Path(raw)
        media = list_media(path) if path.is_dir() else []
        if media and all(is_image(p) for p in media):
            try:
                options = _stills_folder(path, media, notes)
            except _Refused as exc:
                errors.append(str(exc))
                continue
            if options is not None:
                taken.update(p.resolve() for p in media)
                add(path.name, path, options)
                continue
        for item in iter_media_files([path]):
            if item.resolve() not in taken:
                taken.add(item.resolve())
                add(item.stem, item)
    return FootagePlan(cameras, notes, errors)
