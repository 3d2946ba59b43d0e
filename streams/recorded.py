"""Recorded footage as one camera: a single video file, or a folder of files played in name order.

Stream time continues across the files of a folder (file 2 starts where file 1 ended), so dwell
measured across a file boundary is right. A file that cannot be read is reported in the stats
and the log with the reason, and the others go on; a single file that cannot be opened raises
`SourceError` at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citypatrol.streams.frame import Frame
from citypatrol.streams.media import is_image
from citypatrol.streams.sampling import CadenceGate
from citypatrol.streams.source import Source, SourceState
from citypatrol.streams.stills import parse_still_time, read_image
from citypatrol.streams.video_file import UnreadableFile, VideoFile


class RecordedSource(Source):
    """Frames of `files` (videos and single stills) at the cadence, `pts` continuing across files.

    `wall` = `start_wall` + pts if given; otherwise each file's own recording start (creation_time
    tag, else mtime minus duration) plus its pts. `start_s` (a single video file only): begin
    that far in, seeking rather than decoding the footage before it.
    """

    def __init__(
        self,
        camera_id: str,
        source: str,
        files: Sequence[Path],
        cadence_s: float,
        *,
        start_wall: datetime | None = None,
        max_side: int | None = 1280,
        start_s: float = 0.0,
    ) -> None:
        super().__init__(camera_id, source)
        if start_s > 0 and len(files) != 1:
            raise ValueError("start_s is for a single video file")
        self._start_s = start_s
        self._files = list(files)
        self._cadence_s = cadence_s
        self._start_wall = start_wall
        self._max_side = max_side
        self._opened: dict[Path, VideoFile] = {}
        self._closed = False
        self._iterated = False

    def frames(self) -> Iterator[Frame]:
        if self._iterated:
            raise RuntimeError(f"{self!r}: frames() can be iterated once")
        self._iterated = True
        self._set(state=SourceState.running)
        gate = CadenceGate(self._cadence_s)
        offset = 0.0
        for path in self._files:
            if self._closed:
                return
            if is_image(path):
                yield from self._still(path, offset, gate)
                offset += self._cadence_s  # a lone still stands for one cadence of footage
                continue
            try:
                video = self._opened.pop(path, None) or VideoFile(path)
            except UnreadableFile as exc:
                self._error(f"{path}: {exc}")
                continue
            try:
                wall0 = self._start_wall + timedelta(seconds=offset) if self._start_wall else video.start_wall()
                samples = video.sample(gate, offset=offset, start_s=self._start_s, max_side=self._max_side, count=self._count, error=self._error)
                for s in samples:
                    if self._closed:
                        return
                    yield self._emit(offset + s.pts, wall0 + timedelta(seconds=s.pts), s.image, s.keyframe)
                offset += video.end_pts
            finally:
                video.close()
        st = self.stats
        self._set(state=SourceState.failed if st.frames_analysed == 0 and st.last_error else SourceState.finished)

    def _still(self, path: Path, offset: float, gate: CadenceGate) -> Iterator[Frame]:
        if not gate.take(offset):
            return
        image = read_image(path, self._max_side)
        if image is None:
            self._error(f"{path}: cannot be read as an image (damaged or not a picture)")
            return
        self._count(frames_decoded=1)
        taken = parse_still_time(path.name)
        if self._start_wall is not None:
            wall = self._start_wall + timedelta(seconds=offset)
        elif taken is not None:
            wall = taken.replace(tzinfo=UTC)
        else:
            wall = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        yield self._emit(offset, wall, image, True)

    def _emit(self, pts: float, wall: datetime, image, keyframe: bool) -> Frame:
        index = self.stats.frames_analysed
        self._count(frames_analysed=1)
        return Frame(self.camera_id, pts, wall, image, keyframe=keyframe, index=index)

    def close(self) -> None:
        self._closed = True
        for video in self._opened.values():
            video.close()
        self._opened.clear()
        super().close()


class FileSource(RecordedSource):
    """One video file. Opens it at once: a file that cannot be opened raises `SourceError` saying why."""

    def __init__(self, camera_id: str, path: str | Path, cadence_s: float, **kwargs) -> None:
        path = Path(path)
        super().__init__(camera_id, str(path), [path], cadence_s, **kwargs)
        if is_image(path):
            return
        try:
            self._opened[path] = VideoFile(path)
        except UnreadableFile as exc:
            raise self._fail(f"cannot open this video: {exc}") from None
