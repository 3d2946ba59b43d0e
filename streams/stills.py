"""A "camera" made of still images: time-lapse captures named by their timestamp or a sequence number.

Many city cameras (and datasets such as PKLot) deliver one picture every few minutes as JPEGs
named `2013-02-24_06_15_00….jpg`. The names carry the capture time, so stream time comes from
them: pts = seconds since the first still, wall = the capture time (read as UTC unless
`start_wall` is given). Names with only a sequence number are spaced `interval_s` apart.
`still_times` decides where the times come from (names, EXIF, modification times).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2

from citypatrol.streams.frame import Frame
from citypatrol.streams.sampling import CadenceGate, fit_size
from citypatrol.streams.source import Source, SourceError, SourceState
from citypatrol.streams.still_times import Still, parse_sequence_number, parse_still_time, stills_timeline

__all__ = ["Still", "StillsSource", "parse_sequence_number", "parse_still_time", "read_image", "stills_timeline"]


def read_image(path: Path, max_side: int | None):
    """BGR image scaled so its longer side is at most `max_side`; None if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    tw, th = fit_size(w, h, max_side)
    if (tw, th) != (w, h):
        image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
    return image


class StillsSource(Source):
    """Frames from a timeline of stills; stills closer than the cadence to the last one taken are skipped."""

    def __init__(
        self,
        camera_id: str,
        source: str,
        stills: Sequence[Still],
        cadence_s: float,
        *,
        start_wall: datetime | None = None,
        max_side: int | None = 1280,
        reading: str = "",
    ) -> None:
        super().__init__(camera_id, source)
        self.reading = reading
        if not stills:
            raise SourceError(camera_id, source, "no still images to read")
        self._stills = list(stills)
        self._gate = CadenceGate(cadence_s)
        self._max_side = max_side
        self._start_wall = start_wall
        self._closed = False

    def _wall(self, still: Still) -> datetime:
        if self._start_wall is not None:
            return self._start_wall + timedelta(seconds=still.pts)
        if still.taken is not None:
            return still.taken.replace(tzinfo=UTC)
        first = datetime.fromtimestamp(self._stills[0].path.stat().st_mtime, tz=UTC)
        return first + timedelta(seconds=still.pts)

    def frames(self) -> Iterator[Frame]:
        self._set(state=SourceState.running)
        good = 0
        for still in self._stills:
            if self._closed:
                return
            if not self._gate.take(still.pts):
                continue
            image = read_image(still.path, self._max_side)
            if image is None:
                self._error(f"{still.path.name}: cannot be read as an image (damaged or not a picture)")
                continue
            self._count(frames_decoded=1, frames_analysed=1)
            yield Frame(self.camera_id, still.pts, self._wall(still), image, keyframe=True, index=good)
            good += 1
        self._set(state=SourceState.finished if good else SourceState.failed)

    def close(self) -> None:
        self._closed = True
        super().close()
