"""A worker's one thread that talks to Redis: heartbeat (membership, leases, balancing, segment
tasks) and publishing, so the detector loop never waits on Redis.

The detector loop (`distributed/worker.py`) and this thread talk through two queues:
- `orders` (link → loop): start a claimed camera (with the clock to continue from), stop one
  (released, or lost to another worker), analyse a segment task;
- `send` (loop → link): a frame message, a finished segment, a camera closed (release its lease
  with its last clock).

Ownership before output: after (re)connecting, the heartbeat runs before anything is published,
so a worker cut off from Redis longer than a lease (another worker took its camera meanwhile)
finds that out and drops that camera's queued messages instead of publishing overlapping ones.
While Redis is down, messages wait in memory (at most `outbox_max`, oldest frame messages dropped
first and counted) and the cameras keep being analysed. New cameras and segments are claimed
only from the second heartbeat after connecting, so after a Redis restart the running workers
re-take their own cameras first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from citypatrol.pipeline.config.models import Camera, DistributedConfig
from citypatrol.pipeline.distributed.protocol import (
    FrameMessage,
    Keys,
    SegmentResult,
    balance,
    camera_weight,
    clip_key,
    encode,
    measured_weights,
    shard_key,
    shard_of,
)
from citypatrol.streams.backoff import Backoff, LoopBackoff
from citypatrol.pipeline.distributed.redis_client import TRANSIENT, Clock, Leases, Members, ensure_group, is_nogroup, read_clock
from citypatrol.pipeline.distributed.segments import SegmentTask

log = logging.getLogger("citypatrol.worker")


@dataclass(frozen=True)
class StartCamera:
    camera: Camera
    clock: Clock | None


@dataclass(frozen=True)
class StopCamera:
    camera_id: str
    lost: bool  # True: another worker holds it now (drop, do not release)


@dataclass(frozen=True)
class StartSegment:
    task: SegmentTask
    entry_id: str


@dataclass(frozen=True)
class _Frame:
    message: FrameMessage
    image: bytes | None
    clip: bytes | None = None


@dataclass(frozen=True)
class _Segment:
    entry_id: str
    result: SegmentResult
    images: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class _Closed:
    camera_id: str


@dataclass
class _Held:
    camera: Camera
    clock: Clock | None
    stopping: bool = False


@dataclass
class LinkStats:
    published: int = 0
    dropped: int = 0  # frame messages dropped while Redis was unreachable and the outbox full
    reconnects: int = 0
    lost: int = 0  # cameras found held by another worker
    segments_done: int = 0


class WorkerLink(threading.Thread):
    def __init__(self, r: redis.Redis, d: DistributedConfig, worker_id: str, cameras: Sequence[Camera]) -> None:
        super().__init__(name="redis-link", daemon=True)
        self.r, self.d, self.worker_id = r, d, worker_id
        self.keys = Keys.of(d)
        self.cameras = {c.id: c for c in cameras}
        self.weights = {c.id: camera_weight(c) for c in cameras}
        self.leases = Leases(r, worker_id, d.lease_ms)
        self.members = Members(r, self.keys.workers, worker_id, d.lease_ms)
        self.orders: queue.Queue[StartCamera | StopCamera | StartSegment] = queue.Queue()
        self.stats = LinkStats()
        self.draining = threading.Event()  # stop claiming; publish what is left; release cameras as they close
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self._outbox: deque[_Frame | _Segment | _Closed] = deque()
        self._held: dict[str, _Held] = {}
        self._costs: dict[str, float] = {}  # camera → cores, as the detector loop measured (held cameras)
        self._segments: dict[str, SegmentTask] = {}
        self._connected_at: float | None = None  # monotonic time of the first heartbeat after connecting
        self._next_beat = 0.0
        self._beats_since_connect = 0

    # -- from the detector loop ------------------------------------------------------------------

    def note_clock(self, camera_id: str, clock: Clock) -> None:
        with self._cond:
            held = self._held.get(camera_id)
            if held is not None:
                held.clock = clock

    def note_cost(self, camera_id: str, cores: float) -> None:
        """What a held camera costs (smoothed cores), for balancing; published at the next heartbeat."""
        with self._cond:
            if camera_id in self._held:
                self._costs[camera_id] = cores

    def publish(self, message: FrameMessage, image: bytes | None, clip: bytes | None = None) -> None:
        self._put(_Frame(message, image, clip))

    def segment_done(self, entry_id: str, result: SegmentResult, images: Sequence[tuple[str, bytes]]) -> None:
        self._put(_Segment(entry_id, result, tuple(images)))

    def camera_closed(self, camera_id: str) -> None:
        self._put(_Closed(camera_id))

    @property
    def waiting(self) -> int:
        """Messages not yet sent (all of them while Redis is unreachable)."""
        return len(self._outbox)

    def held_cameras(self) -> list[str]:
        with self._cond:
            return [c for c, h in self._held.items() if not h.stopping]

    def drained(self) -> bool:
        """Nothing left to publish and no camera held (segments in hand are left to others)."""
        with self._cond:
            return not self._outbox and not self._held

    def stop(self) -> None:
        self._halt.set()
        with self._cond:
            self._cond.notify_all()

    def _put(self, item: _Frame | _Segment | _Closed) -> None:
        with self._cond:
            self._outbox.append(item)
            if len(self._outbox) > self.d.outbox_max:
                self._drop_oldest_frame()
            self._cond.notify_all()

    def _drop_oldest_frame(self) -> None:
        for i, item in enumerate(self._outbox):
            if isinstance(item, _Frame):
                del self._outbox[i]
                self.stats.dropped += 1
                if self.stats.dropped in (1, 10, 100) or self.stats.dropped % 1000 == 0:
                    log.warning("Redis unreachable and %d messages waiting: %d dropped so far", self.d.outbox_max, self.stats.dropped)
                return

    # -- the thread --------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = LoopBackoff(Backoff(0.2, self.d.retry_max_s))
        beat_s = self.d.heartbeat_ms / 1000
        while not self._halt.is_set():
            try:
                if time.monotonic() >= self._next_beat:
                    self._heartbeat()
                    self._next_beat = time.monotonic() + beat_s
                self._flush()
                backoff.reset()
            except TRANSIENT as exc:
                if self._connected_at is not None:
                    log.warning("Redis unreachable (%s); retrying, cameras keep being analysed", exc)
                    self.stats.reconnects += 1
                self._connected_at = None
                self._beats_since_connect = 0
                self._next_beat = 0.0  # confirm ownership first thing after reconnecting
                backoff.wait(self._halt)
                continue
            except Exception:  # a bug must not silently stop the worker's Redis side
                log.exception("worker link failed; retrying")
                self._next_beat = 0.0
                backoff.wait(self._halt)
                continue
            with self._cond:
                if not self._outbox and not self._halt.is_set():
                    self._cond.wait(max(0.0, min(beat_s, self._next_beat - time.monotonic())))
        try:
            self.members.leave()
        except TRANSIENT:
            pass

    def _heartbeat(self) -> None:
        members = self.members.beat()
        if self._connected_at is None:
            self._connected_at = time.monotonic()
            log.info("connected to Redis; %d worker(s) live", members)
        self._beats_since_connect += 1
        self._renew()
        self._publish_costs()
        self._touch_segments()
        if self.draining.is_set() or self._beats_since_connect < 2:
            return
        self._balance(members)
        self._claim_segments()

    def _renew(self) -> None:
        with self._cond:
            items = [(self.keys.camera_lease(c), self.keys.clock(c), h.clock) for c, h in self._held.items()]
        for key, ok in self.leases.renew(items).items():
            if ok:
                continue
            cam = key.removeprefix(self.keys.camera_lease(""))
            log.warning("camera %s: lease held by another worker now; dropping it", cam)
            self.stats.lost += 1
            with self._cond:
                self._held.pop(cam, None)
                self._costs.pop(cam, None)
                self._outbox = deque(i for i in self._outbox if not (isinstance(i, _Frame) and i.message.camera_id == cam))
            self.orders.put(StopCamera(cam, lost=True))

    def _publish_costs(self) -> None:
        with self._cond:
            costs = {c: round(v, 5) for c, v in self._costs.items() if c in self._held}
            self._costs = dict(costs)
        if costs:
            self.r.hset(self.keys.costs, mapping=costs)

    def _weights(self) -> dict[str, float]:
        """The configured weights, scaled by what the cameras' owners measured (`measured_weights`)."""
        measured = {}
        for k, v in (self.r.hgetall(self.keys.costs) or {}).items():
            try:
                measured[k.decode() if isinstance(k, bytes) else k] = float(v)
            except ValueError:
                continue
        return measured_weights(self.weights, measured)

    def _balance(self, members: int) -> None:
        ids = sorted(self.cameras)
        owners = dict(zip(ids, self.leases.owners([self.keys.camera_lease(c) for c in ids])))
        weights = self._weights()
        with self._cond:
            held = {c: weights[c] for c, h in self._held.items() if not h.stopping}
        free = {c: weights[c] for c, o in owners.items() if o is None and c not in self._held}
        plan = balance(held, free, sum(weights.values()), members)
        for cam in plan.claim:
            if not self.leases.claim(self.keys.camera_lease(cam)):
                continue  # another worker was quicker
            clock = read_clock(self.r, self.keys.clock(cam))
            with self._cond:
                self._held[cam] = _Held(self.cameras[cam], clock)
            log.info("camera %s: claimed (%d worker(s) live)%s", cam, members,
                     f"; stream time continues from {clock.pts:.1f} s" if clock else "")  # fmt: skip
            self.orders.put(StartCamera(self.cameras[cam], clock))
        for cam in plan.release:
            with self._cond:
                self._held[cam].stopping = True
            log.info("camera %s: releasing it to balance %d worker(s)", cam, members)
            self.orders.put(StopCamera(cam, lost=False))

    def _touch_segments(self) -> None:
        """Reset the idle time of the tasks in hand, so nobody takes them over while this worker lives."""
        ids = list(self._segments)
        if not ids:
            return
        try:
            self.r.xclaim(self.keys.segments, self.d.worker_group, self.worker_id, 0, ids, justid=True)
        except redis.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            ensure_group(self.r, self.keys.segments, self.d.worker_group)  # Redis restarted: the queue is gone

    def _claim_segments(self) -> None:
        free = self.d.segment_slots - len(self._segments)
        if free <= 0:
            return
        stream, group = self.keys.segments, self.d.worker_group
        try:
            # first what a dead worker left (idle longer than a lease), then new tasks
            _, entries, *_ = self.r.xautoclaim(stream, group, self.worker_id, min_idle_time=self.d.lease_ms, start_id="0-0", count=free)
            entries = [e for e in entries if e and e[1]]
            if entries:
                log.info("%d segment task(s) taken over from a worker that stopped renewing them", len(entries))
            if len(entries) < free:
                reply = self.r.xreadgroup(group, self.worker_id, {stream: ">"}, count=free - len(entries))
                entries += [e for _, es in reply for e in es]
        except redis.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            ensure_group(self.r, stream, group)
            return
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            try:
                task = SegmentTask.from_json(fields[b"data"])
            except (KeyError, TypeError, ValueError) as exc:
                log.error("segment task %s is unreadable (%s); acknowledged and skipped", eid, exc)
                self.r.xack(stream, group, eid)
                continue
            self._segments[eid] = task
            log.info("segment %d/%d of %s (%s): analysing %.0f–%s s", task.index + 1, task.count, task.camera_id, task.job,
                     task.start, f"{task.end:.0f}" if task.end is not None else "end")  # fmt: skip
            self.orders.put(StartSegment(task, eid))

    def _flush(self) -> None:
        while True:
            with self._cond:
                if not self._outbox:
                    return
                item = self._outbox[0]
            self._send(item)
            with self._cond:
                if self._outbox and self._outbox[0] is item:
                    self._outbox.popleft()

    def _send(self, item: _Frame | _Segment | _Closed) -> None:
        ttl_ms = self.d.evidence_ttl_s * 1000
        maxlen = self.d.stream_maxlen or None
        if isinstance(item, _Frame):
            cam = self.cameras.get(item.message.camera_id)
            if item.message.camera_id not in self._held:
                return  # lost meanwhile: another worker reports this camera now
            pipe = self.r.pipeline(transaction=True)
            if item.image is not None and item.message.image_key:
                pipe.set(item.message.image_key, item.image, px=ttl_ms)
                if item.clip is not None:
                    pipe.set(clip_key(item.message.image_key), item.clip, px=ttl_ms)
            pipe.xadd(self._stream(item.message.camera_id, cam.site if cam else ""), encode(item.message), maxlen=maxlen, approximate=True)
            pipe.execute()
            self.stats.published += 1
        elif isinstance(item, _Segment):
            pipe = self.r.pipeline(transaction=True)
            for key, data in item.images:
                pipe.set(key, data, px=ttl_ms)
            pipe.xadd(self._stream(item.result.camera_id, item.result.site), encode(item.result), maxlen=maxlen, approximate=True)
            pipe.xack(self.keys.segments, self.d.worker_group, item.entry_id)
            pipe.execute()
            self._segments.pop(item.entry_id, None)
            self.stats.segments_done += 1
        else:
            with self._cond:
                held = self._held.get(item.camera_id)
            if held is not None:
                self.leases.release(self.keys.camera_lease(item.camera_id), self.keys.clock(item.camera_id), held.clock)
                log.info("camera %s: released%s", item.camera_id, f" at {held.clock.pts:.1f} s" if held.clock else "")
            with self._cond:
                self._held.pop(item.camera_id, None)

    def _stream(self, camera_id: str, site: str) -> str:
        return self.keys.events(shard_of(shard_key(camera_id, site), self.keys.shards))
