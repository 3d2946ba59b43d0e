"""`citypatrol casekeeper`: the event streams → cases in the store (PostgreSQL), one shard at a time.

Reads top to bottom: open the store (waiting for it if it is down), then loop: heartbeat when
due (membership, renew the shard leases, claim or release shards for a fair share, as workers
do with cameras); prepare newly claimed shards (take over what the previous owner left pending,
restore the open cases of the shard's cameras from the store into a fresh `CaseBuilder`, and the
per-camera high-water marks); read the owned streams in the consumer group; apply each message;
acknowledge it.

Applying a frame message: skip it if its camera's stream time is not past the high-water mark
(a re-delivery or a replay: its changes are in the store); else add its events to the shard's
builder, tick the camera's clock, write every change (`CaseWriter`: idempotent) and the evidence
of each opened or reopened case, then move the mark (`<prefix>:applied`) and XACK, in that order.
A database error (down, restarting, connection killed) is retried with backoff for as long as it
takes, heartbeats going on meanwhile, so the message stays pending and nothing is lost or applied
twice. A message that cannot be applied for another reason (a bug) is set aside on
`<prefix>:dead` with the error, acknowledged, and counted.

Segment results (`batch-queue`) are applied per file in segment order; one that arrives early
waits, unacknowledged, for its predecessor (see `distributed/segments.py`).

`--replay`: re-read every retained entry of the owned streams (XGROUP SETID 0), with high-water
marks from the store only (after restoring the database from a backup, say). Stopping
(SIGTERM/SIGINT): finish the message in hand, release the shard leases, leave.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import cv2
import numpy as np
import redis
from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_exception_type

from citypatrol.pipeline.cases.builder import CaseBuilder, CaseChange, ChangeKind
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.distributed.protocol import FrameMessage, Keys, SegmentResult, balance, clip_key, decode, shard_key, shard_of
from citypatrol.pipeline.distributed.redis_client import TRANSIENT, Leases, Members, autoclaim_all, connect, ensure_group, is_nogroup, redact_redis_url
from citypatrol.pipeline.sinks.case_writer import CaseWriter, ClipSource
from citypatrol.pipeline.sinks.second_stage import Check
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.store.case_store import Store, open_store
from citypatrol.pipeline.store.engine import unreachable
from citypatrol.streams.backoff import Backoff, LoopBackoff

log = logging.getLogger("citypatrol.casekeeper")

T = TypeVar("T")
READ_COUNT = 100


@dataclass
class _Mark:
    """How far a camera's events are applied: (stream time, wall time) of its last applied message."""

    pts: float
    wall: datetime

    def covers(self, m: FrameMessage) -> bool:
        return m.pts <= self.pts + 1e-6 and m.wall <= self.wall

    def encode(self) -> str:
        return f"{self.pts!r}|{self.wall.isoformat()}"

    @classmethod
    def decode(cls, text: bytes | str) -> "_Mark | None":
        try:
            pts, wall = (text.decode() if isinstance(text, bytes) else text).split("|", 1)
            return cls(float(pts), datetime.fromisoformat(wall))
        except ValueError:
            return None


@dataclass
class _Shard:
    k: int
    stream: str
    builder: CaseBuilder | None = None  # None until prepared
    marks: dict[str, _Mark] = field(default_factory=dict)
    pending_cursor: str | None = "0"  # reading this consumer's pending entries from here; None = done, read new ones
    releasing: bool = False
    waiting: dict[tuple[str, str], dict[int, tuple[str, SegmentResult]]] = field(default_factory=dict)
    segments_applied: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class CasekeeperStats:
    applied: int = 0  # messages whose changes were written
    skipped: int = 0  # messages already applied (re-delivered or replayed)
    changes: int = 0
    dead: int = 0
    segments: int = 0


def default_keeper_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Casekeeper:
    def __init__(self, config: Config, *, keeper_id: str | None = None, stop: threading.Event | None = None,
                 replay: bool = False, store: Store | None = None, check: Check | None = None) -> None:
        self.config = config
        self.d = config.distributed
        self.keys = Keys.of(self.d)
        self.id = keeper_id or default_keeper_id()
        self.stop = stop or threading.Event()
        self.replay = replay
        self.store = store
        self.check = check
        self.stats = CasekeeperStats()
        self.shards: dict[int, _Shard] = {}
        self.r = connect(self.d.redis_url)
        self.leases = Leases(self.r, self.id, self.d.lease_ms)
        self.members = Members(self.r, self.keys.casekeepers, self.id, self.d.lease_ms)
        self._next_beat = 0.0
        self._beats = 0
        self._redis_ok = False
        self._busy = False  # applying a message: shard releases wait until it is done
        self._regroup = False  # a consumer group went missing: create the owned shards' groups again
        self._known_cameras = {c.id for c in config.cameras}

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> CasekeeperStats:
        log.info("casekeeper %s: %d shard(s), Redis %s%s", self.id, self.d.shards, redact_redis_url(self.d.redis_url),
                 " (replaying the retained events)" if self.replay else "")  # fmt: skip
        own_store = self.store is None
        try:
            if own_store:
                self.store = self._retry_db(lambda: open_store(self.config.storage.database_url), "opening the database")
            policy = ReviewPolicy(self.config.review) if self.config.dispatch.enabled else None
            self.writer = CaseWriter(self.store, self.config, self.config.cameras, policy=policy, check=self.check)
            for cam in self.config.cameras:
                self._retry_db(lambda c=cam: self.store.upsert_camera(c), "recording the cameras")
            self._loop()
        except _Stopped:
            log.info("stopped while the database or Redis was unavailable; what is not acknowledged stays pending")
        finally:
            self._leave()
            if own_store and self.store is not None:
                self.store.close()
        self._log_stats()
        return self.stats

    def _loop(self) -> None:
        backoff = LoopBackoff(Backoff(0.2, self.d.retry_max_s))
        next_log = time.monotonic() + 60
        while not self.stop.is_set():
            try:
                if self._regroup:
                    for shard in self.shards.values():
                        ensure_group(self.r, shard.stream, self.d.casekeeper_group)
                        shard.pending_cursor = "0"
                    self._regroup = False
                self._beat_if_due()
                self._release_marked()
                for shard in list(self.shards.values()):
                    if shard.builder is None and not self.stop.is_set():
                        self._prepare(shard)
                self._read_and_apply()
                backoff.reset()
            except TRANSIENT as exc:
                self._redis_down(exc)
                backoff.wait(self.stop)
            except redis.ResponseError as exc:
                if not is_nogroup(exc):
                    raise
                log.warning("consumer group missing (Redis restarted?): creating it again")
                self._regroup = True
            if time.monotonic() > next_log:
                self._log_stats()
                next_log = time.monotonic() + 60

    def _read_and_apply(self) -> None:
        ready = [s for s in self.shards.values() if s.builder is not None and not s.releasing]
        if not ready:
            self.stop.wait(min(1.0, self.d.heartbeat_ms / 1000))
            return
        streams = {s.stream: s.pending_cursor or ">" for s in ready}
        block = None if any(s.pending_cursor for s in ready) else max(100, min(1000, self.d.heartbeat_ms // 2))
        reply = self.r.xreadgroup(self.d.casekeeper_group, self.id, streams, count=READ_COUNT, block=block)
        by_stream = {(name.decode() if isinstance(name, bytes) else name): entries for name, entries in reply}
        for shard in ready:
            entries = by_stream.get(shard.stream, [])
            if shard.pending_cursor is not None:
                if not entries:
                    shard.pending_cursor = None  # caught up with what was pending: new entries next
                    continue
                shard.pending_cursor = _id(entries[-1][0])
            for entry_id, fields in entries:
                if self.stop.is_set() or shard.k not in self.shards:
                    return
                if fields:  # a pending entry trimmed from the stream comes back empty
                    self._apply_entry(shard, _id(entry_id), fields)
                else:
                    self._retry_redis(lambda e=_id(entry_id): self.r.xack(shard.stream, self.d.casekeeper_group, e))

    # -- applying ----------------------------------------------------------------------------------

    def _apply_entry(self, shard: _Shard, entry_id: str, fields: dict) -> None:
        self._busy = True
        try:
            try:
                message = decode(fields)
            except ValueError as exc:
                self._dead(shard, entry_id, fields, str(exc))
                return
            if isinstance(message, FrameMessage):
                mark = self._apply_frame(shard, message, entry_id, fields)
                if mark is not False:
                    self._ack(shard, entry_id, marks={message.camera_id: mark} if mark else {})
            else:
                self._apply_segment(shard, entry_id, message)
        finally:
            self._busy = False

    def _apply_frame(self, shard: _Shard, m: FrameMessage, entry_id: str, fields: dict) -> _Mark | None | bool:
        """Apply one frame message; the camera's new mark, None if skipped, False if set aside."""
        cam = m.camera_id
        mark = shard.marks.get(cam)
        if mark is not None and mark.covers(m):
            self.stats.skipped += 1
            return None
        if mark is not None and m.pts < mark.pts:
            log.warning("camera %s: stream time went back from %.1f to %.1f s (its clock was lost?)", cam, mark.pts, m.pts)
        builder = shard.builder
        changes = builder.add_all(m.events) + builder.tick(cam, m.pts, m.wall)
        try:
            self._write(changes, m.image_key)
        except Exception as exc:  # not an outage: the database refused it
            self._dead(shard, entry_id, fields, f"{type(exc).__name__}: {exc}")
            return False
        self.stats.applied += 1
        self.stats.changes += len(changes)
        shard.marks[cam] = _Mark(m.pts, m.wall)
        return shard.marks[cam]

    def _write(self, changes: list[CaseChange], image_key: str | None) -> None:
        blobs: list[bytes | None] | None = None  # [frame JPEG, clip], read and decoded once per message
        image = None
        for change in changes:
            evidence = change.kind in (ChangeKind.opened, ChangeKind.reopened)
            if evidence and blobs is None:
                keys = [image_key, clip_key(image_key)] if image_key else []
                blobs = self._retry_redis(lambda: self.r.mget(keys)) if keys else [None, None]
                image = decode_frame(blobs[0])
            frame = image if evidence else None
            self._retry_db(lambda c=change, f=frame: self.writer.persist(c, f), f"writing case {change.case.case_id}", raise_other=True)
            if evidence:
                clip = ClipSource(mp4=blobs[1]) if blobs[1] is not None else None
                self._retry_db(lambda c=change: self.writer.evidence(c, image, clip), f"evidence of {change.case.case_id}",
                               raise_other=True)  # fmt: skip

    def _apply_segment(self, shard: _Shard, entry_id: str, result: SegmentResult) -> None:
        key = (result.job, result.camera_id)
        done = self._segments_applied(shard, key)
        if result.index <= done:
            self.stats.skipped += 1
            self._ack(shard, entry_id)
            return
        shard.waiting.setdefault(key, {}).setdefault(result.index, (entry_id, result))
        while done + 1 in shard.waiting.get(key, {}):
            eid, res = shard.waiting[key].pop(done + 1)
            self._segment(shard, eid, res)
            done += 1
        if not shard.waiting.get(key):
            shard.waiting.pop(key, None)

    def _segment(self, shard: _Shard, entry_id: str, res: SegmentResult) -> None:
        cam = res.camera_id
        if cam not in self._known_cameras:
            camera = Camera(id=cam, name=res.name, source=res.name or cam, site=res.site)
            self._retry_db(lambda: self.store.upsert_camera(camera), f"recording camera {cam}", raise_other=True)
            self._known_cameras.add(cam)
        if res.error:
            log.error("segment %d/%d of %s (%s) came with an error: %s", res.index + 1, res.count, cam, res.job, res.error)
        for m in res.frames:
            if self._apply_frame(shard, m, entry_id, {"kind": "frame", "camera": cam, "data": "(from a segment)"}) is False:
                break
        shard.segments_applied[(res.job, cam)] = res.index
        self.stats.segments += 1
        log.info("segment %d/%d of %s (%s) applied (worker %s)", res.index + 1, res.count, cam, res.job, res.worker)
        mark = shard.marks.get(cam)
        self._ack(shard, entry_id, marks={cam: mark} if mark else {}, job=(res.job, cam, res.index))

    def _segments_applied(self, shard: _Shard, key: tuple[str, str]) -> int:
        if key not in shard.segments_applied:
            raw = self._retry_redis(lambda: self.r.hget(self.keys.job(key[0]), f"applied:{key[1]}"))
            shard.segments_applied[key] = int(raw) if raw is not None else -1
        return shard.segments_applied[key]

    def _ack(self, shard: _Shard, entry_id: str, *, marks: dict[str, _Mark] | None = None, job: tuple[str, str, int] | None = None) -> None:
        def send() -> None:
            pipe = self.r.pipeline(transaction=True)
            if marks:
                pipe.hset(self.keys.applied, mapping={c: m.encode() for c, m in marks.items()})
            if job is not None:
                pipe.hset(self.keys.job(job[0]), f"applied:{job[1]}", job[2])
            pipe.xack(shard.stream, self.d.casekeeper_group, entry_id)
            pipe.execute()

        self._retry_redis(send)

    def _dead(self, shard: _Shard, entry_id: str, fields: dict, error: str) -> None:
        self.stats.dead += 1
        log.error("%s entry %s set aside on %s: %s", shard.stream, entry_id, self.keys.dead, error)
        body = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        body.update({"stream": shard.stream, "entry": entry_id, "error": error[:2000]})
        self._retry_redis(lambda: self.r.xadd(self.keys.dead, body, maxlen=100_000, approximate=True))
        self._ack(shard, entry_id)

    # -- shards --------------------------------------------------------------------------------------

    def _beat_if_due(self) -> None:
        if time.monotonic() < self._next_beat:
            return
        members = self.members.beat()
        if not self._redis_ok:
            log.info("connected to Redis; %d casekeeper(s) live", members)
            self._redis_ok = True
        self._beats += 1
        lost = [k for k, ok in self.leases.renew([(self.keys.shard_lease(k), "", None) for k in self.shards]).items() if not ok]
        for key in lost:
            k = int(key.rsplit(":", 1)[-1])
            log.warning("shard %d: lease held by another casekeeper now; dropping it", k)
            self.shards.pop(k, None)
        self._next_beat = time.monotonic() + self.d.heartbeat_ms / 1000
        if self._beats < 2 or self.stop.is_set():
            return  # after (re)connecting, own shards are renewed first; claims from the next beat on
        all_k = list(range(self.d.shards))
        owners = dict(zip(all_k, self.leases.owners([self.keys.shard_lease(k) for k in all_k])))
        held = {k: 1.0 for k, s in self.shards.items() if not s.releasing}
        free = {k: 1.0 for k, o in owners.items() if o is None and k not in self.shards}
        plan = balance({str(k): w for k, w in held.items()}, {str(k): w for k, w in free.items()}, float(self.d.shards), members)
        for item in plan.claim:
            k = int(item)
            if self.leases.claim(self.keys.shard_lease(k)):
                log.info("shard %d: claimed (%d casekeeper(s) live)", k, members)
                self.shards[k] = _Shard(k, self.keys.events(k))
        for item in plan.release:
            self.shards[int(item)].releasing = True

    def _release_marked(self) -> None:
        for k, shard in list(self.shards.items()):
            if shard.releasing and not self._busy:
                self.leases.release(self.keys.shard_lease(k), "", None)
                del self.shards[k]
                log.info("shard %d: released to balance the casekeepers", k)

    def _prepare(self, shard: _Shard) -> None:
        """A newly claimed shard: its stream and group, what the last owner left, the builder and marks."""
        group = self.d.casekeeper_group
        ensure_group(self.r, shard.stream, group)
        if self.replay:
            self.r.xgroup_setid(shard.stream, group, id="0", entries_read=0)
        taken = autoclaim_all(self.r, shard.stream, group, self.id, min_idle_ms=0)  # we hold the lease: all of it is ours
        cases = self._retry_db(lambda: self.store.unclosed_cases(), f"restoring shard {shard.k}")
        if cases is None:
            return
        n = self.d.shards
        mine = [c for c in cases if shard_of(shard_key(c.camera_id, c.site), n) == shard.k]
        builder = CaseBuilder.from_config(self.config)
        builder.restore(mine)
        for c in mine:  # a case's last sighting: its camera's events up to there are applied
            m = shard.marks.get(c.camera_id)
            if m is None or (c.last_seen_pts, c.last_seen_at) > (m.pts, m.wall):
                shard.marks[c.camera_id] = _Mark(c.last_seen_pts, c.last_seen_at)
        if not self.replay:
            for cam, raw in self.r.hgetall(self.keys.applied).items():
                cam = cam.decode()
                mark = _Mark.decode(raw)
                old = shard.marks.get(cam)
                if mark is not None and (old is None or mark.pts > old.pts):
                    shard.marks[cam] = mark
        shard.builder = builder
        shard.pending_cursor = "0"
        log.info("shard %d: ready (%d open or recent case(s) restored, %d pending entr%s taken over)", shard.k, len(mine), taken,
                 "y" if taken == 1 else "ies")  # fmt: skip

    # -- waiting and retrying -----------------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Wait, keeping the leases alive (a long database outage must not cost the shards)."""
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                self._beat_if_due()
            except TRANSIENT as exc:
                self._redis_down(exc)
            self.stop.wait(min(0.2, max(0.0, end - time.monotonic())))

    def _retry_db(self, fn: Callable[[], T], what: str, *, raise_other: bool = False) -> T | None:
        """`fn()` until the database takes it (raises _Stopped if stopped meanwhile). Other errors
        raise (`raise_other`) or are logged, giving None."""

        def before_sleep(state: RetryCallState) -> None:
            if state.attempt_number in (1, 6) or state.attempt_number % 30 == 1:
                log.warning("database unavailable while %s (%s); retrying", what,
                            " ".join(str(state.outcome.exception()).split())[:200])

        def sleep(seconds: float) -> None:
            if self.stop.is_set():
                raise _Stopped
            self._pause(seconds)

        retrying = Retrying(retry=retry_if_exception(unreachable), wait=Backoff(0.2, self.d.retry_max_s),
                            sleep=sleep, before_sleep=before_sleep)
        try:
            return retrying(fn)
        except _Stopped:
            raise
        except Exception as exc:
            if raise_other:
                raise
            log.error("%s failed: %s", what, exc)
            return None

    def _retry_redis(self, fn: Callable[[], T]) -> T:

        def sleep(seconds: float) -> None:
            if self.stop.is_set():
                raise _Stopped
            self.stop.wait(seconds)

        return Retrying(retry=retry_if_exception_type(TRANSIENT), wait=Backoff(0.2, self.d.retry_max_s), sleep=sleep,
                        before_sleep=lambda state: self._redis_down(state.outcome.exception()))(fn)

    def _redis_down(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.warning("Redis unreachable (%s); retrying", exc)
        self._redis_ok = False
        self._beats = 0
        self._next_beat = 0.0

    def _leave(self) -> None:
        try:
            for k in list(self.shards):
                self.leases.release(self.keys.shard_lease(k), "", None)
            self.members.leave()
        except TRANSIENT:
            pass  # the leases expire by themselves

    def _log_stats(self) -> None:
        s = self.stats
        log.info("casekeeper %s: shards %s; %d message(s) applied, %d skipped as already applied, %d change(s), %d segment(s), "
                 "%d set aside", self.id, sorted(self.shards), s.applied, s.skipped, s.changes, s.segments, s.dead)  # fmt: skip


def decode_frame(jpeg: bytes | None) -> np.ndarray | None:
    """A worker's evidence JPEG as a BGR image; None when missing or unreadable."""
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg is not None else None


class _Stopped(Exception):
    """Stopping while a write is still failing: leave the message pending for the next owner."""


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
