"""Reconnect delays: exponential backoff with jitter, so cameras that dropped together do not retry together."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    initial_s: float = 0.5,
    cap_s: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 = the first retry).

    The ceiling doubles each attempt up to `cap_s`; the delay is drawn from its upper half
    ("equal jitter"), so it is never zero and never more than the cap.
    """
    ceiling = min(cap_s, initial_s * 2 ** min(attempt, 32))
    return ceiling / 2 + rand() * ceiling / 2
