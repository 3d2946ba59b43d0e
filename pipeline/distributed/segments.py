"""Recorded footage over many workers: files split into segments on a Redis Stream work queue.

`citypatrol batch-queue FILES…` cuts each file (one camera per file, as `citypatrol analyze`
names them) into segments of `distributed.segment_s` stream seconds, aligned to the camera's
cadence, and adds one task per segment to `<prefix>:segments`. Workers read it in their
consumer group beside their cameras (`segment_slots` at a time): a worker that dies leaves its
task pending, and another takes it over (XAUTOCLAIM) once it has been idle for a lease time
(the holder touches its tasks at every heartbeat).

Boundaries. A segment owns the events of [start, end). A problem that began before `start`
would reach its dwell inside the segment, but a tracker starting at `start` would see it only
from there; so each segment is analysed from `start - overlap` (the warm-up), with overlap ≥
the camera's longest dwell (default: that plus two cadence steps), and what the warm-up yields
is not reported: it belongs to the previous segment. Frames are taken on the same cadence
grid as a single batch run over the whole file (the worker seeks to the keyframe before the
warm-up and starts its cadence gate on the whole file's grid), so the cases match that run's,
and a segment late in a long file costs what its own minutes cost, not everything before them.

Order. A file's segments are analysed in parallel, but its events must reach the case builder
in stream order: each segment's result goes out as one message once the segment is complete,
and the casekeeper applies a file's segments in index order, holding (un-acknowledged) any
that arrive early. The job's progress (`applied:<camera>` = last segment applied) is in
`<prefix>:job:<id>`, which `batch-queue --wait` watches.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.distributed.protocol import Keys
from citypatrol.pipeline.distributed.redis_client import ensure_group
from citypatrol.streams.frame import Frame
from citypatrol.streams.source import Source, SourceStats


@dataclass(frozen=True)
class SegmentTask:
    job: str
    camera_id: str
    file: str
    index: int
    count: int
    start: float  # events of [start, end) are this segment's
    end: float | None  # None = to the end of the file
    warmup: float  # analysis starts here (≤ start)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "SegmentTask":
        return cls(**json.loads(text))


def longest_dwell(config: Config, camera: Camera) -> float:
    """The longest dwell any enabled rule or zone of this camera waits for."""
    rules = config.rules_for(camera)
    dwells = [r.dwell_s for r in (rules.illegal_parking, rules.street_vending, rules.garbage, rules.billboard) if r.enabled]
    dwells += [z.dwell_s for z in camera.zones if z.dwell_s is not None]
    return max(dwells, default=0.0)


def plan_segments(job: str, camera: Camera, duration_s: float | None, segment_s: float, overlap_s: float) -> list[SegmentTask]:
    """Segments of one file: boundaries on the cadence grid; an unknown duration gives one segment."""
    cadence = camera.cadence_s
    length = max(cadence, round(segment_s / cadence) * cadence)
    count = 1 if not duration_s else max(1, math.ceil(duration_s / length - 1e-9))
    tasks = []
    for k in range(count):
        start = k * length
        warmup = max(0.0, math.floor((start - overlap_s) / cadence + 1e-9) * cadence)
        end = None if k == count - 1 else (k + 1) * length
        tasks.append(SegmentTask(job, camera.id, camera.source, k, count, start, end, warmup))
    return tasks


def segment_camera(config: Config, task: SegmentTask) -> Camera:
    """The camera a task's file is analysed as: the config's camera of that id lends its settings."""
    base = next((c for c in config.cameras if c.id == task.camera_id), None)
    if base is not None:
        return base.model_copy(update={"source": task.file})
    return Camera(id=task.camera_id, name=Path(task.file).name, source=task.file)


def enqueue_files(r: redis.Redis, config: Config, cameras: Sequence[Camera], durations: Sequence[float | None],
                  job: str | None = None) -> tuple[str, list[SegmentTask]]:
    """Add every segment of every file to the work queue; returns the job id and the tasks."""
    d = config.distributed
    keys = Keys.of(d)
    job = job or datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    tasks: list[SegmentTask] = []
    for cam, duration in zip(cameras, durations):
        overlap = d.segment_overlap_s if d.segment_overlap_s is not None else longest_dwell(config, cam) + 2 * cam.cadence_s
        tasks += plan_segments(job, cam, duration, d.segment_s, overlap)
    ensure_group(r, keys.segments, d.worker_group)
    pipe = r.pipeline(transaction=True)
    info = {"created": datetime.now(UTC).isoformat(), "cameras": json.dumps([c.id for c in cameras])}
    info.update({f"segments:{c.id}": str(sum(t.camera_id == c.id for t in tasks)) for c in cameras})
    pipe.hset(keys.job(job), mapping=info)
    for t in tasks:
        pipe.xadd(keys.segments, {"data": t.to_json()})
    pipe.execute()
    return job, tasks


def job_progress(r: redis.Redis, keys: Keys, job: str) -> dict[str, tuple[int, int]] | None:
    """camera → (segments applied, segments) of a job; None if Redis does not know the job."""
    h = {k.decode(): v.decode() for k, v in r.hgetall(keys.job(job)).items()}
    if not h:
        return None
    out = {}
    for cam in json.loads(h.get("cameras", "[]")):
        total = int(h.get(f"segments:{cam}", 0))
        out[cam] = (int(h.get(f"applied:{cam}", -1)) + 1, total)
    return out


class SegmentSource(Source):
    """The frames of one segment (warm-up included) out of a recorded source opened at the warm-up."""

    def __init__(self, inner: Source, task: SegmentTask, board_id: str) -> None:
        super().__init__(board_id, inner.source)
        self.inner, self.task = inner, task
        self.yielded = 0

    def frames(self) -> Iterator[Frame]:
        end = self.task.end
        for frame in self.inner.frames():  # from the warm-up on: the inner source was opened with start_s=warmup
            if end is not None and frame.pts >= end - 1e-6:
                break
            self.yielded += 1
            yield Frame(self.camera_id, frame.pts, frame.wall, frame.image, frame.keyframe, frame.index)

    @property
    def stats(self) -> SourceStats:
        return self.inner.stats

    def close(self) -> None:
        self.inner.close()
        super().close()
