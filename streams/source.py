"""What every frame source is: an iterator of `Frame`s with a state, counters and a clear error type.

Concrete sources (file, folder, stills, live) subclass `Source`; callers only see this module's
types. Counters are updated by the source (live: from its reader thread) and read as an
immutable `SourceStats` snapshot.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from types import TracebackType

from citypatrol.streams.frame import Frame
from citypatrol.streams.redact import redact_text, redact_url

log = logging.getLogger("citypatrol.streams")


class SourceError(Exception):
    """A source cannot deliver frames. The message names the camera, the (redacted) source and why."""

    def __init__(self, camera_id: str, source: str, reason: str) -> None:
        self.camera_id = camera_id
        self.source = redact_url(source)
        self.reason = redact_text(reason, source)
        super().__init__(f"camera {camera_id}: {self.source}: {self.reason}")


class SourceState(StrEnum):
    opening = "opening"  # not yet delivering (live: first connection under way)
    running = "running"  # delivering frames
    offline = "offline"  # live: connection lost or refused, retrying with backoff
    finished = "finished"  # recorded footage: all of it has been read
    failed = "failed"  # gave up (see last_error)
    closed = "closed"  # close() was called


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters of one source. `frames_analysed` = frames handed to the caller."""

    frames_decoded: int = 0
    frames_analysed: int = 0
    skipped_stale: int = 0  # live: sampled frames replaced by a newer one before the caller took them
    corrupt_packets: int = 0  # packets the decoder rejected (skipped)
    decode_errors: int = 0  # files/connections that ended in an error (truncated, unreadable, lost)
    reconnects: int = 0  # live: connection attempts after the first
    state: SourceState = SourceState.opening
    last_error: str = ""


class Source(ABC):
    """A camera's frames. Use as a context manager, or call `close()`."""

    def __init__(self, camera_id: str, source: str) -> None:
        self.camera_id = camera_id
        self.source = source  # raw: may hold credentials; log `redacted` instead
        self.redacted = redact_url(source)
        self.reading = ""  # how the frames and their times are read, when it was a choice (stills), for summaries
        self._stats = SourceStats()
        self._stats_lock = threading.Lock()

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Analysed frames in stream order, `pts` increasing."""

    def close(self) -> None:
        self._set(state=SourceState.closed)

    @property
    def stats(self) -> SourceStats:
        with self._stats_lock:
            return self._stats

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.camera_id!r}, {self.redacted!r})"

    # -- for subclasses ---------------------------------------------------------------------
    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            s = self._stats
            self._stats = replace(s, **{k: getattr(s, k) + v for k, v in deltas.items()})

    def _set(self, **values: object) -> None:
        with self._stats_lock:
            if self._stats.state is SourceState.closed and "state" in values:
                values = {k: v for k, v in values.items() if k != "state"}
            self._stats = replace(self._stats, **values)

    def _error(self, reason: str, *, count: bool = True) -> str:
        """Record an error (redacted) in the stats and the log; returns the redacted text."""
        text = redact_text(reason, self.source)
        log.warning("camera %s: %s: %s", self.camera_id, self.redacted, text)
        if count:
            self._count(decode_errors=1)
        self._set(last_error=text)
        return text

    def _fail(self, reason: str) -> SourceError:
        self._error(reason)
        self._set(state=SourceState.failed)
        return SourceError(self.camera_id, self.source, reason)
