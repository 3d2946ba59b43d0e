"""The live runner (`citypatrol run`): cameras → one shared batched detector → cases, until stopped.

Reads top to bottom: open the store, the analyzer and the case recorder; start a feed per camera
(an RTSP camera decodes on its `LiveSource` reader thread; recorded footage is played at real
time, or as fast as the detector goes with `live.realtime: false`); serve `/metrics` and write
the status file. Then loop: take the newest frame of every camera that has one (those waiting
longest first, at most one detector batch), detect, analyse, record the case changes (a live
case's clip comes from its camera's ring of recent frames), count. Newest wins: a camera whose
frame was replaced before the detector took it counts a skip; nothing queues up behind a slow
detector.

Stopping (SIGTERM/SIGINT through `stop_on_signals`, or the caller's `stop` event): take no new
frames, finish the batch in hand, close the sources, flush the recorder (every opened case gets
its evidence; store writes are one transaction per change, so no case is half-written), close
the endpoint and the store, and write the status file a last time ("stopped"). With only
recorded cameras the run also ends when all footage has been read.

Camera health plugs in as a `LiveHook` (see `_health_hooks`): asked before each frame is
detected (a moved or frozen camera's frames are withheld from the rules), told each analysed
frame's result and each status snapshot.

Zones drawn in the review center replace the config's at start and whenever a new version is
saved (`live_zones.SavedZones`, checked every `live.zones_poll_s`).

`citypatrol run` starts the review center and the dispatcher beside this loop (`live_services`).
Not here yet: restoring the open cases of a previous run (`CaseBuilder.restore` assumes each camera's stream time continues, while a
new live source starts its `pts` at 0).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from citypatrol.models.detector import MultiDetector
from citypatrol.pipeline.analyzer import Analyzer, FrameResult
from citypatrol.pipeline.cases.builder import ChangeKind
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.live.feeds import Feed, FrameBoard
from citypatrol.pipeline.live.metrics import serve_metrics
from citypatrol.pipeline.sinks.second_stage import Check
from citypatrol.pipeline.live.status import LiveStatus, StatusBook, write_status
from citypatrol.pipeline.live.zones import SavedZones
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.detection.schedule import DetectionSchedule
from citypatrol.pipeline.health.live import live_hook as health_live_hook
from citypatrol.pipeline.sinks.recorder import CaseRecorder
from citypatrol.pipeline.store.case_store import Store, open_store
from citypatrol.streams.open import open_source
from citypatrol.streams.frame import Frame
from citypatrol.streams.redact import redact_url
from citypatrol.streams.source import SourceError

log = logging.getLogger("citypatrol.live")


class LiveHook(Protocol):
    """Something that watches the live run besides the case rules (camera health). Every method
    is optional; an exception in one is logged and the run goes on."""

    def admit(self, frame: Frame) -> bool:
        """Before detection: False keeps this frame from the detector and the rules (a moved or frozen camera)."""
        ...

    def on_frame(self, result: FrameResult) -> None:
        """After the rules, with what the frame gave."""
        ...

    def on_status(self, status: LiveStatus) -> None:
        """Every status interval (offline cameras show here: their frames stop coming)."""
        ...


@dataclass
class LiveResult:
    status: LiveStatus  # the last snapshot, state "stopped"
    cases_opened: int
    evidence_errors: int
    errors: int  # batches or frames that failed in detection, analysis or recording (logged)

    @property
    def analysed_any(self) -> bool:
        return any(c.frames_analysed for c in self.status.cameras)


def run_live(
    config: Config,
    cameras: Sequence[Camera],
    detector: MultiDetector,
    *,
    stop: threading.Event | None = None,
    store: Store | None = None,
    hooks: Sequence[LiveHook] = (),
    check: Check | None = None,
) -> LiveResult:
    """Watch `cameras` until `stop`; `check(case, image)` is the second-stage check the review policy
    uses (dispatch on; see `second_stage.load_check`)."""
    stop = stop or threading.Event()
    live = config.live
    own_store = store is None
    if own_store:
        store = open_store(config.storage.database_url)
    analyzer = Analyzer(config, detector.classes)
    for rule in analyzer.rules:
        log.info("rule %s: active", rule.name)
    for _, reason in analyzer.disabled:  # a rule whose classes no configured model serves is off: say so
        log.warning("rule off: %s", reason)
    saved_zones = SavedZones(store.engine, config)
    cameras = saved_zones.apply(cameras)  # zones drawn in the review center replace the config's
    # with dispatch on, the review policy decides each new case (auto-submit → outbox, or hold for review)
    policy = ReviewPolicy(config.review) if config.dispatch.enabled else None
    recorder = CaseRecorder(store, config, config.storage.evidence_dir, cameras, policy=policy, check=check)
    hooks = [*hooks, *_health_hooks(config, cameras, store)]
    board = FrameBoard()
    schedule = DetectionSchedule(detector, config, cameras)  # each model at the cadence its rules need
    book = StatusBook(cameras, model=detector.version, interval_s=live.status_interval_s)
    book.gated = schedule.gated.copy  # dict.copy is atomic: the detector loop adds to it meanwhile

    feeds: dict[str, Feed] = {}
    for cam in cameras:
        store.upsert_camera(cam)
        analyzer.add_camera(cam)
        try:
            source = open_source(
                cam.id, cam.source, cam.cadence_s, start_wall=_start_wall(cam), **cam.stills_args(),
                open_timeout_s=live.open_timeout_s, read_timeout_s=live.read_timeout_s, backoff_max_s=live.backoff_max_s,
            )  # fmt: skip
        except (SourceError, OSError, ValueError) as exc:
            log.error("%s", exc)
            book.readers[cam.id] = lambda error=str(exc): (None, 0, error)
            continue
        log.info("camera %s: %s every %g s", cam.id, redact_url(cam.source), cam.cadence_s)
        feed = Feed(source, board, realtime=live.realtime, clip_seconds=config.storage.clip_seconds, cadence_s=cam.cadence_s)
        feeds[cam.id] = feed.start()
        book.readers[cam.id] = lambda f=feed: (f.stats, board.skips_of(f.camera_id), f.error)

    metrics = None
    try:
        if live.metrics_port:
            metrics = serve_metrics(live.metrics_host, live.metrics_port, book.snapshot)
            book.metrics_url = f"http://{live.metrics_host}:{live.metrics_port}/metrics"
            log.info("metrics on %s", book.metrics_url)
        book.set_state("running")
        batch_size = max(d.batch for d in config.models.detectors)
        errors, next_status = 0, 0.0
        while not stop.is_set():
            all_read = all(f.done.is_set() for f in feeds.values())  # before take: no frame can come after
            taken = board.take(batch_size, timeout=0.25)
            if not taken and all_read:
                log.info("all footage read")
                break
            admitted = []
            for a in taken:
                if _admitted(hooks, a.frame):
                    admitted.append(a)
                else:
                    book.withheld(a.frame.camera_id)  # camera health holds its rules back
            if admitted:
                t = time.monotonic()
                try:
                    detections = schedule.detect([a.frame for a in admitted])
                except Exception as exc:  # a failed call loses this batch, not the run
                    errors += 1
                    log.error("detector failed on a batch of %d: %s", len(admitted), exc)
                    detections = []
                else:
                    book.batch(len(admitted), time.monotonic() - t)
                for arrival, dets in zip(admitted, detections):
                    frame = arrival.frame
                    try:
                        result = analyzer.process(frame, dets)
                        opened = sum(c.kind is ChangeKind.opened for c in result.changes)
                        clip = feeds[frame.camera_id].clip() if opened else None  # only an opening gets a clip
                        recorder.record(result, clip)
                    except Exception as exc:
                        errors += 1
                        log.exception("camera %s: frame at %.1f s not analysed: %s", frame.camera_id, frame.pts, exc)
                        continue
                    book.analysed(frame.camera_id, frame.pts, arrival.due, opened)
                    _call(hooks, "on_frame", result)
            if saved_zones.due():
                for cam in saved_zones.changed([analyzer.camera(c).camera for c in feeds]):
                    analyzer.set_camera(cam)
                    schedule.set_camera(cam)
                    recorder.writer.cameras[cam.id] = cam
            if time.monotonic() >= next_status:
                status = book.snapshot()
                _write_status(live.status_file, status)
                _call(hooks, "on_status", status)
                next_status = time.monotonic() + live.status_interval_s
    finally:
        book.set_state("stopping")
        _write_status(live.status_file, book.snapshot())
        with ThreadPoolExecutor(max_workers=min(16, len(feeds) or 1)) as pool:
            list(pool.map(Feed.close, feeds.values()))  # in parallel: a hung camera waits its read timeout
        recorder.close()  # every opened case gets its evidence before the store closes
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        book.set_state("stopped")
        final = book.snapshot()
        _write_status(live.status_file, final)
        if own_store:
            store.close()
    log.info("stopped: %d case(s) opened", recorder.opened)
    return LiveResult(final, recorder.opened, recorder.evidence_errors, errors)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGTERM or SIGINT sets `stop` (a graceful stop); a second one interrupts at once.

    Only from the main thread (Python delivers signals there).
    """

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _health_hooks(config: Config, cameras: Sequence[Camera], store: Store) -> list[LiveHook]:
    """Camera health (offline, frozen, covered, moved off preset) as a hook: its `admit(frame)` is
    asked before detecting each frame, `on_frame(result)` after the rules, `on_status(status)` at
    every status write. None when `health.enabled` is false."""
    hook = health_live_hook(config, cameras, store)
    return [hook] if hook is not None else []


def _admitted(hooks: Sequence[LiveHook], frame: Frame) -> bool:
    for hook in hooks:
        fn = getattr(hook, "admit", None)
        try:
            if fn is not None and not fn(frame):
                return False
        except Exception as exc:  # a failing hook does not hold frames back
            log.error("live hook %s.admit failed: %s", type(hook).__name__, exc)
    return True


def _call(hooks: Sequence[LiveHook], method: str, arg: object) -> None:
    for hook in hooks:
        fn = getattr(hook, method, None)
        if fn is None:
            continue
        try:
            fn(arg)
        except Exception as exc:  # one failing sink never stops another
            log.error("live hook %s.%s failed: %s", type(hook).__name__, method, exc)


def _write_status(path, status: LiveStatus) -> None:
    try:
        write_status(path, status)
    except OSError as exc:
        log.error("status file %s cannot be written: %s", path, exc)


def _start_wall(camera: Camera) -> datetime | None:
    return datetime.fromisoformat(camera.start_time) if camera.start_time else None
