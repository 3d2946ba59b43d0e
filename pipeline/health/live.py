"""Camera health in the live runner: the thin adapter between `run_live` and `HealthMonitor`.

`pipeline/live/runner.py` calls `live_hook(config, cameras, store)`
and calls the hook it returns: `admit(frame)` before detection (False keeps the frame from the
detector and the rules: the camera is moved or frozen), `on_status(status)` at every status
write (the sources' states and the runner's clock: offline cameras show up here, their frames
stop coming). This module is the edge: it reads the reference images, reads the clock and logs;
the decisions stay in `HealthMonitor`.

Events go to the log and to the `sinks` (callables taking a `HealthEvent`; one failing sink
does not stop the others). `health_case(event)` gives the maintenance-case record a sink can
file; the store has no camera-fault category yet, so `live_hook` files none itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import cv2

from citypatrol.pipeline.config.models import Camera, Config, HealthKind
from citypatrol.pipeline.health.monitor import HealthEvent, HealthMonitor
from citypatrol.streams.frame import Frame
from citypatrol.streams.source import SourceState

log = logging.getLogger("citypatrol.health")

Sink = Callable[[HealthEvent], None]


_STEADY: tuple[datetime, float] | None = None


def _utcnow() -> datetime:
    """UTC on a steady clock: the system clock read once, then advanced by the monotonic clock, so
    a step of the machine's clock (NTP, by hand) does not make every camera look offline."""
    global _STEADY
    if _STEADY is None:
        _STEADY = (datetime.now(UTC), time.monotonic())
    return _STEADY[0] + timedelta(seconds=time.monotonic() - _STEADY[1])


class LiveHealth:
    """One `HealthMonitor` per camera behind the live runner's hook methods.

    Frames are stamped with the runner's clock on arrival (`now=`), so a recording played in real
    time (whose frames carry the recording's clock) is judged offline on the same clock as
    `on_status`. The runner calls `admit` from its loop and `on_status` from the same loop; a lock
    keeps a monitor consistent should a caller use another thread.
    """

    def __init__(self, monitors: dict[str, HealthMonitor], sinks: Sequence[Sink] = (),
                 clock: Callable[[], datetime] = _utcnow, history: int = 1000) -> None:
        self.monitors = monitors
        self.sinks = list(sinks)
        self.clock = clock
        self.recent: deque[HealthEvent] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._anchors: dict[str, datetime] = {}  # camera -> wall time at its stream second 0

    def admit(self, frame: Frame) -> bool:
        monitor = self.monitors.get(frame.camera_id)
        if monitor is None:
            return True
        with self._lock:
            events = monitor.observe(frame.image, frame.pts, self._stream_wall(frame), now=self.clock())
            suspended = monitor.rules_suspended
        self._emit(events)
        return not suspended

    def _stream_wall(self, frame: Frame) -> datetime:
        """The camera's first wall time plus stream time: covered, frozen and moved are timed in
        stream time, like the rules, so a camera whose clock jumps by hours starts or ends none."""
        anchor = self._anchors.setdefault(frame.camera_id, frame.wall - timedelta(seconds=frame.pts))
        return anchor + timedelta(seconds=frame.pts)

    def on_status(self, status: object) -> None:
        now = self.clock()
        for cam in getattr(status, "cameras", ()):
            monitor = self.monitors.get(cam.camera_id)
            if monitor is None:
                continue
            try:
                state = SourceState(cam.state)
            except ValueError:
                state = None
            with self._lock:
                events = monitor.observe_source(state, now) if state is not None else monitor.tick(now)
            self._emit(events)

    def active(self, camera_id: str) -> dict[HealthKind, HealthEvent]:
        monitor = self.monitors.get(camera_id)
        return monitor.active if monitor is not None else {}

    def _emit(self, events: list[HealthEvent]) -> None:
        for ev in events:
            self.recent.append(ev)
            if ev.active:
                log.warning("camera %s: %s since %s: %s", ev.camera_id, ev.kind.value, ev.started_at.isoformat(), ev.detail)
            else:
                log.info("camera %s: %s ended after %.0f s: %s", ev.camera_id, ev.kind.value, ev.duration_s or 0.0, ev.detail)
            for sink in self.sinks:
                try:
                    sink(ev)
                except Exception as exc:  # one failing sink never stops another
                    log.error("health sink %r failed on %s: %s", sink, ev.event_id, exc)


def read_reference(camera: Camera):
    """The camera's reference image (BGR) or None (none configured, or unreadable: logged)."""
    if camera.reference_image is None:
        return None
    image = cv2.imread(str(camera.reference_image), cv2.IMREAD_COLOR)
    if image is None:
        log.warning("camera %s: reference image %s cannot be read; moved check off", camera.id, camera.reference_image)
    return image


def live_hook(config: Config, cameras: Sequence[Camera], store: object = None, sinks: Sequence[Sink] = ()) -> LiveHealth | None:
    """The hook `run_live` asks for; None when `health.enabled` is false."""
    if not config.health.enabled:
        return None
    monitors = {cam.id: HealthMonitor(cam.id, read_reference(cam), config.health) for cam in cameras}
    return LiveHealth(monitors, sinks)
