"""`citypatrol worker`: analyse the cameras (and footage segments) this process holds, publish events.

Reads top to bottom: connect to Redis and start the link thread (`distributed/link.py`: leases,
balancing, segment tasks, publishing); then loop like the live runner (`live/runner.py`): act on the
link's orders (open a claimed camera, close a released or lost one, open a segment), take the
newest frame of each camera from the board (segments wait their turn instead: every sampled
frame of a recording is analysed), detect in one batch, run tracking and rules (`Analyzer`,
without case building: casekeepers build cases), and hand each frame's events to the link.

Stream time: a camera claimed with a clock (its previous owner's last pts and wall time)
continues it: the first frame's pts is set to where that clock would be at the frame's wall
time (`continued_pts`), and the camera's frames keep that offset. Each analysed frame's (pts,
wall) goes back to the link, which stores it with the lease at every heartbeat.

Evidence: the first event of a sighting this worker has not reported before gets the frame, as
a JPEG (longer side `evidence_max_side`) kept in Redis for `evidence_ttl_s` beside the
message; refreshes of known sightings carry none.

Stopping (SIGTERM/SIGINT): stop claiming, close the cameras, publish what is queued and release
each camera's lease with its clock (another worker takes it at once instead of after the lease
time), leave the membership. Segments in hand are left pending; another worker takes them over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.engine import make_url

from citypatrol.annotate.evidence import clip_bytes_from_file, clip_bytes_from_frames
from citypatrol.models.detector import MultiDetector
from citypatrol.pipeline.analyzer import Analyzer
from citypatrol.pipeline.detection.schedule import DetectionSchedule
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.distributed.protocol import CostMeter, FrameMessage, SegmentResult, TickGate, clip_key, continued_pts
from citypatrol.pipeline.distributed.link import StartCamera, StartSegment, StopCamera, WorkerLink
from citypatrol.pipeline.distributed.redis_client import Clock, connect, redact_redis_url
from citypatrol.pipeline.distributed.segments import SegmentSource, SegmentTask, segment_camera
from citypatrol.pipeline.live.feeds import Feed, FrameBoard
from citypatrol.pipeline.live.zones import SavedZones
from citypatrol.pipeline.store.engine import create_store_engine
from citypatrol.streams.frame import Frame
from citypatrol.streams.open import open_source
from citypatrol.streams.redact import redact_url
from citypatrol.streams.sampling import fit_size
from citypatrol.streams.source import SourceError

log = logging.getLogger("citypatrol.worker")

SENT_MEMORY = 2000  # event ids remembered per camera (to send a frame only with a new sighting)
COST_WINDOW_S = 10.0  # seconds between measurements of what each camera costs


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class _CameraRoute:
    camera: Camera
    feed: Feed
    clock: Clock | None
    cost: CostMeter
    offset: float | None = None  # added to the source's pts (stream time continued across owners)


@dataclass
class _SegmentRoute:
    task: SegmentTask
    entry_id: str
    camera: Camera
    analyzer: Analyzer
    feed: Feed | None
    source: SegmentSource | None
    ticks: TickGate
    frames: list[FrameMessage] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)
    analysed: int = 0
    error: str = ""


@dataclass
class WorkerResult:
    frames_analysed: int
    messages: int
    segments: int
    errors: int


class Worker:
    def __init__(self, config: Config, detector: MultiDetector, *, worker_id: str | None = None,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.d = config.distributed
        self.detector = detector
        self.worker_id = worker_id or default_worker_id()
        self.stop = stop or threading.Event()
        self.cameras = [c for c in config.cameras if c.enabled]
        self.analyzer = Analyzer(config, detector.classes, build_cases=False)
        self.schedule = DetectionSchedule(detector, config)  # each model at the cadence its rules need
        self.board = FrameBoard()
        self.routes: dict[str, _CameraRoute | _SegmentRoute] = {}
        self.ticks = TickGate(self.d.tick_s)
        self._sent: dict[str, OrderedDict[str, None]] = {}
        self._closer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="close")
        self.frames_analysed = self.messages = self.segments = self.errors = 0
        self.detect_calls, self.detect_seconds = 0, 0.0
        self._next_cost = 0.0
        self.saved_zones = _saved_zones(config)

    def run(self) -> WorkerResult:
        log.info("worker %s: %d camera(s) configured, Redis %s", self.worker_id, len(self.cameras), redact_redis_url(self.d.redis_url))
        for rule in self.analyzer.rules:
            log.info("rule %s: active", rule.name)
        for _, reason in self.analyzer.disabled:  # a rule whose classes no configured model serves is off: say so
            log.warning("rule off: %s", reason)
        link = WorkerLink(connect(self.d.redis_url), self.d, self.worker_id, self.cameras)
        self.link = link
        link.start()
        batch_size = max(d.batch for d in self.config.models.detectors)
        try:
            while not self.stop.is_set():
                self._orders()
                taken = [a for a in self.board.take(batch_size, timeout=0.25) if a.frame.camera_id in self.routes]
                if taken:
                    self._analyse(taken)
                self._finish_segments()
                self._measure_costs()
                self._poll_zones()
        finally:
            self._shutdown()
        return WorkerResult(self.frames_analysed, self.messages, self.segments, self.errors)

    def camera_feeds(self) -> list[tuple[str, Feed]]:
        """(camera id, feed) of the cameras held now (footage segments left out); any thread."""
        return [(cid, r.feed) for cid, r in list(self.routes.items()) if isinstance(r, _CameraRoute)]

    # -- orders from the link ------------------------------------------------------------------------

    def _orders(self) -> None:
        while True:
            try:
                order = self.link.orders.get_nowait()
            except queue.Empty:
                return
            if isinstance(order, StartCamera):
                self._start_camera(order.camera, order.clock)
            elif isinstance(order, StopCamera):
                self._stop_camera(order.camera_id, release=not order.lost)
            elif isinstance(order, StartSegment):
                self._start_segment(order.task, order.entry_id)

    def _start_camera(self, cam: Camera, clock: Clock | None) -> None:
        live = self.config.live
        if self.saved_zones is not None:
            cam = self.saved_zones.apply([cam])[0]  # zones drawn in the review center replace the config's
        self.analyzer.add_camera(cam)  # a fresh tracker: dwell is measured again by this worker
        self.schedule.forget(cam.id)
        self.schedule.set_camera(cam)
        self.ticks.forget(cam.id)
        try:
            source = open_source(cam.id, cam.source, cam.cadence_s, start_wall=_start_wall(cam), **cam.stills_args(),
                                 open_timeout_s=live.open_timeout_s,
                                 read_timeout_s=live.read_timeout_s, backoff_max_s=live.backoff_max_s)  # fmt: skip
        except (SourceError, OSError, ValueError) as exc:
            log.error("%s", exc)  # held all the same: its lease says who is responsible for it
            return
        log.info("camera %s: %s every %g s", cam.id, redact_url(cam.source), cam.cadence_s)
        feed = Feed(source, self.board, realtime=True, clip_seconds=self.config.storage.clip_seconds, cadence_s=cam.cadence_s).start()
        self.routes[cam.id] = _CameraRoute(cam, feed, clock, CostMeter(started=time.monotonic()))

    def _stop_camera(self, camera_id: str, *, release: bool) -> None:
        route = self.routes.pop(camera_id, None)

        def close() -> None:
            if isinstance(route, _CameraRoute):
                route.feed.close()
            if release:
                self.link.camera_closed(camera_id)

        self._closer.submit(close)

    def _start_segment(self, task: SegmentTask, entry_id: str) -> None:
        cam = segment_camera(self.config, task)
        if self.saved_zones is not None:
            cam = self.saved_zones.apply([cam])[0]
        board_id = f"segment:{task.job}:{task.camera_id}:{task.index}"
        analyzer = Analyzer(self.config, self.detector.classes, build_cases=False)
        analyzer.add_camera(cam)
        self.schedule.set_camera(cam, as_id=board_id)
        route = _SegmentRoute(task, entry_id, cam, analyzer, None, None, TickGate(self.d.tick_s))
        try:
            inner = open_source(board_id, task.file, cam.cadence_s, start_wall=_start_wall(cam), start_s=task.warmup)
        except (SourceError, OSError, ValueError) as exc:
            route.error = str(exc)
            log.error("segment %d of %s: %s", task.index, task.camera_id, exc)
        else:
            route.source = SegmentSource(inner, task, board_id)
            route.feed = Feed(route.source, self.board, realtime=False, clip_seconds=0, cadence_s=cam.cadence_s).start()
        self.routes[board_id] = route

    # -- the detector loop ----------------------------------------------------------------------------

    def _poll_zones(self) -> None:
        """Zones saved in the review center since the cameras started: from the next frame on."""
        if self.saved_zones is None or not self.saved_zones.due():
            return
        held = [r.camera for r in self.routes.values() if isinstance(r, _CameraRoute)]
        for cam in self.saved_zones.changed(held):
            self.analyzer.set_camera(cam)
            self.schedule.set_camera(cam)
            self.routes[cam.id].camera = cam

    def _measure_costs(self) -> None:
        """Every COST_WINDOW_S: what each held camera costs, for the link to publish and balance by.

        The window spans many analysed frames, so a window without one (cadence longer than a
        heartbeat) does not read as a camera that costs nothing."""
        now = time.monotonic()
        if now < self._next_cost:
            return
        self._next_cost = now + max(COST_WINDOW_S, 2 * self.d.heartbeat_ms / 1000)
        for cam_id, route in self.routes.items():
            if isinstance(route, _CameraRoute):
                cores = route.cost.sample(route.feed.cpu_seconds, now)
                if cores is not None:
                    self.link.note_cost(cam_id, cores)

    def _analyse(self, taken: Sequence) -> None:
        t = time.perf_counter()
        try:
            detections = self.schedule.detect([a.frame for a in taken])
        except Exception as exc:  # a failed call loses this batch, not the worker
            self.errors += 1
            log.error("detector failed on a batch of %d: %s", len(taken), exc)
            for a in taken:
                route = self.routes.get(a.frame.camera_id)
                if isinstance(route, _SegmentRoute):
                    route.analysed += 1  # counted, so the segment still completes
            return
        took = time.perf_counter() - t
        self.detect_calls, self.detect_seconds = self.detect_calls + 1, self.detect_seconds + took
        share = took / len(taken)  # each frame's part of the batch
        for arrival, dets in zip(taken, detections):
            route = self.routes.get(arrival.frame.camera_id)
            t = time.perf_counter()
            try:
                if isinstance(route, _CameraRoute):
                    self._camera_frame(route, arrival.frame, dets)
                    route.cost.add_work(share + time.perf_counter() - t)
                elif isinstance(route, _SegmentRoute):
                    self._segment_frame(route, arrival.frame, dets)
                self.frames_analysed += 1
            except Exception as exc:
                self.errors += 1
                log.exception("camera %s: frame at %.1f s not analysed: %s", arrival.frame.camera_id, arrival.frame.pts, exc)

    def _camera_frame(self, route: _CameraRoute, frame: Frame, dets) -> None:
        if route.offset is None:
            cont = route.clock and continued_pts(route.clock.pts, route.clock.wall, frame.wall)
            route.offset = (cont - frame.pts) if cont is not None else 0.0
        frame = dataclasses.replace(frame, pts=frame.pts + route.offset)
        result = self.analyzer.process(frame, dets)
        cam = route.camera.id
        self.link.note_clock(cam, Clock(frame.pts, frame.wall))
        if not self.ticks.due(cam, frame.pts, bool(result.events)):
            return
        message, image = self._message(frame, result.events)
        clip = None
        if image is not None and self.config.storage.clip_seconds > 0:
            ring = route.feed.clip()
            clip = self._clip(cam, lambda: clip_bytes_from_frames(ring.frames, ring.fps) if len(ring.frames) >= 2 else None)
        self.link.publish(message, image, clip)
        self.messages += 1

    def _segment_frame(self, route: _SegmentRoute, frame: Frame, dets) -> None:
        route.analysed += 1
        frame = dataclasses.replace(frame, camera_id=route.camera.id)
        result = route.analyzer.process(frame, dets)
        if frame.pts < route.task.start - 1e-6:
            return  # warm-up: the previous segment reports this stretch
        if not route.ticks.due(frame.camera_id, frame.pts, bool(result.events)):
            return
        message, image = self._message(frame, result.events)
        route.frames.append(message)
        if image is not None and message.image_key:
            route.images.append((message.image_key, image))
            seconds = self.config.storage.clip_seconds
            if seconds > 0:
                start = max(0.0, frame.pts - seconds * 2 / 3)  # as a single machine cuts a recorded file's clip
                clip = self._clip(frame.camera_id, lambda: clip_bytes_from_file(route.task.file, start, start + seconds))
                if clip is not None:
                    route.images.append((clip_key(message.image_key), clip))

    def _message(self, frame: Frame, events) -> tuple[FrameMessage, bytes | None]:
        image = key = None
        if events and self._new_sighting(frame.camera_id, [e.event_id for e in events]):
            image = self._jpeg(frame.image)
            key = f"{self.d.prefix}:img:{frame.camera_id}:{uuid.uuid4().hex[:16]}"
        return FrameMessage(frame.camera_id, frame.pts, frame.wall, self.worker_id, tuple(events), key), image

    @staticmethod
    def _clip(camera_id: str, encode: Callable[[], bytes | None]) -> bytes | None:
        """The evidence clip of a new sighting; a failure costs the clip, never the event."""
        try:
            return encode()
        except Exception as exc:
            log.warning("camera %s: no evidence clip: %s", camera_id, exc)
            return None

    def _new_sighting(self, camera_id: str, event_ids: list[str]) -> bool:
        sent = self._sent.setdefault(camera_id, OrderedDict())
        new = False
        for eid in event_ids:
            if eid not in sent:
                new = True
                sent[eid] = None
                if len(sent) > SENT_MEMORY:
                    sent.popitem(last=False)
        return new

    def _jpeg(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        nw, nh = fit_size(w, h, self.d.evidence_max_side)
        if (nw, nh) != (w, h):
            image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.d.evidence_jpeg_quality])
        if not ok:
            raise ValueError("the frame could not be encoded as JPEG")
        return buf.tobytes()

    def _finish_segments(self) -> None:
        for board_id, route in list(self.routes.items()):
            if not isinstance(route, _SegmentRoute):
                continue
            if route.feed is not None:
                if not route.feed.done.is_set() or route.analysed < route.source.yielded:
                    continue
                route.error = route.error or route.feed.error
                self._closer.submit(route.feed.close)
            del self.routes[board_id]
            self.schedule.forget(board_id)
            t = route.task
            result = SegmentResult(t.job, t.camera_id, t.index, t.count, self.worker_id, tuple(route.frames), route.error,
                                   route.camera.site, route.camera.name)  # fmt: skip
            log.info("segment %d/%d of %s done: %d frame(s), %d message(s)%s", t.index + 1, t.count, t.camera_id, route.analysed,
                     len(route.frames), f", error: {route.error}" if route.error else "")  # fmt: skip
            self.link.segment_done(route.entry_id, result, route.images)
            self.segments += 1

    def _shutdown(self) -> None:
        link = self.link
        link.draining.set()  # no more claims
        for cam in link.held_cameras():
            self._stop_camera(cam, release=True)  # closed, then released with its clock
        for board_id, route in list(self.routes.items()):
            if isinstance(route, _SegmentRoute):
                if route.feed is not None:
                    self._closer.submit(route.feed.close)
                del self.routes[board_id]  # left pending: another worker takes the task over
        self._closer.shutdown(wait=True)
        deadline = time.monotonic() + max(5.0, 2 * self.d.lease_ms / 1000)
        while time.monotonic() < deadline and not link.drained():
            time.sleep(0.1)
        link.stop()
        link.join(timeout=10)
        st = link.stats
        log.info("worker %s stopped: %d frame(s) analysed, %d message(s) published, %d segment(s), %d dropped, %d lost",
                 self.worker_id, self.frames_analysed, st.published, st.segments_done, st.dropped, st.lost)  # fmt: skip


def _saved_zones(config: Config) -> SavedZones | None:
    """Where the review center's zones can be read from, if anywhere (the store, read only)."""
    if not config.distributed.saved_zones:
        return None
    url = make_url(config.storage.database_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).expanduser().is_file()):
        log.info("no shared database (%s not found): the cameras use the config's zones", url.database or "in-memory SQLite")
        return None
    return SavedZones(create_store_engine(config.storage.database_url), config)


def _start_wall(camera: Camera) -> datetime | None:
    return datetime.fromisoformat(camera.start_time) if camera.start_time else None
