"""`open_source`: one entry point that picks the right source for a camera's `source` string."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from citypatrol.streams.frame import Frame
from citypatrol.streams.live import LiveOptions, LiveSource
from citypatrol.streams.media import is_image, list_media
from citypatrol.streams.recorded import FileSource, RecordedSource
from citypatrol.streams.redact import redact_text, redact_url
from citypatrol.streams.source import Source, SourceError
from citypatrol.streams.still_times import StillsTimeError, TimeFrom, read_stills, stills_timeline
from citypatrol.streams.stills import StillsSource

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "srt://", "udp://", "tcp://")


class SourceKind(StrEnum):
    live = "live"
    file = "file"
    folder = "folder"  # videos (and stray stills) played in name order as one camera
    stills = "stills"  # a folder of timestamped or numbered images


def source_kind(source: str) -> SourceKind:
    """What `source` is: a live URL, a stills folder, a folder of footage, or (anything else) a file."""
    if source.lower().startswith(LIVE_SCHEMES):
        return SourceKind.live
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        media = list_media(path)
        if media and all(is_image(p) for p in media) and stills_timeline(media, 1.0) is not None:
            return SourceKind.stills
        return SourceKind.folder
    return SourceKind.file


def open_source(
    camera_id: str,
    source: str,
    cadence_s: float,
    *,
    start_wall: datetime | None = None,
    max_side: int | None = 1280,
    still_interval_s: float | None = None,
    start_s: float = 0.0,
    time_from: TimeFrom | str | None = None,
    pattern: str | None = None,
    **live_opts: object,
) -> Source:
    """Open a camera's frames.

    - `rtsp://…` and other URLs: `LiveSource`; `live_opts` are `LiveOptions` fields
      (`reconnect`, `max_retries`, `open_timeout_s`, `read_timeout_s`, `stall_timeout_s`, …).
      With `reconnect=False` a URL nobody serves raises `SourceError` here, within the open
      timeout; with reconnection on, this returns at once and the source retries in the background.
    - a folder of images named by time or sequence number: `StillsSource` (numbered stills are
      `still_interval_s` apart, default the cadence). `time_from` (name | exif | mtime | auto)
      makes a folder a stills camera whatever its names, with times read that way (`pattern`: a
      strptime-style name pattern such as `IMG_%Y%m%d_%H%M%S`); stills whose time cannot be read
      raise `SourceError` naming them.
    - another folder: its video files (and stills) in name order as one camera.
    - a file: `FileSource`; one that cannot be opened raises `SourceError` saying why.

    `start_wall` (naive = UTC) anchors `Frame.wall`; `max_side` caps the longer image side.
    `start_s`: for a video file, begin that many seconds in (seeking, on the cadence grid of a
    whole-file read); a source of another kind raises ValueError.
    `live_opts` are ignored for recorded footage, so one option set can serve every camera.
    """
    if cadence_s <= 0:
        raise ValueError(f"cadence_s must be > 0, got {cadence_s}")
    if start_wall is not None and start_wall.tzinfo is None:
        start_wall = start_wall.replace(tzinfo=UTC)
    kind = SourceKind.stills if time_from is not None else source_kind(source)
    if start_s and kind is not SourceKind.file:
        raise ValueError(f"start_s applies to a video file, not to {kind.value} source {source!r}")
    if kind is SourceKind.live:
        known = {f.name for f in fields(LiveOptions)}
        unknown = sorted(set(live_opts) - known)
        if unknown:
            raise TypeError(f"unknown live option(s) {unknown}; known: {sorted(known)}")
        options = LiveOptions(**live_opts)  # type: ignore[arg-type]
        return LiveSource(camera_id, source, cadence_s, start_wall=start_wall, max_side=max_side, options=options)
    path = Path(source.removeprefix("file://"))
    if kind is SourceKind.file:
        return FileSource(camera_id, path, cadence_s, start_wall=start_wall, max_side=max_side, start_s=start_s)
    media = list_media(path)
    if kind is SourceKind.stills:
        if not path.is_dir():
            raise SourceError(camera_id, source, "a stills source must be a folder of images")
        try:
            reading = read_stills([p for p in media if is_image(p)], time_from or TimeFrom.auto, pattern=pattern,
                                  interval_s=still_interval_s or cadence_s)
        except StillsTimeError as exc:
            raise SourceError(camera_id, source, str(exc)) from None
        if not reading.stills:
            raise SourceError(camera_id, source, f"cannot read the stills as one camera: {reading.why}")
        return StillsSource(camera_id, source, reading.stills, cadence_s, start_wall=start_wall, max_side=max_side,
                            reading=f"stills, times from {reading.reading} ({reading.why})")
    if not media:
        raise SourceError(camera_id, source, "the folder holds no video or image files")
    return RecordedSource(camera_id, source, media, cadence_s, start_wall=start_wall, max_side=max_side)


def grab_frame(camera_id: str, source: str, *, timeout_s: float = 10.0, max_side: int = 1280) -> Frame:
    """One current picture from a camera's source (a live camera: its newest frame; footage: its first),
    or SourceError saying why there is none within `timeout_s` (credentials never in the message)."""
    try:
        src = open_source(camera_id, source, 1.0, max_side=max_side, reconnect=False, open_timeout_s=timeout_s,
                          read_timeout_s=timeout_s, stall_timeout_s=timeout_s)
    except (OSError, ValueError) as exc:
        raise SourceError(redact_text(f"cannot open {source}: {exc}", source)) from None
    try:
        for frame in src.frames():
            return frame
    except SourceError as exc:
        raise SourceError(redact_text(str(exc), source)) from None
    finally:
        src.close()
    raise SourceError(f"{redact_url(source)} gave no picture")
