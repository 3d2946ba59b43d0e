"""Camera health for the camera wall, from the status file the live runner (`citypatrol run`) rewrites.

The review center may run in another process (or machine with a shared folder) than the runner,
so it reads the same file `citypatrol status` reads, at most once per `CACHE_S`. No file, or one
the runner has not rewritten for a while (it stopped or hangs), gives "unknown" with the reason.

    running, frames recent       → ok
    opening / offline / stalled  → degraded (the runner is retrying)
    failed / closed              → down
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citypatrol.pipeline.live.status import LiveStatus, read_status

CACHE_S = 2.0
STALE_FRAME_S = 60.0  # a running camera without an analysed frame for this long is degraded


class StatusFileHealth:
    """A `HealthProvider` over the live runner's status file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._status: LiveStatus | None = None
        self._why = ""

    def __call__(self, camera_id: str) -> dict[str, Any] | None:
        status, why = self._current()
        if status is None:
            return {"status": "unknown", "reason": why}
        cam = next((c for c in status.cameras if c.camera_id == camera_id), None)
        if cam is None:
            return {"status": "unknown", "reason": "not watched by the running citypatrol run"}
        detail = {"state": cam.state, "analysed_fps": cam.analysed_fps, "lag_s": cam.lag_s,
                  "last_frame_age_s": cam.last_frame_age_s, "reconnects": cam.reconnects, "last_error": cam.last_error[:200]}
        if cam.state in ("failed", "closed"):
            return {"status": "down", **detail}
        stalled = cam.last_frame_age_s is not None and cam.last_frame_age_s > STALE_FRAME_S
        if cam.state != "running" or stalled:
            return {"status": "degraded", **detail}
        return {"status": "ok", **detail}

    def _current(self) -> tuple[LiveStatus | None, str]:
        with self._lock:
            if time.monotonic() - self._read_at > CACHE_S:
                self._read_at = time.monotonic()
                try:
                    self._status, self._why = read_status(self.path), ""
                except FileNotFoundError:
                    self._status, self._why = None, "no live runner status file"
                except (OSError, ValueError) as exc:
                    self._status, self._why = None, f"unreadable status file: {exc}"[:200]
            status, why = self._status, self._why
        if status is not None and (status.state != "running" or status.age_s(datetime.now(UTC)) > 3 * status.interval_s + 10):
            return None, f"the live runner is {status.state if status.state != 'running' else 'not reporting'}"
        return status, why
