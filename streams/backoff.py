"""The one retry policy of citypatrol: exponential backoff with jitter, as a tenacity wait.

Cameras that dropped together, workers that lost Redis together and deliveries that failed together
must not retry together. Every retry uses `Backoff`:
- loops that retry one call (a store write while the database is away, a Redis call) hand it to
  `tenacity.Retrying(wait=Backoff(...), …)`;
- state machines that schedule their own next attempt (a camera's reconnect, the dispatch outbox's
  due time, a service loop's next try) ask `Backoff.delay(failures)`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from tenacity import RetryCallState
from tenacity.wait import wait_base


class Backoff(wait_base):
    """The wait after the n-th failure in a row: `initial_s`·2^(n-1), capped at `cap_s`, times a
    random factor in 1 ± `jitter` (so it is never zero)."""

    def __init__(self, initial_s: float, cap_s: float, jitter: float = 0.25,
                 rand: Callable[[], float] = random.random) -> None:
        if initial_s <= 0 or cap_s < initial_s or not 0 <= jitter < 1:
            raise ValueError(f"backoff needs 0 < initial_s <= cap_s and 0 <= jitter < 1, got {initial_s}, {cap_s}, {jitter}")
        self.initial_s, self.cap_s, self.jitter, self.rand = initial_s, cap_s, jitter, rand

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failed attempts in a row (1 = the first failure)."""
        ceiling = min(self.cap_s, self.initial_s * 2.0 ** min(max(failures, 1) - 1, 60))
        return ceiling * (1.0 - self.jitter + 2.0 * self.jitter * self.rand())

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.delay(retry_state.attempt_number)


class LoopBackoff:
    """A long-running loop's failures in a row, waiting the policy's delay after each; `reset()`
    after a success. (One call retried until it succeeds is `tenacity.Retrying` instead.)"""

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the next delay; True if `stop` was set meanwhile."""
        return stop.wait(self.next_delay())

    def reset(self) -> None:
        self.failures = 0
