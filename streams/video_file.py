"""One recorded video file through PyAV: open it (or say in plain words why not) and sample it.

This is the only place recorded video is decoded. It decides keyframes-only vs decode-and-drop
from the keyframe spacing of the first packets, skips packets the decoder rejects, and notices
a file that ends before its stated duration (a recording cut off mid-write). Packets are regrouped
into whole pictures first (`access_units`): camera recordings may split a keyframe into one packet
per slice.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from citypatrol.streams.access_units import whole_pictures
from citypatrol.streams.sampling import CadenceGate, SamplingMode, choose_sampling, fit_size

log = logging.getLogger("citypatrol.streams")


class UnreadableFile(Exception):
    """The file cannot be opened as a video; the message says why in plain words."""


@dataclass(frozen=True, slots=True)
class SampledPicture:
    """One sampled picture of a file, at `pts` seconds from the file's start."""

    pts: float
    image: np.ndarray
    keyframe: bool


def explain_open_failure(path: Path, exc: BaseException) -> str:
    """Why `path` could not be opened, in words a camera operator understands."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder, not a video file"
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with path.open("rb") as f:
        head = f.read(4096)
    if head[4:8] == b"ftyp" and not _has_top_level_box(path, b"moov"):
        return (
            "the MP4/MOV file is incomplete: its index (moov box) is missing, as when a recording "
            "is cut off before it was finalised; re-export it or recover it with a repair tool"
        )
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "not a video: the file contains text"
    detail = getattr(exc, "strerror", None) or str(exc)
    return f"FFmpeg cannot read it as a video ({detail})"


def _has_top_level_box(path: Path, kind: bytes) -> bool:
    """Walk the top-level ISO-BMFF boxes looking for `kind` (cheap: reads 8-16 bytes per box)."""
    size = path.stat().st_size
    pos = 0
    with path.open("rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            hdr = f.read(16)
            box_size, box_type = int.from_bytes(hdr[:4], "big"), hdr[4:8]
            if box_type == kind:
                return True
            if box_size == 1 and len(hdr) >= 16:
                box_size = int.from_bytes(hdr[8:16], "big")
            elif box_size == 0:
                return False  # box runs to end of file
            if box_size < 8:
                return False
            pos += box_size
    return False


def _creation_time(container: av.container.InputContainer) -> datetime | None:
    tag = container.metadata.get("creation_time")
    if not tag:
        return None
    try:
        t = datetime.fromisoformat(tag.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.year < 1971:  # zeroed field (1904 for MP4, 1970 elsewhere): not a real time
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class VideoFile:
    """An opened video file. `sample()` yields its frames at the cadence, once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # metadata_errors="replace": a damaged tag (undecodable bytes) must not stop the footage
            self._container = av.open(str(path), metadata_errors="replace")
        except (av.error.FFmpegError, OSError) as exc:
            raise UnreadableFile(explain_open_failure(path, exc)) from None
        if not self._container.streams.video:
            self._container.close()
            raise UnreadableFile("has no video stream")
        if self._container.streams.video[0].codec_context is None:  # a damaged header names no known codec
            self._container.close()
            raise UnreadableFile("its video stream has no codec FFmpeg knows (damaged header?)")
        self._stream = self._container.streams.video[0]
        d = self._container.duration
        self.duration_s: float | None = d / 1_000_000 if d and d > 0 else None
        self.creation_time = _creation_time(self._container)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.frame_interval_s = float(1 / rate) if rate else 0.04
        self.mode: SamplingMode | None = None
        self.end_pts = 0.0  # end of the last decoded frame: where the next file of a folder starts

    def start_wall(self) -> datetime:
        """When the recording started: the container's creation_time, else mtime minus duration."""
        if self.creation_time is not None:
            return self.creation_time
        mtime = datetime.fromtimestamp(self.path.stat().st_mtime, tz=UTC)
        return mtime - timedelta(seconds=self.duration_s or 0.0)

    def close(self) -> None:
        self._container.close()

    def sample(
        self,
        gate: CadenceGate,
        *,
        offset: float = 0.0,
        start_s: float = 0.0,
        max_side: int | None = None,
        count: Callable[..., None],
        error: Callable[[str], object],
    ) -> Iterator[SampledPicture]:
        """Frames the gate lets through; `gate` sees `offset + pts`, the sample carries the file's pts.

        `start_s` > 0: begin there (the gate on the grid a whole-file pass would have), seeking to
        the keyframe before it instead of decoding everything up to it; a file that cannot seek is
        read from its start. `count(frames_decoded=…, corrupt_packets=…)` and `error(reason)`
        report to the source's stats.
        """
        stream = self._stream
        tb = stream.time_base or Fraction(1, 90000)
        cc = stream.codec_context
        packets = whole_pictures(self._container.demux(stream), cc)  # slices of one picture rejoined
        scanned, keyframes, scanned_until, t0, scan_error = self._scan(packets, tb, window_s=max(3 * gate.cadence_s, 4.0))
        self.mode = choose_sampling(keyframes, scanned_until, gate.cadence_s)
        log.debug("%s: %s (keyframes at %s)", self.path.name, self.mode, keyframes[:6])
        if start_s > 0:
            gate.start_at(offset + start_s)
            if start_s > scanned_until and scan_error is None and self._seek(start_s, tb, t0, cc):
                scanned, packets = [], whole_pictures(self._container.demux(stream), cc)
        keyframes_only = self.mode is SamplingMode.keyframes
        if keyframes_only:
            cc.skip_frame = "NONKEY"
        last = -self.frame_interval_s
        decoded = 0
        try:
            for packet in itertools.chain(scanned, packets):
                if keyframes_only and not packet.is_keyframe and packet.size:
                    continue
                for frame in self._decode(cc, packet, keyframes_only, count):
                    pts = float((frame.pts - t0) * tb) if frame.pts is not None else last + self.frame_interval_s
                    last = pts
                    decoded += 1
                    count(frames_decoded=1)
                    if not gate.take(offset + pts):
                        continue
                    w, h = fit_size(frame.width, frame.height, max_side)
                    image = frame.reformat(width=w, height=h, format="bgr24").to_ndarray()
                    yield SampledPicture(pts=pts, image=image, keyframe=bool(frame.key_frame))
            if scan_error is not None:
                raise scan_error
        except (av.error.FFmpegError, OSError) as exc:
            error(f"{self.path.name}: read error after {max(last, 0):.1f} s: {getattr(exc, 'strerror', None) or exc}")
        else:
            end = last + self.frame_interval_s
            if decoded and self.duration_s is not None and end < self.duration_s - max(1.0, 3 * self.frame_interval_s):
                error(
                    f"{self.path.name}: the file ends at {end:.1f} s of its {self.duration_s:.1f} s "
                    "(truncated or damaged); frames up to there were used"
                )
            elif not decoded:
                error(f"{self.path.name}: no frame could be decoded")
        self.end_pts = max(last + self.frame_interval_s, 0.0)

    def _seek(self, start_s: float, tb: Fraction, t0: int, cc: av.VideoCodecContext) -> bool:
        """Move the demuxer to the keyframe at or before `start_s` (file seconds); False if it cannot."""
        try:
            self._container.seek(t0 + int(start_s / tb), stream=self._stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, OSError) as exc:
            log.debug("%s: cannot seek to %.1f s (%s); reading from the start", self.path.name, start_s, exc)
            return False
        cc.flush_buffers()
        return True

    def _scan(
        self, packets: Iterator[av.Packet], tb: Fraction, window_s: float
    ) -> tuple[list[av.Packet], list[float], float, int, Exception | None]:
        """Demux (not decode) the first `window_s` seconds: the keyframe times choose the sampling mode.

        Returns the packets read (to be decoded next), keyframe times, how far the scan got, the
        stream's first timestamp, and the read error that stopped the scan, if any.
        """
        scanned: list[av.Packet] = []
        keyframes: list[float] = []
        t0: int | None = self._stream.start_time
        until = 0.0
        scan_error: Exception | None = None
        try:
            for packet in packets:
                scanned.append(packet)
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                if t0 is None:
                    t0 = ts
                t = float((ts - t0) * tb)
                until = max(until, t)
                if packet.is_keyframe:
                    keyframes.append(t)
                if until > window_s:
                    break
            else:
                until = max(until, self.duration_s or 0.0)  # the whole file was scanned
        except (av.error.FFmpegError, OSError) as exc:
            scan_error = exc  # reported after the packets read so far are decoded
        return scanned, keyframes, until, t0 or 0, scan_error

    @staticmethod
    def _decode(cc: av.VideoCodecContext, packet: av.Packet, drain: bool, count: Callable[..., None]) -> list[av.VideoFrame]:
        try:
            return decode_packet(cc, packet, drain=drain)
        except av.error.InvalidDataError:
            count(corrupt_packets=1)
            return []


def decode_packet(cc: av.VideoCodecContext, packet: av.Packet, *, drain: bool) -> list[av.VideoFrame]:
    """The frames one packet gives. `drain` (keyframes only): take each frame out at once, since with
    B-frames the decoder would hold each keyframe ~2 GOPs in its reorder buffer (NOTES). An empty
    packet (end of stream) drains what the decoder still holds. Raises av's InvalidDataError."""
    if packet.size == 0:
        return cc.decode(None)
    frames = cc.decode(packet)
    if drain:
        frames += cc.decode(None)
        cc.flush_buffers()
    return frames
