"""Sign-in rate limiting, in memory.

Failed sign-ins are counted per (user name, client address) and per client address alone, in a
sliding window (`ApiConfig.login_window_s`). After `login_max_failures` failures for a user from
one address, that pair waits until the oldest failure leaves the window; an address that fails
ten times as often (guessing across many user names) waits likewise. A success clears the pair.

The counts live in this process: a restart forgets them, and several API processes behind a
load balancer each count on their own (a reverse proxy's limit belongs in front of those).
Memory is bounded: old entries are pruned, and at most `max_keys` keys are kept.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window_s: float = 900.0, *, ip_factor: int = 10, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.ip_max = max_failures * ip_factor
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._fails: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def retry_after(self, username: str, ip: str) -> float | None:
        """Seconds to wait before this user may try again from this address, or None to go ahead."""
        now = self._clock()
        with self._lock:
            waits = []
            for key, limit in (((username.lower(), ip), self.max_failures), (("", ip), self.ip_max)):
                q = self._recent(key, now)
                if q is not None and len(q) >= limit:
                    waits.append(q[0] + self.window_s - now)
            return max(waits) if waits else None

    def failed(self, username: str, ip: str) -> None:
        now = self._clock()
        with self._lock:
            for key in ((username.lower(), ip), ("", ip)):
                q = self._fails.setdefault(key, deque())
                q.append(now)
                self._fails.move_to_end(key)
                while len(q) > self.ip_max:
                    q.popleft()
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, username: str, ip: str) -> None:
        with self._lock:
            self._fails.pop((username.lower(), ip), None)

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
