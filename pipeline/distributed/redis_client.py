"""Redis for distributed mode: connecting, retrying, leases, membership, consumer groups.

Everything here is a thin, explicit layer over redis-py; the decisions (who claims what, what a
message says) are in `protocol.py`.

- Outages: `TRANSIENT` errors (connection refused or lost, timeouts, a Redis still loading) mean
  "wait and retry": callers back off with the one retry policy (`streams.backoff`: exponential, jittered,
  capped at `retry_max_s`) and go on; nothing here gives up. A consumer group that is missing (Redis
  restarted without persistence) is re-created from the start of its stream (`ensure_group`).
- Leases: `SET key owner NX PX ms` claims; a script renews only the owner's own key (and
  re-takes it when it vanished, e.g. after a Redis restart, so a running worker keeps its
  cameras), writing the camera's clock in the same step; another script releases only the
  owner's own key. Lease times are Redis's, so machines' clocks do not matter for failover.
- Membership: a sorted set per role (workers, casekeepers), score = expiry in Redis server
  milliseconds; live members are those not expired, cleared as they go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import redis
from redis.exceptions import BusyLoadingError, ConnectionError as RedisConnectionError, ResponseError, TimeoutError as RedisTimeoutError

log = logging.getLogger("citypatrol.distributed")

TRANSIENT: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)

_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] or not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'pts', ARGV[3], 'wall', ARGV[4], 'owner', ARGV[1]) end
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'pts', ARGV[2], 'wall', ARGV[3], 'owner', ARGV[1]) end
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def connect(url: str, *, socket_timeout_s: float = 10.0) -> redis.Redis:
    """A client for `url`; it connects lazily, so an unreachable Redis shows at the first command."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout_s, socket_connect_timeout=3, health_check_interval=15)


def redact_redis_url(url: str) -> str:
    from citypatrol.streams.redact import redact_url

    return redact_url(url)


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


@dataclass(frozen=True)
class Clock:
    """A camera's stream time at a wall time (what the next owner continues from)."""

    pts: float
    wall: datetime


def server_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


class Leases:
    """Leases owned by one process (`owner`), each `lease_ms` long."""

    def __init__(self, r: redis.Redis, owner: str, lease_ms: int) -> None:
        self.r, self.owner, self.lease_ms = r, owner, lease_ms
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)

    def claim(self, key: str) -> bool:
        return bool(self.r.set(key, self.owner, nx=True, px=self.lease_ms))

    def renew(self, items: Sequence[tuple[str, str, Clock | None]]) -> dict[str, bool]:
        """Renew (or re-take, if it vanished) each (lease key, clock key, clock); False = someone else holds it."""
        if not items:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for key, clock_key, clock in items:
            self._renew(keys=[key, clock_key], args=[self.owner, self.lease_ms, *_clock_args(clock)], client=pipe)
        return {key: bool(ok) for (key, _, _), ok in zip(items, pipe.execute())}

    def release(self, key: str, clock_key: str, clock: Clock | None) -> bool:
        return bool(self._release(keys=[key, clock_key], args=[self.owner, *_clock_args(clock)]))

    def owners(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return [v.decode() if v is not None else None for v in self.r.mget(list(keys))]


def _clock_args(clock: Clock | None) -> list[str]:
    return [repr(clock.pts), clock.wall.isoformat()] if clock is not None else ["", ""]


def read_clock(r: redis.Redis, clock_key: str) -> Clock | None:
    h = r.hgetall(clock_key)
    try:
        return Clock(float(h[b"pts"]), datetime.fromisoformat(h[b"wall"].decode()))
    except (KeyError, ValueError):
        return None


class Members:
    """Live members of one role; `beat()` registers this one for `lease_ms` and returns how many live."""

    def __init__(self, r: redis.Redis, key: str, member: str, lease_ms: int) -> None:
        self.r, self.key, self.member, self.lease_ms = r, key, member, lease_ms

    def beat(self) -> int:
        now = server_ms(self.r)
        pipe = self.r.pipeline(transaction=True)
        pipe.zremrangebyscore(self.key, "-inf", now)
        pipe.zadd(self.key, {self.member: now + self.lease_ms})
        pipe.zcard(self.key)
        return int(pipe.execute()[-1])

    def leave(self) -> None:
        self.r.zrem(self.key, self.member)


def ensure_group(r: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if missing, from the stream's first entry:
    after a Redis restart whatever workers added before the group came back is read too."""
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
        log.info("consumer group %s on %s created", group, stream)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def autoclaim_all(r: redis.Redis, stream: str, group: str, consumer: str, min_idle_ms: int) -> int:
    """XAUTOCLAIM every pending entry idle at least `min_idle_ms` to `consumer`; how many.
    (Not JUSTID: redis-py then drops the cursor that says whether more are left.)"""
    start, claimed = "0-0", 0
    while True:
        reply = r.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=500)
        start, entries = reply[0], reply[1]
        claimed += len(entries)
        if start in (b"0-0", "0-0"):
            return claimed
