"""What a distributed deployment is doing, read from Redis: `citypatrol cluster status`.

An operator running workers and casekeepers on several servers needs one answer to "is every
camera watched, and are its cases being built?". Everything needed is already in Redis (see
`distributed/protocol.py`): live members, camera and shard leases, measured costs, each camera's stream
clock (written by its owner every heartbeat: the capture time of its last analysed frame) and
how far its events are applied (written by the
casekeeper), the event streams' backlog and the dead letters. `read_cluster` gathers it in a few
round trips without changing anything; `findings` (pure) says what needs a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import redis

from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.distributed.protocol import Keys, shard_key, shard_of
from citypatrol.streams.open import SourceKind, source_kind

APPLIED_BEHIND_WARN_S = 60.0  # a camera whose events wait longer than this for a casekeeper is reported
SILENT_WARN_S = 120.0  # a held live camera with no analysed frame for this long is reported
DEAD_SHOWN = 3  # newest dead letters whose errors are shown


@dataclass(frozen=True)
class Member:
    id: str
    expires_in_s: float  # until its membership lapses unless it beats again


@dataclass(frozen=True)
class CameraReport:
    camera_id: str
    shard: int
    owner: str | None  # the worker holding its lease; None = nobody analyses it
    cores: float | None  # what it costs its owner, as measured; None = not measured yet
    clock: datetime | None  # wall time of the last frame its owner analysed
    applied: datetime | None  # wall time of the last of its events a casekeeper applied
    live: bool = True  # a live stream (its clock follows the wall clock), not recorded footage

    @property
    def behind_s(self) -> float | None:
        """How long its newest analysed frame has waited for a casekeeper (0 when caught up)."""
        if self.clock is None or self.applied is None:
            return None
        return max(0.0, (self.clock - self.applied).total_seconds())


@dataclass(frozen=True)
class ShardState:
    shard: int
    owner: str | None  # the casekeeper holding its lease
    length: int  # entries retained in its event stream
    pending: int  # delivered to a casekeeper, not yet acknowledged
    unread: int | None  # not yet delivered to any casekeeper (None: Redis too old to say)


@dataclass(frozen=True)
class ClusterStatus:
    prefix: str
    workers: tuple[Member, ...]
    casekeepers: tuple[Member, ...]
    cameras: tuple[CameraReport, ...]
    shards: tuple[ShardState, ...]
    dead: int  # messages set aside by casekeepers for a person
    segments_queued: int  # recorded-footage segments not yet taken by a worker
    findings: tuple[str, ...] = field(default=())
    dead_recent: tuple[str, ...] = field(default=())  # why the newest dead letters were set aside

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        d = asdict(self)
        for cam, raw in zip(self.cameras, d["cameras"]):
            raw["behind_s"] = cam.behind_s
        return d


def findings(workers: Sequence[Member], casekeepers: Sequence[Member], cameras: Sequence[CameraReport],
             shards: Sequence[ShardState], dead: int, *, now: datetime | None = None,
             behind_warn_s: float = APPLIED_BEHIND_WARN_S, silent_warn_s: float = SILENT_WARN_S) -> list[str]:
    """What needs a person, one plain sentence each; empty when all is well.

    `now`: the time to judge silent cameras by (None: they are not judged).
    """
    out: list[str] = []
    if cameras and not workers:
        out.append("no worker is running: no camera is analysed")
    if not casekeepers:
        out.append("no casekeeper is running: events wait in Redis and no case is built")
    unowned = [c.camera_id for c in cameras if c.owner is None]
    if unowned and workers:
        out.append(f"{len(unowned)} camera(s) held by no worker: {', '.join(unowned[:10])}{' …' if len(unowned) > 10 else ''}")
    orphan = [s.shard for s in shards if s.owner is None and (s.pending or s.unread)]
    if orphan and casekeepers:
        out.append(f"shard(s) {', '.join(map(str, orphan))} have events waiting and no casekeeper")
    for cam in cameras:
        if now is not None and cam.live and cam.owner is not None and cam.clock is not None:
            silent = (now - cam.clock).total_seconds()
            if silent > silent_warn_s:
                out.append(f"camera {cam.camera_id}: held by {cam.owner} but no frame analysed for {silent:.0f} s (camera offline?)")
        behind = cam.behind_s
        if behind is not None and behind > behind_warn_s:
            out.append(f"camera {cam.camera_id}: events applied {behind:.0f} s behind its analysis")
    if dead:
        out.append(f"{dead} message(s) set aside as dead letters (the newest reasons: `cluster status` output, `dead_recent`)")
    return out


def read_cluster(r: redis.Redis, config: Config) -> ClusterStatus:
    """Read the deployment of `config` from Redis (read-only). Raises redis errors when unreachable."""
    d = config.distributed
    keys = Keys.of(d)
    cameras = [c for c in config.cameras if c.enabled]
    sec, usec = r.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)

    pipe = r.pipeline(transaction=False)
    pipe.zrangebyscore(keys.workers, now_ms, "+inf", withscores=True)
    pipe.zrangebyscore(keys.casekeepers, now_ms, "+inf", withscores=True)
    pipe.mget([keys.camera_lease(c.id) for c in cameras] or ["-"])
    pipe.mget([keys.shard_lease(k) for k in range(d.shards)])
    pipe.hgetall(keys.costs)
    pipe.hgetall(keys.applied)
    for c in cameras:
        pipe.hget(keys.clock(c.id), "wall")
    pipe.xlen(keys.dead)
    for k in range(d.shards):
        pipe.xlen(keys.events(k))
    pipe.xrevrange(keys.dead, count=DEAD_SHOWN)
    replies = pipe.execute()
    dead_entries = replies.pop()

    workers_raw, keepers_raw, cam_owners, shard_owners, costs, applied = replies[:6]
    clocks = replies[6 : 6 + len(cameras)]
    dead = int(replies[6 + len(cameras)])
    lengths = [int(n) for n in replies[7 + len(cameras) :]]

    def members(raw) -> tuple[Member, ...]:  # noqa: ANN001 (redis reply)
        return tuple(Member(_text(m), round((score - now_ms) / 1000, 1)) for m, score in raw)

    costs_by_cam = {_text(k): _float(v) for k, v in costs.items()}
    applied_by_cam = {_text(k): _mark_wall(v) for k, v in applied.items()}
    camera_states = tuple(
        CameraReport(
            camera_id=c.id,
            shard=shard_of(shard_key(c.id, c.site), d.shards),
            owner=_text(owner) if owner is not None else None,
            cores=costs_by_cam.get(c.id),
            clock=_datetime(clock),
            applied=applied_by_cam.get(c.id),
            live=source_kind(c.source) is SourceKind.live,
        )
        for c, owner, clock in zip(cameras, cam_owners, clocks)
    )
    shard_states = tuple(
        ShardState(k, _text(owner) if owner is not None else None, length, *_group_backlog(r, keys.events(k), d.casekeeper_group, length))
        for k, (owner, length) in enumerate(zip(shard_owners, lengths))
    )
    workers, keepers = members(workers_raw), members(keepers_raw)
    return ClusterStatus(
        prefix=d.prefix,
        workers=workers,
        casekeepers=keepers,
        cameras=camera_states,
        shards=shard_states,
        dead=dead,
        segments_queued=_group_backlog(r, keys.segments, d.worker_group, r.xlen(keys.segments))[1] or 0,
        findings=tuple(findings(workers, keepers, camera_states, shard_states, dead, now=now)),
        dead_recent=tuple(_dead_reason(fields) for _, fields in dead_entries),
    )


def _dead_reason(fields: dict) -> str:
    """One dead letter as a line: which camera's message, from which stream, and the error."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    error = f.get("error", "(no error recorded)")[:300]
    where = ", ".join(x for x in (f"camera {f['camera']}" if f.get("camera") else "", f.get("stream", "")) if x)
    return f"{where}: {error}" if where else error


def _group_backlog(r: redis.Redis, stream: str, group: str, length: int) -> tuple[int, int | None]:
    """(pending, unread) of `group` on `stream`; a stream without the group has all of it unread."""
    if length == 0:
        return 0, 0
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream
        return 0, length
    for g in groups:
        if _text(g.get("name", b"")) == group:
            lag = g.get("lag")
            return int(g.get("pending", 0)), int(lag) if lag is not None else None
    return 0, length


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _float(v: bytes | str | None) -> float | None:
    try:
        return float(_text(v)) if v is not None else None
    except ValueError:
        return None


def _datetime(v: bytes | str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(_text(v)) if v is not None else None
    except ValueError:
        return None


def _mark_wall(v: bytes | str) -> datetime | None:
    """The wall time of an applied mark ("pts|wall", see casekeeper._Mark)."""
    parts = _text(v).split("|", 1)
    return _datetime(parts[1]) if len(parts) == 2 else None
