"""How frames are picked at the analysis cadence: pure decisions, no decoding here.

Dwell thresholds are minutes, so a camera is analysed once every 1-2 s of stream time. Where the
recording's keyframes come at least that often, decoding only keyframes costs ~1/50 of decoding
everything (see NOTES); otherwise every frame is decoded and all but one per cadence dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

# Keyframe spacing may exceed the cadence by this fraction and still count as fitting it
# (encoders place keyframes on frame boundaries: a 2 s GOP at 29.97 fps is 2.002 s).
FIT_TOLERANCE = 0.02


class SamplingMode(StrEnum):
    keyframes = "keyframes"  # decode keyframe packets only (skip_frame = NONKEY)
    decode_all = "decode_all"  # decode every frame, keep one per cadence


def choose_sampling(keyframe_pts: Sequence[float], scanned_until: float, cadence_s: float) -> SamplingMode:
    """Keyframes-only when no gap between keyframes is longer than the cadence.

    `keyframe_pts`: stream seconds of the keyframes among the first packets; `scanned_until`:
    the pts up to which packets were looked at (the end of the file if it is shorter). The gap
    after the last keyframe counts too: a single keyframe in a long scan means a long GOP.
    """
    if not keyframe_pts:
        return SamplingMode.decode_all
    points = sorted(keyframe_pts)
    gaps = [b - a for a, b in zip(points, points[1:])] + [scanned_until - points[-1]]
    limit = cadence_s * (1 + FIT_TOLERANCE)
    if len(points) < 2 or max(gaps) > limit:
        return SamplingMode.decode_all
    return SamplingMode.keyframes


class CadenceGate:
    """Lets through the first frame at or after each multiple of the cadence (on a grid from the first frame).

    After a gap of more than a cadence (a file boundary, a reconnect) the grid restarts at the
    frame after the gap instead of catching up with frames closer together than the cadence.

    A grid rather than "last taken + cadence" keeps the count at duration / cadence when frames
    arrive at irregular times (keyframes every 0.6 s at cadence 1 s give 0, 1.2, 2.4, 3.0 …).
    """

    def __init__(self, cadence_s: float) -> None:
        if cadence_s <= 0:
            raise ValueError(f"cadence must be > 0 s, got {cadence_s}")
        self.cadence_s = cadence_s
        self._next: float | None = None

    def start_at(self, pts: float) -> None:
        """Begin at `pts` as a gate that had seen every frame since 0 would: on the same grid.

        For reading a file from a seek point; the grid is the one a whole-file pass has when its
        frames come without gaps (a gap would have restarted that pass's grid).
        """
        eps = 1e-6 + self.cadence_s * 1e-3
        self._next = max(0.0, math.ceil(pts / self.cadence_s - eps / self.cadence_s) * self.cadence_s)

    def take(self, pts: float) -> bool:
        eps = 1e-6 + self.cadence_s * 1e-3
        if self._next is not None and pts < self._next - eps:
            return False
        if self._next is None or pts - self._next >= self.cadence_s - eps:
            self._next = pts + self.cadence_s  # first frame, or after a gap: the grid restarts here
        else:
            self._next += self.cadence_s
        return True


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `max_side`; never scaled up."""
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return width, height
    scale = max_side / longer
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side
