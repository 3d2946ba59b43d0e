"""Stream time for live cameras: seconds since the source opened, steady within a connection,
monotonic across reconnects, never ahead of the clock.

Within a connection a frame's time follows the camera's own timestamps, which are steadier than
arrival times (packets come in bursts). The offset between the two is the smallest delay seen
so far: a server that sends its cached GOP on connect (as ZLMediaKit and GstRtspServer do)
delivers old frames fast, and anchoring on the first frame would put later frames in the future.
Elapsed time is passed in, so this is pure and tested by table.
"""

from __future__ import annotations

# Stream timestamps that go back by more than this are a new segment (camera or server restart).
BACKWARD_JUMP_S = 0.5
_STEP = 1e-3  # the least increase between two frames' pts


class LiveClock:
    """`pts(stream_t, elapsed)` → source seconds. Call `new_connection()` after reconnecting."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._offset: float | None = None  # elapsed minus stream time, smallest seen
        self._prev_t: float | None = None

    def new_connection(self) -> None:
        self._offset = None
        self._prev_t = None

    @property
    def last(self) -> float | None:
        return self._last

    def pts(self, stream_t: float | None, elapsed: float) -> float:
        floor = self._last + _STEP if self._last is not None else 0.0
        if stream_t is None:
            pts = max(elapsed, floor)
        else:
            if self._prev_t is not None and stream_t < self._prev_t - BACKWARD_JUMP_S:
                self._offset = None
            self._prev_t = stream_t
            lateness = elapsed - stream_t
            self._offset = lateness if self._offset is None else min(self._offset, lateness)
            pts = max(self._offset + stream_t, floor)
        self._last = pts
        return pts
