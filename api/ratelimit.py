"""Sign-in rate limiting, in memory.

Every sign-in attempt is counted as a failure *before* its password is checked (`start`), per
(user name, client address) and per client address alone, in a sliding window
(`ApiConfig.login_window_s`); a success then takes its own count back and clears the pair
(`finish`). Counting first matters: a password check costs argon2's 64 MiB and tens of
milliseconds, and a burst of guesses that all passed the check before any of them was counted
would all be verified. After `login_max_failures` failures for a user from one address, that pair
waits until the oldest failure leaves the window; an address that fails ten times as often
(guessing across many user names) waits likewise.

Password checks running at once are capped too, per user name, per address and in all, so a
burst costs at most that many argon2 hashes of memory; beyond a cap the answer is 429 at once.

The counts live in this process: a restart forgets them, and several API processes behind a
load balancer each count on their own (a reverse proxy's limit belongs in front of those).
Memory is bounded: old entries are pruned, and at most `max_keys` keys are kept.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


class TooManyAttempts(Exception):
    """The attempt is refused before any password is checked; `wait_s` says when to try again."""

    def __init__(self, message: str, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt let through by `LoginLimiter.start`; hand it back to `finish`."""

    user: str
    ip: str
    at: float


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window_s: float = 900.0, *, ip_factor: int = 10, max_keys: int = 100_000,
                 concurrent_per_user: int = 2, concurrent_per_ip: int = 4, concurrent_total: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.ip_max = max_failures * ip_factor
        self.max_keys = max_keys
        self.concurrent = {"user": concurrent_per_user, "ip": concurrent_per_ip, "total": concurrent_total}
        self._clock = clock
        self._lock = threading.Lock()
        self._fails: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._running: Counter[tuple[str, str]] = Counter()  # ("user", name) / ("ip", address) / ("total", "") -> checks running

    def start(self, username: str, ip: str) -> Attempt:
        """Count an attempt and let it check its password, or raise TooManyAttempts (nothing counted)."""
        user = username.casefold()
        now = self._clock()
        with self._lock:
            waits = []
            for key, limit in (((user, ip), self.max_failures), (("", ip), self.ip_max)):
                q = self._recent(key, now)
                if q is not None and len(q) >= limit:
                    waits.append(q[0] + self.window_s - now)
            if waits:
                wait = max(waits)
                raise TooManyAttempts(f"too many failed sign-ins: try again in {max(1, math.ceil(wait))} s", wait)
            running = (("user", user), ("ip", ip), ("total", ""))
            if any(self._running[key] >= self.concurrent[key[0]] for key in running):
                raise TooManyAttempts("too many sign-ins at once: try again in a moment", 1.0)
            for key in running:
                self._running[key] += 1
            for key in ((user, ip), ("", ip)):
                q = self._fails.setdefault(key, deque())
                q.append(now)
                self._fails.move_to_end(key)
                while len(q) > self.ip_max:
                    q.popleft()
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
        return Attempt(user, ip, now)

    def finish(self, attempt: Attempt, *, succeeded: bool) -> None:
        """The password check is over: a failure stays counted; a success clears its pair and its own count."""
        with self._lock:
            for key in (("user", attempt.user), ("ip", attempt.ip), ("total", "")):
                self._running[key] -= 1
                if self._running[key] <= 0:
                    del self._running[key]
            if succeeded:
                self._fails.pop((attempt.user, attempt.ip), None)
                q = self._fails.get(("", attempt.ip))
                if q is not None and attempt.at in q:
                    q.remove(attempt.at)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q
