"""Distributed mode over Redis: the pure parts (key names, shards, balancing, messages).

How the pieces fit (the I/O lives in `distributed/redis_client.py`, `distributed/worker.py`, `distributed/casekeeper.py`,
`distributed/segments.py`):

- **Workers** (`citypatrol worker`) claim cameras through leases: `SET <prefix>:lease:cam:<id>
  <worker> NX PX lease_ms`, renewed every heartbeat by a compare-and-renew script. A worker that
  dies stops renewing; once the lease expires another worker claims the camera. Each worker
  holds at most its fair share of the work (`fair_share`), and a worker claims while it holds
  less than total / live workers and releases a camera while it would still hold at least its
  share without it, so a new worker gets its share as the others release extras. A camera's
  weight starts as its cadence (analysed frames per second, what the detector pays for); once
  its owner has measured what it really costs (`CostMeter`: the CPU of reading and decoding it
  plus its share of detection and analysis; a camera whose keyframes come less often than its
  cadence must have every frame decoded and can cost several times another), that measure,
  relative to the other cameras', scales the weight (`measured_weights`, in coarse steps, so
  noise does not move cameras around). Owners publish the costs in `<prefix>:cost`.
- **Time across takeover**: a camera's stream time (`pts`) restarts when a new worker opens it.
  The owner stores the camera's last analysed (pts, wall) with its lease (`<prefix>:clock:<id>`)
  at every heartbeat and on release; the next owner shifts its source's pts so that the stream
  time goes on as wall time went on (`continued_pts`). Dwell is measured again by the new
  worker's tracker, but the open case, its grace and its reopen window continue.
- **Events**: per analysed frame that has events (and otherwise every `tick_s`, so cases can
  expire), a worker adds one small JSON message to the event stream of the camera's shard
  (`<prefix>:events:<k>`, k = `shard_of(site or camera)`: cameras of one site share a shard,
  because cross-camera dedup needs one builder). The evidence frame travels beside the message,
  not in it: a JPEG under `<prefix>:img:…` with a TTL, written only for the first event of a new
  sighting (an event id this worker has not sent before), and beside it the evidence clip
  (`…:clip`, H.264 MP4: the camera's recent frames, or the span of a footage segment's file).
- **Casekeepers** (`citypatrol casekeeper`) claim shards with the same leases and fair share. The
  owner of a shard reads its stream in a consumer group (XREADGROUP), runs a `CaseBuilder` over
  it, writes each change to the store (`Store.apply_change`: idempotent by case id and event id)
  with its evidence, and only then XACKs. A new owner first XAUTOCLAIMs what the previous owner
  left pending. Per camera it keeps a high-water mark of the stream time applied (in memory, in
  `<prefix>:applied`, and from the stored cases), so a re-delivered or replayed message is
  skipped instead of counted again; case ids are deterministic, so even a full replay into an
  empty builder finds the cases it would open already stored.
- **Recorded footage** (`citypatrol batch-queue`) is split into segments on a work queue; see
  `distributed/segments.py`.
"""

from __future__ import annotations

import json
import math
import statistics
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from citypatrol.pipeline.config.models import Camera, DistributedConfig, category_of
from citypatrol.pipeline.types import Event

MESSAGE_VERSION = 1


# -- key names ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Every Redis key and stream of one deployment, under its prefix."""

    prefix: str
    shards: int

    @classmethod
    def of(cls, d: DistributedConfig) -> "Keys":
        return cls(d.prefix, d.shards)

    def camera_lease(self, camera_id: str) -> str:
        return f"{self.prefix}:lease:cam:{camera_id}"

    def shard_lease(self, shard: int) -> str:
        return f"{self.prefix}:lease:shard:{shard}"

    def clock(self, camera_id: str) -> str:
        return f"{self.prefix}:clock:{camera_id}"

    def events(self, shard: int) -> str:
        return f"{self.prefix}:events:{shard}"

    def all_events(self) -> list[str]:
        return [self.events(k) for k in range(self.shards)]

    def image(self, camera_id: str, pts: float) -> str:
        return f"{self.prefix}:img:{camera_id}:{int(round(pts * 1000))}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:members:workers"

    @property
    def casekeepers(self) -> str:
        return f"{self.prefix}:members:casekeepers"

    @property
    def applied(self) -> str:
        """Hash camera id → the stream time up to which its events are in the store."""
        return f"{self.prefix}:applied"

    @property
    def costs(self) -> str:
        """Hash camera id → the cores it keeps busy, as its last owner measured."""
        return f"{self.prefix}:cost"

    @property
    def segments(self) -> str:
        return f"{self.prefix}:segments"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def dead(self) -> str:
        """Messages a casekeeper could not apply for good (a bug, not an outage), kept for a person."""
        return f"{self.prefix}:dead"


def clip_key(image_key: str) -> str:
    """Where the evidence clip of a sighting waits beside its frame (same TTL); absent = no clip."""
    return f"{image_key}:clip"


def shard_of(key: str, shards: int) -> int:
    """The shard of a camera (or of its site): stable across processes and Python versions."""
    return zlib.crc32(key.encode("utf-8")) % shards


def shard_key(camera_id: str, site: str = "") -> str:
    """Cameras of one site share a shard (one builder dedups across them); others go by camera."""
    return f"site:{site}" if site else f"cam:{camera_id}"


def camera_weight(camera: Camera) -> float:
    """Relative cost of a camera: analysed frames per second."""
    return 1.0 / camera.cadence_s


# -- balancing ------------------------------------------------------------------------------------


def fair_share(total_weight: float, members: int) -> float:
    return total_weight / max(1, members)


@dataclass(frozen=True)
class Plan:
    claim: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


def balance(held: Mapping[str, float], free: Mapping[str, float], total_weight: float, members: int) -> Plan:
    """What one member should claim and release now, given the weights it holds and the free ones.

    Claim free items (heaviest first) while holding less than the fair share; with nothing to
    claim, release the heaviest item it can give up and still hold at least the share. A member
    that just released is at or above the share, so it does not claim the item back; one below
    the share takes it. With equal weights this converges to ceil(n / members) at most each.
    Releases go one per heartbeat, so the fleet rebalances gradually.
    """
    share = fair_share(total_weight, members)
    eps = 1e-9
    mine = sum(held.values())
    claims: list[str] = []
    for item, w in sorted(free.items(), key=lambda p: (-p[1], p[0])):
        if mine >= share - eps:
            break
        claims.append(item)
        mine += w
    if claims:
        return Plan(claim=tuple(claims))
    for item, w in sorted(held.items(), key=lambda p: (-p[1], p[0])):
        if mine - w >= share - eps:
            return Plan(release=(item,))
    return Plan()


def continued_pts(last_pts: float | None, last_wall: datetime | None, wall: datetime, step: float = 1e-3) -> float | None:
    """Stream time of a frame captured at `wall` on a camera last analysed at (last_pts, last_wall).

    None when the camera has no history (its pts start at the source's own). Never goes back: a
    clock that steps backwards (or a recording restarted) continues just after the last pts.
    """
    if last_pts is None or last_wall is None:
        return None
    return last_pts + max(step, (wall - last_wall).total_seconds())


# -- messages ---------------------------------------------------------------------------------------


def event_to_dict(e: Event) -> dict:
    return {
        "camera_id": e.camera_id, "category": e.category.value, "box": list(e.box), "zone_id": e.zone_id,
        "pts": e.pts, "wall": e.wall.isoformat(), "since_pts": e.since_pts, "score": e.score,
        "track_ids": list(e.track_ids), "classes": list(e.classes), "detail": e.detail, "model": e.model,
        "look": [round(v, 5) for v in e.look],
    }  # fmt: skip


def event_from_dict(d: Mapping) -> Event:
    return Event(
        camera_id=d["camera_id"], category=category_of(d["category"]), box=tuple(float(v) for v in d["box"]),  # type: ignore[arg-type]
        zone_id=d.get("zone_id"), pts=float(d["pts"]), wall=datetime.fromisoformat(d["wall"]),
        since_pts=float(d["since_pts"]), score=float(d["score"]), track_ids=tuple(d.get("track_ids", ())),
        classes=tuple(d.get("classes", ())), detail=d.get("detail", ""), model=d.get("model", ""),
        look=tuple(float(v) for v in d.get("look", ())),
    )  # fmt: skip


@dataclass(frozen=True)
class FrameMessage:
    """What a worker reports about one analysed frame: its events (maybe none: a tick)."""

    camera_id: str
    pts: float
    wall: datetime
    worker: str
    events: tuple[Event, ...] = ()
    image_key: str | None = None  # where the evidence JPEG waits (first event of a new sighting)

    def to_dict(self) -> dict:
        return {
            "camera": self.camera_id, "pts": self.pts, "wall": self.wall.isoformat(), "worker": self.worker,
            "events": [event_to_dict(e) for e in self.events], "image": self.image_key,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping) -> "FrameMessage":
        return cls(d["camera"], float(d["pts"]), datetime.fromisoformat(d["wall"]), d.get("worker", ""),
                   tuple(event_from_dict(e) for e in d.get("events", ())), d.get("image"))  # fmt: skip


@dataclass(frozen=True)
class SegmentResult:
    """A worker's whole result for one segment of a file, published once it is complete."""

    job: str
    camera_id: str
    index: int
    count: int
    worker: str
    frames: tuple[FrameMessage, ...] = ()
    error: str = ""
    site: str = ""
    name: str = ""

    def to_dict(self) -> dict:
        return {
            "job": self.job, "camera": self.camera_id, "index": self.index, "count": self.count, "worker": self.worker,
            "frames": [f.to_dict() for f in self.frames], "error": self.error, "site": self.site, "name": self.name,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping) -> "SegmentResult":
        return cls(d["job"], d["camera"], int(d["index"]), int(d["count"]), d.get("worker", ""),
                   tuple(FrameMessage.from_dict(f) for f in d.get("frames", ())), d.get("error", ""),
                   d.get("site", ""), d.get("name", ""))  # fmt: skip


def encode(message: FrameMessage | SegmentResult) -> dict[str, str]:
    """Stream entry fields: `kind`, `camera`, `data` (JSON)."""
    kind = "frame" if isinstance(message, FrameMessage) else "segment"
    body = {"v": MESSAGE_VERSION, **message.to_dict()}
    return {"kind": kind, "camera": message.camera_id, "data": json.dumps(body, ensure_ascii=False, separators=(",", ":"))}


def decode(fields: Mapping[bytes | str, bytes | str]) -> FrameMessage | SegmentResult:
    """Raises ValueError for an entry that is not a citypatrol message of a known version."""
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
    try:
        body = json.loads(f["data"])
        if body.get("v") != MESSAGE_VERSION:
            raise ValueError(f"message version {body.get('v')!r}, expected {MESSAGE_VERSION}")
        if f.get("kind") == "frame":
            return FrameMessage.from_dict(body)
        if f.get("kind") == "segment":
            return SegmentResult.from_dict(body)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a citypatrol event message: {type(exc).__name__}: {exc}") from None
    raise ValueError(f"unknown message kind {f.get('kind')!r}")


@dataclass
class TickGate:
    """When a camera's frame without events is still worth a message (every `tick_s` of stream time)."""

    tick_s: float
    _last: dict[str, float] = field(default_factory=dict)

    def due(self, camera_id: str, pts: float, has_events: bool) -> bool:
        last = self._last.get(camera_id)
        if has_events or last is None or pts - last >= self.tick_s - 1e-6:
            self._last[camera_id] = pts
            return True
        return False

    def forget(self, camera_id: str) -> None:
        self._last.pop(camera_id, None)


def ceil_share(n: int, members: int) -> int:
    """ceil(n / members): the most items of equal weight one member holds after balancing."""
    return math.ceil(n / max(1, members))


def weights(cameras: Iterable[Camera]) -> dict[str, float]:
    return {c.id: camera_weight(c) for c in cameras}


# -- measured cost ----------------------------------------------------------------------------------


def measured_weights(configured: Mapping[str, float], cost: Mapping[str, float], *, step: float = 0.5,
                     low: float = 0.5, high: float = 8.0) -> dict[str, float]:
    """Balancing weights: the configured ones, scaled where a camera's measured cost says so.

    Each measured camera's cost per unit of configured weight is compared with the median over the
    measured cameras; the factor is rounded to `step` and kept within [low, high], so cameras that
    cost about the same keep their configured weight (measurement noise moves nothing) and one
    that costs three times the others weighs three times. Cameras not measured yet keep factor 1.
    """
    ratios = {c: cost[c] / w for c, w in configured.items() if w > 0 and cost.get(c, 0) > 0}
    if not ratios:
        return dict(configured)
    mid = statistics.median(ratios.values())
    out = {}
    for c, w in configured.items():
        factor = ratios[c] / mid if c in ratios else 1.0
        out[c] = w * min(high, max(low, round(factor / step) * step))
    return out


class CostMeter:
    """The cores one camera keeps busy, smoothed: CPU seconds of work per wall second.

    Work = CPU spent reading and decoding it (read from its feed) + its share of each detector
    batch and its analysis time (added as they happen). The first `warmup_s` after the camera
    opened are left out: a new connection decodes every frame while it learns the keyframe spacing.
    """

    def __init__(self, *, started: float, warmup_s: float = 20.0, smoothing: float = 0.3) -> None:
        self.work_s = 0.0
        self.cores: float | None = None
        self._from = started + warmup_s
        self._alpha = smoothing
        self._last: tuple[float, float] | None = None  # (time, total work) at the previous sample

    def add_work(self, seconds: float) -> None:
        self.work_s += seconds

    def sample(self, decode_cpu_s: float, now: float) -> float | None:
        """Update with the feed's decode CPU so far at monotonic time `now`; the smoothed cores, once known."""
        if now < self._from:
            return None
        total = decode_cpu_s + self.work_s
        if self._last is not None and now > self._last[0]:
            rate = max(0.0, total - self._last[1]) / (now - self._last[0])
            self.cores = rate if self.cores is None else self._alpha * rate + (1 - self._alpha) * self.cores
        self._last = (now, total)
        return self.cores
