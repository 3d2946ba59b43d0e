"""A live camera (RTSP and other network URLs): a reader thread, reconnects, and newest-frame-wins.

State machine: opening → running ⇄ offline (lost, retrying with backoff) → failed (gave up) or
closed. The reader thread decodes continuously and keeps only the newest sampled frame (a
buffer of one): a slow consumer gets the present, never a queue of the past, and each frame
it missed is counted in `skipped_stale`. Packets are regrouped into whole pictures before decoding
(`access_units`): many cameras send a keyframe as one packet per slice.

Stream time: `pts` = seconds since the source was opened (see `live_clock`): the stream's own
timestamps within a connection, re-anchored on the elapsed time at each reconnection.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import av
import av.error

from citypatrol.streams.access_units import whole_pictures
from citypatrol.streams.backoff import Backoff
from citypatrol.streams.video_file import decode_packet
from citypatrol.streams.frame import Frame
from citypatrol.streams.live_clock import LiveClock
from citypatrol.streams.sampling import CadenceGate, SamplingMode, choose_sampling, fit_size
from citypatrol.streams.source import Source, SourceError, SourceState, log


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How a live source connects and recovers."""

    reconnect: bool = True  # False: the first failure raises SourceError (open) or ends frames() with it
    max_retries: int | None = None  # consecutive failed attempts after the first before giving up; None = never
    open_timeout_s: float = 10.0  # connect + RTSP handshake
    read_timeout_s: float = 5.0  # no data at all for this long → reconnect
    stall_timeout_s: float = 10.0  # data but no decoded picture for this long → reconnect
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    transport: str = "tcp"  # RTSP over TCP: no UDP loss and passes NAT/firewalls


class _Stalled(Exception):
    pass


class _Newest:
    """A buffer of one frame: put() replaces what the consumer has not taken yet."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None

    def put(self, frame: Frame) -> bool:
        """Store `frame`; True if it replaced one that was never taken."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def explain_live_failure(exc: BaseException, elapsed_s: float, timeout_s: float) -> str:
    """Plain words for why a connection attempt failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing is serving at this address"
    if isinstance(exc, av.error.HTTPUnauthorizedError) or "401" in str(exc):
        return "the camera refused the credentials (401 Unauthorized): check user and password"
    if isinstance(exc, av.error.HTTPNotFoundError) or "404" in str(exc):
        return "the server has no stream at this path (404 Not Found)"
    if isinstance(exc, (TimeoutError, av.error.ExitError)) or elapsed_s >= 0.9 * timeout_s:
        return f"no answer within {timeout_s:g} s (camera offline or unreachable)"
    detail = getattr(exc, "strerror", None) or str(exc)
    return f"cannot open the stream ({detail})"


class LiveSource(Source):
    """Frames of a live URL at the cadence, from a reader thread, newest frame wins."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        cadence_s: float,
        *,
        start_wall: datetime | None = None,
        max_side: int | None = 1280,
        options: LiveOptions = LiveOptions(),
    ) -> None:
        super().__init__(camera_id, url)
        self._cadence_s = cadence_s
        self._max_side = max_side
        self._opt = options
        self._t_open = time.monotonic()
        self._wall_open = start_wall or datetime.now(UTC)
        self._newest = _Newest()
        self._stop = threading.Event()
        self._clock = LiveClock()
        self._gate = CadenceGate(cadence_s)  # one cadence grid across reconnections
        first = None
        if not options.reconnect:
            first = self._connect()  # a dead URL fails here, within the open timeout
        self.decode_cpu_s = 0.0
        self._thread = threading.Thread(target=self._run, args=(first,), name=f"live-{camera_id}", daemon=True)
        self._thread.start()

    # -- consumer side ----------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        """The newest sampled frame each time the caller asks; blocks while the camera is offline.

        Raises SourceError once the source gives up (reconnect off, or max_retries exhausted).
        """
        while True:
            frame = self._newest.take(timeout=0.5)
            if frame is not None:
                index = self.stats.frames_analysed
                self._count(frames_analysed=1)
                yield dataclasses.replace(frame, index=index)
                continue
            st = self.stats
            if st.state is SourceState.closed:
                return
            if st.state is SourceState.failed:
                raise SourceError(self.camera_id, self.source, st.last_error or "stream lost")

    def close(self) -> None:
        self._stop.set()
        super().close()
        self._newest.wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._opt.read_timeout_s + 1.0)

    # -- reader thread ----------------------------------------------------------------------
    def _connect(self) -> av.container.InputContainer:
        opt = self._opt
        options: dict[str, str] = {}
        if self.source.lower().startswith(("rtsp://", "rtsps://")):
            # FFmpeg's socket I/O timeout for RTSP, in microseconds ("stimeout" before FFmpeg 5).
            options = {"rtsp_transport": opt.transport, "timeout": str(int(opt.read_timeout_s * 1e6))}
        t = time.monotonic()
        try:
            container = av.open(self.source, options=options, timeout=(opt.open_timeout_s, opt.read_timeout_s),
                                metadata_errors="replace")  # a camera's garbled tags must not kill the reader
        except (av.error.FFmpegError, OSError) as exc:
            reason = explain_live_failure(exc, time.monotonic() - t, opt.open_timeout_s)
            raise self._fail_or_note(reason) from None
        if not container.streams.video:
            container.close()
            raise self._fail_or_note("the stream has no video")
        if container.streams.video[0].codec_context is None:
            container.close()
            raise self._fail_or_note("the stream's video has no codec FFmpeg knows")
        return container

    def _fail_or_note(self, reason: str) -> SourceError:
        """Record a failed attempt; the reader decides whether it is final."""
        self._error(reason)
        return SourceError(self.camera_id, self.source, reason)

    def _run(self, container: av.container.InputContainer | None) -> None:
        failures = 0  # consecutive attempts that gave no frame
        attempts = 1 if container is not None else 0
        while not self._stop.is_set():
            if container is None:
                if attempts:
                    self._count(reconnects=1)
                attempts += 1
                try:
                    container = self._connect()
                except SourceError:
                    failures += 1
                    if self._give_up(failures):
                        return
                    continue
            frames_before = self.stats.frames_decoded
            try:
                self._read(container)
                reason = "the stream ended"
            except _Stalled:
                reason = f"stalled: no picture for {self._opt.stall_timeout_s:g} s"
            except (av.error.FFmpegError, OSError) as exc:
                reason = f"connection lost ({getattr(exc, 'strerror', None) or exc})"
            finally:
                container.close()
                container = None
            if self._stop.is_set():
                return
            self._error(reason)
            failures = 0 if self.stats.frames_decoded > frames_before else failures + 1
            if self._give_up(failures):
                return

    def _give_up(self, failures: int) -> bool:
        """After a failed or lost connection: True to stop for good, else wait the backoff."""
        opt = self._opt
        if not opt.reconnect or (opt.max_retries is not None and failures > opt.max_retries):
            self._set(state=SourceState.failed)
            self._newest.wake()
            log.error("camera %s: %s: giving up: %s", self.camera_id, self.redacted, self.stats.last_error)
            return True
        self._set(state=SourceState.offline)
        delay = Backoff(opt.backoff_initial_s, opt.backoff_max_s).delay(failures)
        log.info("camera %s: %s: offline, reconnecting in %.1f s", self.camera_id, self.redacted, delay)
        self._stop.wait(delay)
        return self._stop.is_set()

    def _read(self, container: av.container.InputContainer) -> None:
        """Decode until the stream ends, fails or stalls, publishing sampled frames."""
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        cc = stream.codec_context
        window_s = max(3 * self._cadence_s, 4.0)
        mode, keyframes, first_t = None, [], None
        # While the keyframe spacing is watched, only keyframes are decoded: a worker restarting
        # hundreds of cameras must not decode every frame of all of them at once. A camera whose
        # keyframes turn out rarer than the cadence decodes everything from its next keyframe on.
        cc.skip_frame = "NONKEY"
        awaiting_key = False
        self._clock.new_connection()
        progress = time.monotonic()
        self._set(state=SourceState.running)
        # One packet per picture: a keyframe split into slice packets is decoded whole.
        for packet in whole_pictures(container.demux(stream), cc):
            if self._stop.is_set():
                return
            now = time.monotonic()
            # Keyframes-only waits a whole GOP between pictures (at most the cadence) by design; so
            # does the watch, for at most its window.
            stall_s = max(self._opt.stall_timeout_s, 2 * self._cadence_s if mode is SamplingMode.keyframes else 0,
                          window_s if mode is None else 0)
            if now - progress > stall_s:
                raise _Stalled
            ts = packet.pts if packet.pts is not None else packet.dts
            if mode is None and ts is not None:
                t = float(ts * tb)
                first_t = t if first_t is None else first_t
                if packet.is_keyframe:
                    keyframes.append(t - first_t)
                if t - first_t > window_s:
                    mode = choose_sampling(keyframes, t - first_t, self._cadence_s)
                    log.debug("camera %s: sampling %s", self.camera_id, mode)
                    if mode is SamplingMode.decode_all:
                        cc.skip_frame = "DEFAULT"
                        awaiting_key = True  # the pictures before the next keyframe lack their references
            if awaiting_key and packet.is_keyframe:
                awaiting_key = False
            keyframes_only = mode is not SamplingMode.decode_all
            if (keyframes_only or awaiting_key) and not packet.is_keyframe:
                continue
            for frame in self._decode(cc, packet, keyframes_only):
                progress = now
                self._count(frames_decoded=1)
                self.decode_cpu_s = time.thread_time()  # this reader thread's CPU: what the camera costs to decode
                t = float(frame.pts * tb) if frame.pts is not None else None
                pts = self._clock.pts(t, time.monotonic() - self._t_open)
                if not self._gate.take(pts):
                    continue
                w, h = fit_size(frame.width, frame.height, self._max_side)
                image = frame.reformat(width=w, height=h, format="bgr24").to_ndarray()
                wall = self._wall_open + timedelta(seconds=pts)
                out = Frame(self.camera_id, pts, wall, image, keyframe=bool(frame.key_frame))
                if self._newest.put(out):
                    self._count(skipped_stale=1)

    def _decode(self, cc: av.VideoCodecContext, packet: av.Packet, drain: bool) -> list[av.VideoFrame]:
        try:
            return decode_packet(cc, packet, drain=drain)
        except av.error.InvalidDataError:
            self._count(corrupt_packets=1)
            return []
