"""What the live runner reports about itself: per-camera figures, the status file, its reader.

`StatusBook` is written by the detector loop (one call per analysed frame) and read from other
threads (the /metrics endpoint, the status file writer): `snapshot()` returns a frozen
`LiveStatus`, the one record behind both `/metrics` and `citypatrol status`.

Figures per camera: analysed frames and analysed fps (over the last `FPS_WINDOW_S`), lag behind
live (wall now − the frame's wall time when it was analysed), seconds since its last analysed
frame, skips (frames replaced by a newer one before the detector took them), reconnects, decode
errors, corrupt packets, cases opened, the source's state and last error. Sources are shown
redacted; nothing here ever holds a credential.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from citypatrol.pipeline.config.models import Camera
from citypatrol.streams.redact import redact_url
from citypatrol.streams.source import SourceState, SourceStats

FPS_WINDOW_S = 10.0
STATUS_VERSION = 1


@dataclass(frozen=True, slots=True)
class CameraStatus:
    camera_id: str
    name: str
    source: str  # redacted
    state: str  # a SourceState value
    frames_analysed: int = 0
    analysed_fps: float = 0.0
    lag_s: float | None = None  # of the last analysed frame, when it was analysed
    last_frame_age_s: float | None = None  # seconds since the last analysed frame
    last_pts: float | None = None
    skips: int = 0
    reconnects: int = 0
    decode_errors: int = 0
    corrupt_packets: int = 0
    cases_opened: int = 0
    withheld: int = 0  # frames a live hook kept from the rules (camera health: moved, frozen)
    gated: int = 0  # frames no model looked at: nothing had changed in the zones (models.change_gate)
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class LiveStatus:
    state: str  # starting | running | stopping | stopped
    pid: int
    started_at: str  # ISO 8601, UTC
    updated_at: str
    model: str = ""
    metrics_url: str = ""
    interval_s: float = 2.0  # how often the runner rewrites the status
    batches: int = 0
    batch_images: int = 0
    detect_seconds: float = 0.0
    cameras: tuple[CameraStatus, ...] = field(default_factory=tuple)
    version: int = STATUS_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "LiveStatus":
        data = json.loads(text)
        cams = tuple(CameraStatus(**c) for c in data.pop("cameras", []))
        return cls(**data, cameras=cams)

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds since the runner last wrote this."""
        return ((now or datetime.now(UTC)) - datetime.fromisoformat(self.updated_at)).total_seconds()


@dataclass
class _Counters:
    analysed: int = 0
    withheld: int = 0
    cases_opened: int = 0
    lag_s: float | None = None
    last_pts: float | None = None
    last_at: float | None = None  # monotonic
    first_at: float | None = None
    recent: deque[float] = field(default_factory=deque)  # monotonic times of recent analyses


class StatusBook:
    """Per-camera analysis counters plus a way to read each camera's source figures."""

    def __init__(self, cameras: Sequence[Camera], model: str = "", interval_s: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._cameras = list(cameras)
        self._counters = {c.id: _Counters() for c in cameras}
        self._started = datetime.now(UTC)
        self._state = "starting"
        self._model = model
        self.metrics_url = ""
        self._interval_s = interval_s
        self._batches = 0
        self._batch_images = 0
        self._detect_s = 0.0
        # camera id -> () -> (source stats or None, board skips, feed error); set by the runner
        self.readers: dict[str, Callable[[], tuple[SourceStats | None, int, str]]] = {}
        self.gated: Callable[[], dict[str, int]] = dict  # camera id -> frames the change gate let pass unlooked

    def set_state(self, state: str) -> None:
        with self._lock:
            self._state = state

    def batch(self, images: int, seconds: float) -> None:
        with self._lock:
            self._batches += 1
            self._batch_images += images
            self._detect_s += seconds

    def analysed(self, camera_id: str, pts: float, due: float, opened: int) -> None:
        """One analysed frame of `camera_id`: its stream time, when it happened (epoch s), cases it opened."""
        now = time.monotonic()
        with self._lock:
            c = self._counters[camera_id]
            c.analysed += 1
            c.cases_opened += opened
            c.lag_s = max(0.0, time.time() - due)
            c.last_pts = pts
            c.last_at = now
            c.first_at = now if c.first_at is None else c.first_at
            c.recent.append(now)

    def withheld(self, camera_id: str) -> None:
        with self._lock:
            self._counters[camera_id].withheld += 1

    def snapshot(self) -> LiveStatus:
        now = time.monotonic()
        cams = []
        gated = self.gated()
        with self._lock:
            for cam in self._cameras:
                c = self._counters[cam.id]
                while c.recent and c.recent[0] < now - FPS_WINDOW_S:
                    c.recent.popleft()
                read = self.readers.get(cam.id)
                stats, skips, error = read() if read else (None, 0, "")
                if stats is None or (error and stats.state not in (SourceState.closed, SourceState.finished)):
                    state = "failed"  # never opened, or its feed ended on an error
                else:
                    state = str(stats.state)
                stats = stats or SourceStats()
                window = min(FPS_WINDOW_S, now - c.first_at) if c.first_at is not None else 0.0
                cams.append(CameraStatus(
                    camera_id=cam.id,
                    name=cam.name,
                    source=redact_url(cam.source),
                    state=state,
                    frames_analysed=c.analysed,
                    analysed_fps=round(len(c.recent) / window, 3) if window > 1.0 else 0.0,
                    lag_s=None if c.lag_s is None else round(c.lag_s, 3),
                    last_frame_age_s=None if c.last_at is None else round(now - c.last_at, 3),
                    last_pts=None if c.last_pts is None else round(c.last_pts, 3),
                    skips=skips + stats.skipped_stale,
                    reconnects=stats.reconnects,
                    decode_errors=stats.decode_errors,
                    corrupt_packets=stats.corrupt_packets,
                    cases_opened=c.cases_opened,
                    gated=gated.get(cam.id, 0),
                    withheld=c.withheld,
                    last_error=error or stats.last_error,
                ))
            return LiveStatus(
                state=self._state,
                pid=os.getpid(),
                started_at=self._started.isoformat(),
                updated_at=datetime.now(UTC).isoformat(),
                model=self._model,
                metrics_url=self.metrics_url,
                interval_s=self._interval_s,
                batches=self._batches,
                batch_images=self._batch_images,
                detect_seconds=round(self._detect_s, 3),
                cameras=tuple(cams),
            )


def write_status(path: Path, status: LiveStatus) -> None:
    """Replace the status file atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(status.to_json(), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> LiveStatus:
    """The status a runner last wrote; FileNotFoundError / ValueError when there is none or it is unreadable."""
    try:
        return LiveStatus.from_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: not a citypatrol status file ({exc})") from None

