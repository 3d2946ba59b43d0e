"""Cheap facts about a recording without decoding it (for progress bars and clip spans)."""

from __future__ import annotations

from pathlib import Path

import av

from citypatrol.streams.media import is_video, list_media


def duration_s(path: str | Path) -> float | None:
    """Seconds of footage in a file, or the sum over a folder's videos; None if unknown/unreadable."""
    p = Path(path)
    if p.is_dir():
        parts = [duration_s(f) for f in list_media(p) if is_video(f)]
        known = [d for d in parts if d]
        return sum(known) if known else None
    try:
        with av.open(str(p), metadata_errors="replace") as container:
            if container.duration and container.duration > 0:
                return container.duration / 1_000_000
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    return None
