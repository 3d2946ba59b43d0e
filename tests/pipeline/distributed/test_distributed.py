"""Distributed mode end to end: real Redis (127.0.0.1:6379), real PostgreSQL, a real RTSP server on
loopback, real footage (a parking-lot frame with parked cars), the real detector, the real CLI.

- pure parts: balancing, segment planning, stream-time continuation, messages;
- live (RTSP loopback, four cameras): two workers share the cameras; SIGKILL one → its cameras go
  to the other within the lease time, stream time continues, and the cases equal an undisturbed
  batch run's (none lost, none doubled); a graceful stop releases the cameras; replaying every
  retained event into a fresh casekeeper adds nothing; a new worker takes the cameras over, Redis
  is restarted, and worker and casekeeper recover by themselves;
- PostgreSQL out of reach (a loopback TCP forwarder in front of it is stopped, as when the server
  restarts): the casekeeper retries, the events stay pending, and once it is back every case is
  written once; the same messages added again change nothing;
- recorded footage: `batch-queue` over two files split into overlapping segments, a worker
  SIGKILLed while it holds a segment → another takes it over, and the cases equal a single
  batch run's, including a problem that starts just before a segment boundary.

Every test uses its own key prefix (deleted afterwards; never FLUSHALL) and its own PostgreSQL
schema. RTSP rather than recorded footage for the live test: four 640×480 streams at one analysed
frame per second fit the two cores beside two workers and a casekeeper.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
import redis
import yaml
from fixtures_streams import rtsp_server_factory  # noqa: F401
from footage import PARKED_BAYS, PARKED_CARS, PARKING, encode, frame_at
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.models import Camera, CasesConfig, Category, Config, DistributedConfig, StorageConfig, Zone, ZoneKind
from citypatrol.pipeline.distributed.protocol import (
    CostMeter,
    FrameMessage,
    Keys,
    SegmentResult,
    TickGate,
    balance,
    ceil_share,
    continued_pts,
    decode,
    encode as encode_message,
    measured_weights,
    shard_key,
    shard_of,
)
from citypatrol.pipeline.distributed.segments import longest_dwell, plan_segments
from citypatrol.pipeline.evaluation.scoring import box_iou
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.records import CaseRecord
from citypatrol.pipeline.types import Event
from tests import services
from tests.fixtures_db import pg_schema, schema_url

REDIS_URL = os.environ.get("CITYPATROL_TEST_REDIS", "redis://127.0.0.1:6379/0")  # tests/services.py
EXE = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]  # fmt: skip

DWELL_S = 4.0
CADENCE_S = 1.0
LEASE_MS = 3000
HEARTBEAT_MS = 500
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


# -- pure parts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "held, free, total, members, claim, release",
    [
        ({}, {"a": 1, "b": 1, "c": 1, "d": 1}, 4, 1, {"a", "b", "c", "d"}, set()),  # alone: everything
        ({}, {"a": 1, "b": 1, "c": 1, "d": 1}, 4, 2, {"a", "b"}, set()),  # first of two: its share
        ({"a": 1, "b": 1, "c": 1, "d": 1}, {}, 4, 2, set(), {"a"}),  # a second worker joined: give one up …
        ({"b": 1, "c": 1, "d": 1}, {}, 4, 2, set(), {"b"}),  # … and another, one per heartbeat
        ({"c": 1, "d": 1}, {}, 4, 2, set(), set()),  # at its share: keep
        ({"a": 1, "b": 1, "c": 1}, {}, 5, 2, set(), set()),  # 5 cameras, 2 workers: 3 is ceil(5/2), keep
        ({"a": 1, "b": 1}, {"c": 1}, 5, 2, {"c"}, set()),  # below 2.5: take the free one
        ({"slow": 0.5}, {"fast": 1.0, "fast2": 1.0}, 2.5, 2, {"fast"}, set()),  # weights: analysed frames per second
        ({"fast": 1.0, "fast2": 1.0, "slow": 0.5}, {}, 2.5, 2, set(), {"fast"}),  # 2.5 of a 1.25 share: the heaviest goes
    ],
)
def test_balance_claims_up_to_the_fair_share_and_releases_extras(held, free, total, members, claim, release):
    plan = balance(held, free, total, members)
    assert set(plan.claim) == claim and set(plan.release) == release


def test_balance_converges_to_ceil_share_and_never_ping_pongs():
    cams = {f"c{i}": 1.0 for i in range(7)}
    for members in (1, 2, 3, 4):
        held: list[dict[str, float]] = [dict(cams)] + [{} for _ in range(members - 1)]  # the first holds all
        for _ in range(30):  # heartbeats
            for mine in held:
                taken = {c for h in held for c in h}
                plan = balance(mine, {c: w for c, w in cams.items() if c not in taken}, 7.0, members)
                for c in plan.release:
                    del mine[c]
                for c in plan.claim:
                    mine[c] = cams[c]
        assert sorted(len(h) for h in held)[-1] == ceil_share(7, members), held
        assert sum(len(h) for h in held) == 7
        before = [dict(h) for h in held]
        for mine in held:  # stable: nothing moves any more
            taken = {c for h in held for c in h}
            assert balance(mine, {c: 1.0 for c in cams if c not in taken}, 7.0, members).claim == ()
            assert balance(mine, {}, 7.0, members).release == ()
        assert held == before


@pytest.mark.parametrize(
    "cost, expected",
    [
        ({}, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}),  # nothing measured yet: the configured weights
        ({"a": 0.05, "b": 0.06, "c": 0.045, "d": 0.055}, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}),  # ±20 % noise moves nothing
        ({"a": 0.05, "b": 0.05, "c": 0.05, "d": 0.15}, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 1.5}),  # decodes every frame: 3×
        ({"a": 0.05, "b": 0.05, "c": 0.05, "d": 5.0}, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 4.0}),  # at most 8×
        ({"a": 0.05, "b": 0.05, "c": 0.05, "d": 0.001}, {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.25}),  # at least half
        ({"a": 0.05, "d": 0.15}, {"a": 0.25, "b": 0.5, "c": 0.5, "d": 0.75}),  # against their median; b, c not measured yet
    ],
)
def test_measured_weights_scale_the_configured_ones_in_coarse_steps(cost, expected):
    configured = {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}
    assert measured_weights(configured, cost) == pytest.approx(expected)


def test_a_camera_that_costs_three_times_the_others_is_balanced_as_three():
    configured = {f"c{i}": 0.5 for i in range(5)}
    cams = measured_weights(configured, {**{f"c{i}": 0.05 for i in range(4)}, "c4": 0.15})
    total = sum(cams.values())  # 2 + 1.5 = 3.5: a share of 1.75 each
    held: list[dict[str, float]] = [dict(cams), {}]
    for _ in range(20):  # heartbeats
        for mine in held:
            taken = {c for h in held for c in h}
            plan = balance(mine, {c: w for c, w in cams.items() if c not in taken}, total, 2)
            for c in plan.release:
                del mine[c]
            for c in plan.claim:
                mine[c] = cams[c]
    loads = sorted(sum(h.values()) for h in held)
    assert sum(len(h) for h in held) == 5
    assert loads == [1.5, 2.0], held  # by count alone, 3 and 2 cameras could be 2.5 against 1.0


def test_cost_meter_leaves_out_the_warm_up_and_smooths():
    meter = CostMeter(started=0.0, warmup_s=20.0, smoothing=0.5)
    assert meter.sample(decode_cpu_s=8.0, now=10.0) is None  # learning the keyframe spacing: every frame decoded
    assert meter.sample(decode_cpu_s=9.0, now=20.0) is None  # the baseline
    meter.add_work(1.0)  # detection and analysis
    assert meter.sample(decode_cpu_s=10.0, now=30.0) == pytest.approx(0.2)  # (1 + 1) / 10 s
    meter.add_work(0.5)
    assert meter.sample(decode_cpu_s=10.5, now=40.0) == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)


def test_stream_time_continues_as_wall_time_did():
    assert continued_pts(None, None, T0) is None
    assert continued_pts(120.0, T0, T0 + timedelta(seconds=7.5)) == pytest.approx(127.5)
    assert continued_pts(120.0, T0, T0 - timedelta(seconds=30)) == pytest.approx(120.001)  # never back


def test_segments_overlap_by_the_longest_dwell_on_the_cadence_grid():
    zone = Zone(id="z", kind=ZoneKind.no_parking, polygon=PARKED_BAYS, dwell_s=45)
    cam = Camera(id="f", source="f.mp4", cadence_s=2.0, zones=[zone], rules={"illegal_parking": {"dwell_s": 30}})
    config = Config(cameras=[cam])
    assert longest_dwell(config, cam) == config.rules.billboard.dwell_s  # 900 s: rules not turned off count
    quiet = Config(rules={"billboard": {"enabled": False}, "garbage": {"enabled": False}, "street_vending": {"enabled": False}})
    assert longest_dwell(quiet, cam) == 45  # the zone's own dwell is longer than the rule's
    tasks = plan_segments("j", cam, 250.0, 100.0, 49.0)  # warm-up 49 s before each start, rounded down to the 2 s grid
    assert [(t.index, t.start, t.end, t.warmup) for t in tasks] == [(0, 0, 100, 0), (1, 100, 200, 50), (2, 200, None, 150)]
    assert [t.end for t in plan_segments("j", cam, 30.0, 9.0, 0)] == [8, 16, 24, None]  # 9 s on a 2 s grid: 8 s
    assert all(t.count == 3 and t.file == "f.mp4" for t in tasks)
    assert [(t.start, t.end) for t in plan_segments("j", cam, None, 100, 10)] == [(0, None)]  # unknown length: one


def test_messages_round_trip_and_shards_are_stable():
    e = Event("cam-1", Category.illegal_parking, (0.1, 0.2, 0.3, 0.4), "bays", 31.0, T0, 25.0, 0.61, (3,), ("car",), "车 6 s", "m")
    m = FrameMessage("cam-1", 31.0, T0, "w1", (e,), "p:img:x")
    back = decode(encode_message(m))
    assert back == m and back.events[0].event_id == e.event_id
    s = SegmentResult("job", "cam-1", 2, 3, "w2", (m,), "", "site-a", "cam 1")
    assert decode({k.encode(): v.encode() for k, v in encode_message(s).items()}) == s
    with pytest.raises(ValueError):
        decode({"kind": "frame", "data": '{"v": 99}'})
    assert shard_of(shard_key("cam-1"), 8) == 1  # crc32: the same in every process and Python version
    assert shard_key("a", "gate") == shard_key("b", "gate")  # one site, one shard: cross-camera dedup in one builder
    ticks = TickGate(10)
    assert [ticks.due("c", t, ev) for t, ev in [(0, False), (5, False), (6, True), (15, False), (16, False)]] == [
        True, False, True, False, True]  # fmt: skip
    with pytest.raises(ValueError, match="third of lease_ms"):
        DistributedConfig(lease_ms=3000, heartbeat_ms=1500)


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def rds() -> redis.Redis:
    services.require("Redis")
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis for the distributed tests is not reachable at {REDIS_URL}: {exc}")
    return r


@pytest.fixture
def prefix(rds: redis.Redis):
    p = f"cptest-{uuid.uuid4().hex[:10]}"
    yield p
    _ensure_redis()
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    keys = list(r.scan_iter(match=f"{p}:*", count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture
def pg_url():
    with pg_schema("cp_dist") as schema:
        yield schema_url(schema)


@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


@pytest.fixture(scope="module")
def stills(assets: Path) -> tuple[np.ndarray, np.ndarray]:
    """(empty lot, the same lot with three cars parked in the bays): real frames."""
    return frame_at(assets / PARKING, 0.0), frame_at(assets / PARKING, 4.0)


@pytest.fixture(scope="module")
def parked_stream(stills, tmp_path_factory) -> Path:
    """30 s of the parked cars at 5 fps, a keyframe every second: served as a looping live camera."""
    return encode(tmp_path_factory.mktemp("dist_live") / "parked.mp4", 30, lambda s: stills[1], fps=5, gop=1)


def _camera(cam_id: str, source: str, **kw) -> Camera:
    zone = Zone(id="bays", name="消防通道 fire lane", kind=ZoneKind.no_parking, polygon=PARKED_BAYS)
    return Camera(id=cam_id, name=f"lot {cam_id}", source=source, cadence_s=CADENCE_S, zones=[zone],
                  rules={"illegal_parking": {"dwell_s": DWELL_S}}, **kw)  # fmt: skip


def _config_dict(tmp: Path, cameras: list[Camera], db_url: str, prefix: str) -> dict:
    return {
        "cameras": [c.model_dump(mode="json", exclude_defaults=True) | {"zones": [z.model_dump(mode="json") for z in c.zones]}
                    for c in cameras],
        "rules": {"billboard": {"enabled": False}, "garbage": {"enabled": False}, "street_vending": {"enabled": False}},
        "cases": {"grace_s": 600},
        "storage": {"database_url": db_url, "evidence_dir": str(tmp / "evidence")},
        "live": {"open_timeout_s": 5, "read_timeout_s": 3, "backoff_max_s": 1},
        "distributed": {"redis_url": REDIS_URL, "prefix": prefix, "lease_ms": LEASE_MS, "heartbeat_ms": HEARTBEAT_MS,
                        "shards": 2, "tick_s": 2, "retry_max_s": 1, "segment_s": 20},
    }  # fmt: skip


def _reference(config: Config, cameras: list[Camera], tmp: Path, detector) -> list[CaseRecord]:
    """The undisturbed run: the batch runner over the same footage, in this process, on SQLite."""
    ref = config.model_copy(update={"storage": StorageConfig(database_url=f"sqlite:///{tmp / 'ref.db'}", evidence_dir=tmp / "ref_ev")})
    return run_batch(ref, cameras, tmp / "ref", detector, show_progress=False).cases


class Proc:
    """A citypatrol command as a subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], tmp: Path) -> None:
        self.name, self.log = name, tmp / f"{name}.log"
        with open(self.log, "ab") as out:
            self.p = subprocess.Popen(EXE + args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.p.poll() is None

    def term(self, timeout: float = 60) -> int:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=timeout)
        return rc

    def kill(self) -> None:
        if self.alive():
            self.p.kill()
        self.p.wait(timeout=10)


def _wait(what: str, check: Callable[[], object], timeout_s: float, procs: list[Proc], detail: Callable[[], object] = lambda: "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{p.name} exited ({p.p.returncode}) while waiting for {what}:\n{p.text()[-4000:]}")
        try:
            value = check()
        except (redis.ConnectionError, redis.TimeoutError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.text()[-2500:]}" for p in procs)
            raise AssertionError(f"timed out waiting for {what}: {detail()}\n{logs}")
        time.sleep(0.3)


def _owners(r: redis.Redis, keys: Keys, cams: list[str]) -> dict[str, str | None]:
    return {c: (v.decode() if v else None) for c, v in zip(cams, r.mget([keys.camera_lease(c) for c in cams]))}


def _cases(db_url: str) -> list[CaseRecord]:
    with open_store(db_url) as store:
        return store.list_cases(limit=1000)


def _matches(cases: list[CaseRecord], reference: list[CaseRecord]) -> bool:
    """Same number of cases, each reference case found (same category, same place)."""
    if len(cases) != len(reference):
        return False
    return all(any(c.case.category == r.case.category and box_iou(c.case.box, r.case.box) > 0.5 for c in cases) for r in reference)


def _like(cases: list[CaseRecord], reference: list[CaseRecord]) -> bool:
    """As many cases as the reference run, each on a different one of the parked cars.

    (Live frames are not the file's frames bit for bit, and two of the three cars overlap, so
    the detector may report either of them: the place, not the exact box, is compared.)
    """
    if len(cases) != len(reference):
        return False
    cars = [max(range(len(PARKED_CARS)), key=lambda i: box_iou(c.case.box, PARKED_CARS[i])) for c in cases]
    on_cars = all(box_iou(c.case.box, PARKED_CARS[i]) > 0.4 for c, i in zip(cases, cars))
    return on_cars and len(set(cars)) == len(cars) and all(c.case.category == Category.illegal_parking for c in cases)


@contextmanager
def _keeper_thread(config: Config, keeper_id: str, **kw):  # noqa: ANN003
    """A casekeeper running in this process (a thread), stopped and joined on leaving."""
    from citypatrol.pipeline.distributed.casekeeper import Casekeeper

    stop = threading.Event()
    keeper = Casekeeper(config, keeper_id=keeper_id, stop=stop, **kw)
    thread = threading.Thread(target=keeper.run, daemon=True)
    thread.start()
    try:
        yield keeper
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value, from a process's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def _cluster_status(config_file: Path) -> tuple[int, dict]:
    done = subprocess.run([*EXE, "cluster", "status", "-c", str(config_file), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _drained(r: redis.Redis, keys: Keys, group: str) -> bool:
    """Every entry of every event stream delivered to the casekeepers and acknowledged."""
    for stream in keys.all_events():
        if not r.exists(stream):
            continue
        last = r.xinfo_stream(stream)["last-generated-id"]
        groups = {g["name"].decode(): g for g in r.xinfo_groups(stream)}
        g = groups.get(group)
        if g is None or g["pending"] or g["last-delivered-id"] != last:
            return False
    return True


def _ensure_redis() -> None:
    """Start the machine's Redis again if a test stopped it and failed before restarting it."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        subprocess.run(REDIS_START, check=True)
        time.sleep(0.5)


def _restart_redis() -> float:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], check=False, capture_output=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
            time.sleep(0.1)
        except redis.RedisError:
            break
    time.sleep(2.0)  # down for a while: every process notices
    subprocess.run(REDIS_START, check=True)
    return time.time()


def _evidence_ok(case: CaseRecord, evidence_dir: Path) -> bool:
    """Frame, crop and clip as on one machine, each file matching its recorded sha256; the clip
    a real H.264 video of several frames at the frame's size or smaller."""
    kinds = {e.kind.value for e in case.evidence}
    if kinds != {"frame", "crop", "clip"}:
        return False
    if not all(hashlib.sha256((evidence_dir / e.path).read_bytes()).hexdigest() == e.sha256 for e in case.evidence):
        return False
    clip = next(e for e in case.evidence if e.kind.value == "clip")
    with av.open(str(evidence_dir / clip.path)) as c:
        codec = c.streams.video[0].codec_context.name
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    return codec == "h264" and len(frames) >= 2 and frames[0].std() > 5


# -- live cameras ------------------------------------------------------------------------------------


def test_two_workers_failover_replay_and_redis_restart(tmp_path, rds, prefix, pg_url, parked_stream, detector, rtsp_server_factory):
    names = [f"cam-{i}" for i in range(1, 5)]
    server = rtsp_server_factory({n: parked_stream for n in names})
    cameras = [_camera(n, server.url(n)) for n in names]
    cfg = _config_dict(tmp_path, cameras, pg_url, prefix)
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    config = Config.model_validate(cfg)
    keys = Keys.of(config.distributed)
    group = config.distributed.casekeeper_group

    keeper_port, w1_port = _free_port(), _free_port()
    keeper = Proc("casekeeper", ["casekeeper", "-c", str(config_file), "--id", "k1", "--metrics-port", str(keeper_port)], tmp_path)
    w1 = Proc("w1", ["worker", "-c", str(config_file), "--id", "w1", "--metrics-port", str(w1_port)], tmp_path)
    w2 = Proc("w2", ["worker", "-c", str(config_file), "--id", "w2"], tmp_path)
    procs = [keeper, w1, w2]
    try:
        # the undisturbed run, while they start: the same footage analysed by the batch runner
        reference = _reference(config, [_camera("ref", str(parked_stream))], tmp_path, detector)
        assert len(reference) >= 2, "the parked cars in the bays are the cases"

        # two workers share four cameras evenly
        _wait("two cameras per worker", lambda: sorted(map(str, _owners(rds, keys, names).values())) == ["w1", "w1", "w2", "w2"], 60, procs)
        by_cam = lambda: {n: [c for c in _cases(pg_url) if c.case.camera_id == n] for n in names}  # noqa: E731
        boxes = lambda cases: sorted((c.case.category.value, tuple(round(v, 2) for v in c.case.box)) for c in cases)  # noqa: E731
        _wait("the parked cars' cases on every camera", lambda: all(_like(v, reference) for v in by_cam().values()), 90, procs,
              lambda: (boxes(reference), {n: boxes(v) for n, v in by_cam().items()}))  # fmt: skip
        # each owner measures what its cameras cost (after a warm-up) and publishes it for balancing;
        # the same stream on every camera costs about the same, so nothing moved
        costs = lambda: {k.decode(): float(v) for k, v in rds.hgetall(keys.costs).items()}  # noqa: E731
        _wait("every camera's cost measured", lambda: set(costs()) == set(names), 60, procs, costs)
        assert all(0 < v < 2 for v in costs().values()), costs()
        assert sorted(map(str, _owners(rds, keys, names).values())) == ["w1", "w1", "w2", "w2"]

        # the operator's view says the same: both workers, their cameras and costs, events applied
        status, st = _cluster_status(config_file)
        assert status == 0, st["findings"]
        assert {w["id"] for w in st["workers"]} == {"w1", "w2"} and [k["id"] for k in st["casekeepers"]] == ["k1"]
        assert {c["camera_id"]: c["owner"] for c in st["cameras"]} == _owners(rds, keys, names)
        assert all(c["cores"] > 0 and c["behind_s"] is not None and c["behind_s"] < 30 for c in st["cameras"]), st["cameras"]
        # and each process's own /metrics
        w1_metrics, keeper_metrics = _scrape(w1_port), _scrape(keeper_port)
        w1_cams = sorted(c for c, o in _owners(rds, keys, names).items() if o == "w1")
        assert w1_metrics[("citypatrol_worker_cameras_held", ())] == 2
        assert w1_metrics[("citypatrol_worker_frames_analysed_total", ())] >= 10
        assert w1_metrics[("citypatrol_worker_messages_published_total", ())] >= 10
        assert w1_metrics[("citypatrol_worker_detector_seconds_total", ())] > 0
        assert sorted(dict(k[1])["camera"] for k, v in w1_metrics.items() if k[0] == "citypatrol_worker_camera_up" and v == 1) == w1_cams
        assert keeper_metrics[("citypatrol_casekeeper_shards_held", ())] == 2
        assert keeper_metrics[("citypatrol_casekeeper_messages_applied_total", ())] >= 10
        assert keeper_metrics[("citypatrol_casekeeper_dead_letters_total", ())] == 0

        # SIGKILL one worker: its cameras resume on the other within the lease time
        victims = [c for c, o in _owners(rds, keys, names).items() if o == "w1"]
        before = {r.case_id: r for r in _cases(pg_url)}
        clocks = {c: float(rds.hget(keys.clock(c), "pts")) for c in victims}
        w1.kill()
        killed = time.monotonic()
        procs = [keeper, w2]
        _wait("w2 owning every camera", lambda: set(_owners(rds, keys, names).values()) == {"w2"}, LEASE_MS / 1000 + 10, procs)
        took = time.monotonic() - killed
        assert took <= LEASE_MS / 1000 + 4 * HEARTBEAT_MS / 1000 + 2, f"takeover after {took:.1f} s"
        assert "stream time continues from" in w2.text()

        # the new owner measures the dwell again; the events join the open cases (same ids, none new)
        wall_killed = datetime.now(UTC)

        def seen_again() -> bool:
            cases = {r.case_id: r for r in _cases(pg_url)}
            return all(cases[cid].case.last_seen_at > wall_killed + timedelta(seconds=DWELL_S)
                       for cid, r in before.items() if r.case.camera_id in victims)  # fmt: skip

        _wait("the victims' cases seen again by w2", seen_again, 60, procs)
        after = {r.case_id: r for r in _cases(pg_url)}
        assert set(after) == set(before), "failover must neither lose nor double a case"
        for cid, r in after.items():
            c = r.case
            if c.camera_id in victims:
                # stream time went on across the takeover as wall time did (not restarted at 0)
                assert c.last_seen_pts > clocks[c.camera_id]
                span_pts, span_wall = c.last_seen_pts - c.opened_pts, (c.last_seen_at - c.opened_at).total_seconds()
                assert abs(span_pts - span_wall) < 2 * CADENCE_S + 0.5, (cid, span_pts, span_wall)
                assert r.sightings >= 2  # the first worker's sighting and the second's
        for n in names:
            assert _like([r for r in after.values() if r.case.camera_id == n], reference), n
        for r in after.values():
            assert _evidence_ok(r, tmp_path / "evidence"), (r.case_id, r.evidence)
            assert r.case.status.value == "detected"

        # a graceful stop releases the cameras at once, with their clocks
        assert w2.term() == 0, w2.text()[-3000:]
        assert set(_owners(rds, keys, names).values()) == {None}
        assert {rds.hget(keys.clock(n), "owner") for n in names} == {b"w2"}
        status, st = _cluster_status(config_file)
        assert status == 1 and st["findings"][0].startswith("no worker is running"), st["findings"]
        _wait("the casekeeper caught up", lambda: _drained(rds, keys, group), 30, [keeper])
        snapshot = {r.case_id: (r.case.events, r.sightings, r.case.status, r.case.last_seen_pts) for r in _cases(pg_url)}
        entries = sum(rds.xlen(s) for s in keys.all_events() if rds.exists(s))

        # replaying every retained event into a fresh casekeeper: no new case, nothing counted twice
        assert keeper.term() == 0, keeper.text()[-3000:]
        keeper = Proc("replay", ["casekeeper", "-c", str(config_file), "--id", "k2", "--replay"], tmp_path)
        procs = [keeper]
        _wait("the replay read everything", lambda: "shard 0: ready" in keeper.text() and "shard 1: ready" in keeper.text()
              and _drained(rds, keys, group), 60, procs)  # fmt: skip
        time.sleep(1.0)
        replayed = {r.case_id: (r.case.events, r.sightings, r.case.status, r.case.last_seen_pts) for r in _cases(pg_url)}
        assert replayed == snapshot
        read = sum(g["entries-read"] or 0 for s in keys.all_events() if rds.exists(s) for g in rds.xinfo_groups(s))
        assert read >= entries > 20, (read, entries)  # it did read the whole history again

        # a new worker takes over all cameras; then Redis restarts (losing everything): both recover
        w3 = Proc("w3", ["worker", "-c", str(config_file), "--id", "w3"], tmp_path)
        procs = [keeper, w3]
        _wait("w3 owning every camera", lambda: set(_owners(rds, keys, names).values()) == {"w3"}, 60, procs)
        restarted = _restart_redis()
        _wait("w3 holding its cameras again", lambda: set(_owners(rds, keys, names).values()) == {"w3"}, 30, procs)

        def applied_after_restart() -> bool:
            marks = {k.decode(): v.decode() for k, v in rds.hgetall(keys.applied).items()}
            return len(marks) == 4 and all(datetime.fromisoformat(v.split("|")[1]).timestamp() > restarted + 1 for v in marks.values())

        _wait("events applied after the restart", applied_after_restart, 60, procs)
        assert "consumer group missing" in keeper.text() and "Redis unreachable" in w3.text()
        final = {r.case_id: r for r in _cases(pg_url)}
        assert set(final) == set(snapshot)
        assert all(final[cid].case.last_seen_pts >= snapshot[cid][3] for cid in final)
        assert rds.xlen(keys.dead) == 0
        assert w3.term() == 0 and keeper.term() == 0
    finally:
        for p in procs + [w1, w2]:
            if p.alive():
                p.kill()
        _ensure_redis()


# -- the database out of reach ---------------------------------------------------------------------


class TcpForwarder:
    """127.0.0.1:<port> → PostgreSQL; `stop()` refuses new connections and cuts the open ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> "TcpForwarder":
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        self.port, self._server = srv.getsockname()[1], srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                try:
                    self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
                except OSError:
                    pass
                self._server.close()
                self._server = None
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _event(cam: str, box: tuple, since: float, pts: float) -> Event:
    return Event(cam, Category.illegal_parking, box, "bays", pts, T0 + timedelta(seconds=pts), since, 0.7, (1,), ("car",), "car still")


def test_a_worker_uses_the_zones_saved_in_the_review_center(tmp_path, rds, prefix, pg_url, parked_stream, rtsp_server_factory):
    """The config's zone is an empty corner; the zone a reviewer saved covers the bays: only it makes cases."""
    from citypatrol.pipeline.store.review import ReviewStore

    server = rtsp_server_factory({"cam-z": parked_stream})
    corner = Zone(id="corner", kind=ZoneKind.no_parking, polygon=[[0.0, 0.0], [0.08, 0.0], [0.08, 0.08], [0.0, 0.08]])
    cam = _camera("cam-z", server.url("cam-z")).model_copy(update={"zones": [corner]})
    cfg = _config_dict(tmp_path, [cam], pg_url, prefix)
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    config = Config.model_validate(cfg)
    with open_store(pg_url) as store:  # as the zone editor saves it
        bays = Zone(id="bays", name="消防通道", kind=ZoneKind.no_parking, polygon=PARKED_BAYS).model_dump(mode="json")
        ReviewStore(store.engine, config.codes).save_zones("cam-z", [bays], base_version=0, actor="user:wang")
    keeper = Proc("casekeeper", ["casekeeper", "-c", str(config_file), "--id", "k1"], tmp_path)
    worker = Proc("w1", ["worker", "-c", str(config_file), "--id", "w1"], tmp_path)
    procs = [keeper, worker]
    try:
        _wait("cases on the parked cars", lambda: len(_cases(pg_url)) >= 2, 120, procs, lambda: worker.text()[-2000:])
        cases = _cases(pg_url)
        assert {r.case.zone_id for r in cases} == {"bays"}
        assert all(max(box_iou(r.case.box, car) for car in PARKED_CARS) > 0.4 for r in cases)
        assert "camera cam-z: zones version 1 saved by user:wang (1 zone(s)) in use" in worker.text()
    finally:
        for p in procs:
            if p.alive():
                p.kill()


def test_casekeeper_waits_out_a_database_outage_and_applies_everything_once(tmp_path, rds, prefix, pg_url, caplog):
    url = make_url(pg_url)
    proxy = TcpForwarder((url.host or "127.0.0.1", url.port or 5432)).start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    cam = _camera("gate", "rtsp://127.0.0.1:1/none")
    config = Config(cameras=[cam], storage=StorageConfig(database_url=through, evidence_dir=tmp_path / "evidence"),
                    cases=CasesConfig(grace_s=600),
                    distributed=DistributedConfig(redis_url=REDIS_URL, prefix=prefix, shards=1, lease_ms=1500, heartbeat_ms=300,
                                                  retry_max_s=0.5))  # fmt: skip
    keys = Keys.of(config.distributed)
    stream = keys.events(0)
    a, b = (0.1, 0.5, 0.3, 0.7), (0.6, 0.5, 0.8, 0.7)
    sent: list[dict] = []

    def send(pts: float, *events: Event) -> None:
        fields = encode_message(FrameMessage("gate", pts, T0 + timedelta(seconds=pts), "w-test", events))
        sent.append(fields)
        rds.xadd(stream, fields)

    caplog.set_level("INFO", logger="citypatrol.casekeeper")
    try:
        with _keeper_thread(config, "k-db") as keeper:
            send(10.0, _event("gate", a, 2.0, 10.0))
            send(12.0)
            _wait("the first case", lambda: len(_cases(pg_url)) == 1, 30, [])
            proxy.stop()  # the database is gone for the casekeeper
            send(20.0, _event("gate", a, 2.0, 20.0), _event("gate", b, 14.0, 20.0))
            send(22.0)
            _wait("the messages pending", lambda: rds.xpending(stream, "casekeepers")["pending"] >= 1, 10, [])
            time.sleep(2.0)  # several failed attempts
            assert len(_cases(pg_url)) == 1 and rds.xpending(stream, "casekeepers")["pending"] >= 1
            assert "database unavailable" in caplog.text
            proxy.start()  # on the same port: the database is back
            _wait("everything applied", lambda: len(_cases(pg_url)) == 2 and _drained(rds, keys, "casekeepers"), 30, [])
            cases = {r.case.box: r for r in _cases(pg_url)}
            assert cases[a].sightings == 1 and cases[a].case.last_seen_pts == 20.0  # one episode, seen again at 20 s
            assert cases[b].sightings == 1 and cases[b].case.opened_pts == 20.0
            before = {r.case_id: (r.case.events, r.sightings, r.case.last_seen_pts) for r in cases.values()}
            for fields in sent:  # every message delivered again
                rds.xadd(stream, fields)
            _wait("the copies read", lambda: _drained(rds, keys, "casekeepers"), 30, [])
            assert {r.case_id: (r.case.events, r.sightings, r.case.last_seen_pts) for r in _cases(pg_url)} == before
            assert keeper.stats.skipped == len(sent) and keeper.stats.dead == 0
    finally:
        proxy.stop()


def test_a_damaged_clip_costs_the_clip_not_the_frame_and_crop(tmp_path, rds, prefix, pg_url, stills, caplog):
    from citypatrol.pipeline.distributed.protocol import clip_key

    cam = _camera("gate", "rtsp://127.0.0.1:1/none")
    config = Config(cameras=[cam], storage=StorageConfig(database_url=pg_url, evidence_dir=tmp_path / "evidence"),
                    cases=CasesConfig(grace_s=600),
                    distributed=DistributedConfig(redis_url=REDIS_URL, prefix=prefix, shards=1, lease_ms=1500, heartbeat_ms=300))  # fmt: skip
    keys = Keys.of(config.distributed)
    _, jpeg = cv2.imencode(".jpg", stills[1])
    image_key = f"{prefix}:img:gate:one"
    rds.set(image_key, jpeg.tobytes(), ex=600)
    rds.set(clip_key(image_key), b"\x00\x00\x00\x18not an mp4 at all", ex=600)
    box = PARKED_CARS[0]
    rds.xadd(keys.events(0), encode_message(FrameMessage("gate", 10.0, T0 + timedelta(seconds=10), "w-test",
                                                         (_event("gate", box, 2.0, 10.0),), image_key)))  # fmt: skip
    caplog.set_level("INFO", logger="citypatrol.casekeeper")
    with _keeper_thread(config, "k-clip") as keeper:
        _wait("the case with its evidence", lambda: [r for r in _cases(pg_url) if r.evidence], 30, [])
        (case,) = _cases(pg_url)
        assert sorted(e.kind.value for e in case.evidence) == ["crop", "frame"]
        assert "evidence clip not written" in caplog.text and "not an MP4" in caplog.text
        assert not (tmp_path / "evidence" / case.case_id / "clip.mp4").exists()
        assert keeper.stats.dead == 0


def test_the_casekeeper_asks_the_configured_verifier_before_auto_submitting(tmp_path, rds, prefix, pg_url, stills):
    """review.verifier reaches the casekeeper: the same place scored on the frame with a parked car
    goes out on its own, scored on the empty lot it waits for a reviewer."""
    from citypatrol.annotate.evidence import crop_box
    from citypatrol.models.verifier import train_verifier
    from citypatrol.pipeline.sinks.second_stage import load_check

    empty, parked = stills
    boxes = PARKED_CARS
    verifier = train_verifier([crop_box(parked, b) for b in boxes] + [crop_box(empty, b) for b in boxes],
                              ["illegal_parking"] * len(boxes) + ["allowed_parking"] * len(boxes), feature_kind="hog-colour")  # fmt: skip
    config = Config.model_validate({
        "cameras": [_camera(c, f"rtsp://127.0.0.1:1/{c}").model_dump(mode="json") for c in ("gate", "yard")],
        "storage": {"database_url": pg_url, "evidence_dir": str(tmp_path / "evidence")},
        "cases": {"grace_s": 600},
        "dispatch": {"enabled": True, "adapter": "file", "file_dir": str(tmp_path / "outbox")},
        "review": {"default": {"min_score": 0.0, "min_check_score": 0.5}, "verifier": str(verifier.save(tmp_path / "v.npz"))},
        "distributed": {"redis_url": REDIS_URL, "prefix": prefix, "shards": 1, "lease_ms": 1500, "heartbeat_ms": 300},
    })  # fmt: skip
    keys = Keys.of(config.distributed)
    for cam, frame in (("gate", parked), ("yard", empty)):
        image_key = f"{prefix}:img:{cam}:one"
        rds.set(image_key, cv2.imencode(".jpg", frame)[1].tobytes(), ex=600)
        event = _event(cam, boxes[0], 2.0, 10.0)
        rds.xadd(keys.events(0), encode_message(FrameMessage(cam, 10.0, T0 + timedelta(seconds=10), "w-test", (event,), image_key)))
    with _keeper_thread(config, "k-check", check=load_check(config.review)):
        _wait("both cases decided", lambda: len(_cases(pg_url)) == 2 and all(len(r.case.history) >= 2 for r in _cases(pg_url)), 30, [])
        by_cam = {r.case.camera_id: r.case for r in _cases(pg_url)}
        assert by_cam["gate"].status.value == "approved" and "second-stage check" in by_cam["gate"].history[1].reason
        assert by_cam["yard"].status.value == "pending_review" and "second-stage check" in by_cam["yard"].history[1].reason


# -- recorded footage ------------------------------------------------------------------------------


def test_batch_queue_segments_over_workers_with_a_worker_killed(tmp_path, rds, prefix, pg_url, stills, detector):
    empty, parked = stills
    folder = tmp_path / "footage"
    folder.mkdir()
    # segments of 12 s: [0, 12), [12, 24), [24, 36); in "late" the cars come at 10 s, reach the dwell in the second
    late = encode(folder / "late.mp4", 36, lambda s: parked if s >= 10 else empty, fps=2, gop=1)
    early = encode(folder / "early.mp4", 36, lambda s: parked, fps=2, gop=1)
    cams = [_camera("late", str(late), enabled=False), _camera("early", str(early), enabled=False)]  # settings by id only
    cfg = _config_dict(tmp_path, cams, pg_url, prefix)
    cfg["distributed"]["segment_s"] = 12
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    config = Config.model_validate(cfg)
    keys = Keys.of(config.distributed)
    keeper_port, w1_port = _free_port(), _free_port()
    keeper = Proc("casekeeper", ["casekeeper", "-c", str(config_file), "--id", "k1", "--metrics-port", str(keeper_port)], tmp_path)
    w1 = Proc("w1", ["worker", "-c", str(config_file), "--id", "w1", "--metrics-port", str(w1_port)], tmp_path)
    w2 = Proc("w2", ["worker", "-c", str(config_file), "--id", "w2"], tmp_path)
    procs = [keeper, w1, w2]
    queue = None
    try:
        # the single batch run over each whole file, while they start
        reference = _reference(config, [c.model_copy(update={"enabled": True}) for c in cams], tmp_path, detector)
        assert {r.case.camera_id for r in reference} == {"late", "early"}
        assert all(r.case.opened_pts > 12 for r in reference if r.case.camera_id == "late")  # opened after the boundary

        _wait("both workers up", lambda: rds.zcard(keys.workers) == 2, 60, procs)
        queue = Proc("batch-queue", ["batch-queue", "-c", str(config_file), "--wait", "--timeout", "150", str(late), str(early)], tmp_path)
        # every worker takes segments; one is killed while it holds a task
        _wait("both workers analysing segments", lambda: "analysing" in w1.text() and "analysing" in w2.text(), 60, procs)
        _wait("w1 holding a task", lambda: w1.text().count("analysing") > w1.text().count(" done:"), 60, procs)
        w1.kill()
        procs = [keeper, w2]
        assert queue.p.wait(timeout=160) == 0, queue.text()[-3000:]
        job = queue.text().split("JOB ")[1].split()[0]
        assert "taken over from a worker" in w2.text()
        progress = {k.decode(): v.decode() for k, v in rds.hgetall(keys.job(job)).items()}
        assert progress["applied:late"] == progress["applied:early"] == "2", progress  # three segments each, all applied

        got = _cases(pg_url)
        for cam in ("late", "early"):
            mine = [r for r in got if r.case.camera_id == cam]
            ref = [r for r in reference if r.case.camera_id == cam]
            assert _matches(mine, ref), (cam, [r.case.box for r in mine], [r.case.box for r in ref])
            for r in ref:  # the same frames on the same cadence grid: the same opening times
                match = max(mine, key=lambda m: box_iou(m.case.box, r.case.box))
                assert abs(match.case.opened_pts - r.case.opened_pts) <= CADENCE_S + 0.01, (match.case.opened_pts, r.case.opened_pts)
        assert all(_evidence_ok(r, tmp_path / "evidence") for r in got)
        results = [json.loads(f[b"data"]) for s in keys.all_events() for _, f in rds.xrange(s) if f[b"kind"] == b"segment"]
        assert {(r["camera"], r["index"]) for r in results} == {(c, k) for c in ("late", "early") for k in range(3)}
        assert rds.xlen(keys.dead) == 0
        assert w2.term() == 0 and keeper.term() == 0
    finally:
        for p in procs + [w1, w2] + ([queue] if queue else []):
            if p.alive():
                p.kill()
