"""Cameras feeding the shared detector: one feed per camera, one board of newest frames.

A `Feed` relays its source's frames (a `LiveSource` decodes on its own reader thread; recorded
footage is read here, played at real time or as fast as the detector takes it) onto the
`FrameBoard`, and keeps a small ring of recent frames for the evidence clip, JPEG-encoded: a
1280×720 frame is 2.6 MiB decoded and about 0.1–0.2 MiB as a JPEG, and the ring is read only when
a case opens, so each camera carries a fraction of a MiB instead of ten (the encoding runs on the
feed's own thread, a few milliseconds per sampled frame).

The `FrameBoard` holds at most one frame per camera, the newest: the detector loop takes the
cameras that have one, oldest waiting first, up to a batch. A frame replaced before the
detector took it is a skip, counted for its camera: live mode never queues the past.
Recorded footage played "as fast as possible" instead waits until its frame was taken, so
every sampled frame is analysed, as in a batch run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from math import ceil

import cv2
import numpy as np

from citypatrol.pipeline.sinks.recorder import ClipSource
from citypatrol.streams.frame import Frame
from citypatrol.streams.live import LiveSource
from citypatrol.streams.redact import redact_text
from citypatrol.streams.source import Source, SourceError, SourceStats

log = logging.getLogger("citypatrol.live")


@dataclass(frozen=True, slots=True)
class Arrival:
    """A frame on the board. `due` (epoch seconds) is when it happened: capture time for a live
    camera, the playback moment for recorded footage; lag behind live = now − due."""

    frame: Frame
    due: float
    posted: float  # monotonic time since which its camera has had a frame waiting (service order)


class FrameBoard:
    """The newest frame of each camera, waiting for the detector."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, Arrival] = {}
        self.skips: dict[str, int] = {}

    def put(self, arrival: Arrival, *, wait_taken: threading.Event | None = None) -> None:
        """Post a camera's frame, replacing (and counting as a skip) one not yet taken.

        `wait_taken`: wait instead until the previous frame was taken (no skips), giving up
        when that event is set (the feed is stopping).
        """
        cid = arrival.frame.camera_id
        with self._cond:
            if wait_taken is not None:
                while cid in self._slots and not wait_taken.is_set():
                    self._cond.wait(0.2)
            waiting = self._slots.get(cid)
            if waiting is not None:
                self.skips[cid] = self.skips.get(cid, 0) + 1
                # the camera keeps its place in line: a fast camera replacing its frame often
                # must not push itself behind the others for ever
                arrival = dataclasses.replace(arrival, posted=waiting.posted)
            self._slots[cid] = arrival
            self._cond.notify_all()

    def take(self, limit: int, timeout: float) -> list[Arrival]:
        """Up to `limit` frames of different cameras, the cameras waiting longest first; waits up to
        `timeout` for the first one. Returns [] when none came."""
        with self._cond:
            if not self._slots:
                self._cond.wait(timeout)
            ready = sorted(self._slots.values(), key=lambda a: a.posted)[:limit]
            for a in ready:
                del self._slots[a.frame.camera_id]
            if ready:
                self._cond.notify_all()  # a feed waiting for its slot to empty
            return ready

    def skips_of(self, camera_id: str) -> int:
        with self._cond:
            return self.skips.get(camera_id, 0)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class FrameRing:
    """The newest `size` frames, kept as JPEG (quality `QUALITY`); thread-safe."""

    QUALITY = 90

    def __init__(self, size: int) -> None:
        self._jpegs: deque[bytes] = deque(maxlen=max(size, 1))
        self._on = size > 0
        self._lock = threading.Lock()

    def append(self, image: np.ndarray) -> None:
        if not self._on:
            return
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.QUALITY])
        if ok:
            with self._lock:
                self._jpegs.append(jpeg.tobytes())

    def frames(self) -> list[np.ndarray]:
        """The kept frames, oldest first, decoded (BGR)."""
        with self._lock:
            jpegs = list(self._jpegs)
        return [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(len(j) for j in self._jpegs)


class Feed:
    """One camera's source relayed onto the board by a thread of its own."""

    def __init__(self, source: Source, board: FrameBoard, *, realtime: bool, clip_seconds: float, cadence_s: float) -> None:
        self.source = source
        self.camera_id = source.camera_id
        self.live = isinstance(source, LiveSource)
        self.realtime = realtime or self.live
        self.error = ""
        self.done = threading.Event()
        self._board = board
        self._stop = threading.Event()
        self.cadence_s = cadence_s
        self._ring = FrameRing(max(2, ceil(clip_seconds / cadence_s) + 1) if clip_seconds > 0 else 0)
        self._thread_cpu_s = 0.0
        self._thread = threading.Thread(target=self._run, name=f"feed-{self.camera_id}", daemon=True)

    def start(self) -> "Feed":
        self._thread.start()
        return self

    @property
    def stats(self) -> SourceStats:
        return self.source.stats

    @property
    def cpu_seconds(self) -> float:
        """CPU spent reading and decoding this camera so far: this feed's thread (recorded footage
        decodes here) plus a live source's own reader thread."""
        return self._thread_cpu_s + getattr(self.source, "decode_cpu_s", 0.0)

    def clip(self) -> ClipSource:
        """The recent frames (at the cadence) for a case's evidence clip; all of the newest frame's size."""
        frames = self._ring.frames()
        if frames:
            shape = frames[-1].shape
            frames = [f for f in frames if f.shape == shape]  # a reconnect may change the resolution
        return ClipSource(frames=frames, fps=1.0 / self.cadence_s)

    def close(self) -> None:
        """Stop relaying and close the source (a live one from here: that ends its blocking read)."""
        self._stop.set()
        self._board.wake()
        if self.live:
            self.source.close()
        self._thread.join(timeout=30)
        if not self.live:
            self.source.close()  # recorded footage is closed only once its reader thread is out

    def _run(self) -> None:
        t0: float | None = None  # real-time playback: monotonic time of the first frame, minus its pts
        try:
            for frame in self.source.frames():
                if self._stop.is_set():
                    break
                if self.live:
                    due = frame.wall.timestamp()
                elif self.realtime:
                    # paced on the monotonic clock: a step of the wall clock neither stalls nor rushes playback
                    t0 = time.monotonic() - frame.pts if t0 is None else t0
                    if self._stop.wait(max(0.0, t0 + frame.pts - time.monotonic())):
                        break
                    due = time.time()  # its playback moment is now
                else:
                    due = time.time()
                self._ring.append(frame.image)
                self._thread_cpu_s = time.thread_time()
                self._board.put(Arrival(frame, due, time.monotonic()), wait_taken=None if self.realtime else self._stop)
        except SourceError as exc:
            self.error = str(exc)  # already redacted by the source
            log.error("%s", exc)
        except Exception as exc:  # one failing camera never stops the others
            self.error = redact_text(f"{type(exc).__name__}: {exc}", self.source.source)
            log.error("camera %s: feed stopped: %s", self.camera_id, self.error)
        finally:
            self.done.set()
            self._board.wake()
