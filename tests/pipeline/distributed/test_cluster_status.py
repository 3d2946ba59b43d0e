"""`citypatrol cluster status`: what needs a person (pure), and reading a deployment from the real Redis.

The state read here is laid out in Redis the way workers and casekeepers write it (key names from
`Keys`); the live distributed test (`test_distributed.py`) checks the command against running
workers and a casekeeper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from citypatrol.pipeline.distributed.cluster_metrics import ClusterCollector
from citypatrol.pipeline.distributed.cluster_status import CameraReport, Member, ShardState, findings, read_cluster
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.distributed.protocol import Keys, shard_key, shard_of
from citypatrol.pipeline.distributed.redis_client import connect
from tests import services

REDIS_URL = os.environ.get("CITYPATROL_TEST_REDIS", "redis://127.0.0.1:6379/0")  # tests/services.py
T = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
EXE = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]


def _cam(cid: str, owner: str | None = "w1", clock_s: float | None = 100.0, applied_s: float | None = 99.0) -> CameraReport:
    return CameraReport(cid, 0, owner, 0.05, T + timedelta(seconds=clock_s) if clock_s is not None else None,
                       T + timedelta(seconds=applied_s) if applied_s is not None else None)  # fmt: skip


W, K = [Member("w1", 9.0)], [Member("k1", 9.0)]
SHARD_OK = [ShardState(0, "k1", 40, 0, 0)]


@pytest.mark.parametrize(
    "workers, keepers, cameras, shards, dead, expected",
    [
        (W, K, [_cam("a"), _cam("b")], SHARD_OK, 0, []),  # all held, caught up
        (W, K, [_cam("a", clock_s=None, applied_s=None)], SHARD_OK, 0, []),  # just claimed: nothing analysed yet
        ([], K, [_cam("a", owner=None)], SHARD_OK, 0, ["no worker is running"]),  # the unowned camera is not repeated
        (W, [], [_cam("a")], [ShardState(0, None, 40, 0, 12)], 0, ["no casekeeper is running"]),
        (W, K, [_cam("a"), _cam("b", owner=None)], SHARD_OK, 0, ["1 camera(s) held by no worker: b"]),
        (W, K, [_cam("a")], [*SHARD_OK, ShardState(1, None, 8, 0, 8)], 0, ["shard(s) 1 have events waiting"]),
        (W, K, [_cam("a")], [*SHARD_OK, ShardState(1, None, 8, 0, 0)], 0, []),  # an idle shard without keeper is fine
        (W, K, [_cam("a", clock_s=400, applied_s=100)], SHARD_OK, 0, ["camera a: events applied 300 s behind"]),
        (W, K, [_cam("a", clock_s=130, applied_s=100)], SHARD_OK, 0, []),  # 30 s behind: within the warning
        (W, K, [_cam("a")], SHARD_OK, 3, ["3 message(s) set aside as dead letters"]),
    ],
)
def test_findings_name_what_needs_a_person(workers, keepers, cameras, shards, dead, expected):
    found = findings(workers, keepers, cameras, shards, dead)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected):
        assert line.startswith(start), (line, start)


def test_a_held_live_camera_that_stopped_delivering_is_named_but_recorded_footage_is_not():
    cams = [_cam("a", clock_s=100), _cam("quiet", clock_s=-200, applied_s=-200),
            CameraReport("archive", 0, "w1", 0.05, T - timedelta(days=30), T - timedelta(days=30), live=False),
            _cam("free", owner=None, clock_s=-900, applied_s=-900)]  # fmt: skip
    found = findings(W, K, cams, SHARD_OK, 0, now=T + timedelta(seconds=110))
    assert found[0].startswith("1 camera(s) held by no worker: free")
    assert found[1:] == ["camera quiet: held by w1 but no frame analysed for 310 s (camera offline?)"]


@pytest.fixture
def deployment():
    services.require("Redis")
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"cptest-cl-{uuid.uuid4().hex[:8]}"
    config = Config.model_validate({
        "cameras": [{"id": c, "source": f"rtsp://127.0.0.1:1/{c}", "site": "plaza" if c == "c3" else ""} for c in ("c1", "c2", "c3")]
        + [{"id": "off", "source": "rtsp://127.0.0.1:1/off", "enabled": False}],
        "distributed": {"redis_url": REDIS_URL, "prefix": prefix, "shards": 2},
    })  # fmt: skip
    yield r, config
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        r.delete(*keys)


def _lay_out(r: redis.Redis, config: Config, ttl_s: int = 10) -> Keys:
    """Two workers (one lapsed), one casekeeper; c1 on w1, c2 on w2 (lapsed member, lease still held), c3 free.
    Leases last `ttl_s`: tests that start the CLI (seconds on a busy machine) give it longer."""
    keys = Keys.of(config.distributed)
    sec, _ = r.time()
    now_ms = int(sec) * 1000
    now = datetime.fromtimestamp(int(sec), tz=UTC)
    r.zadd(keys.workers, {"w1": now_ms + (ttl_s - 2) * 1000, "w2": now_ms - 1000})
    r.zadd(keys.casekeepers, {"k1": now_ms + (ttl_s - 2) * 1000})
    r.set(keys.camera_lease("c1"), "w1", px=ttl_s * 1000)
    r.set(keys.camera_lease("c2"), "w2", px=ttl_s * 1000)
    r.set(keys.shard_lease(0), "k1", px=ttl_s * 1000)
    r.hset(keys.costs, mapping={"c1": 0.052, "c2": 0.31})
    # c1 analysed 2 s ago and applied up to the frame before; c2 analysed 5 s ago, applied 300 s behind
    r.hset(keys.clock("c1"), mapping={"pts": 120.0, "wall": (now - timedelta(seconds=2)).isoformat(), "owner": "w1"})
    r.hset(keys.clock("c2"), mapping={"pts": 400.0, "wall": (now - timedelta(seconds=5)).isoformat(), "owner": "w2"})
    r.hset(keys.applied, mapping={"c1": f"119.0|{(now - timedelta(seconds=3)).isoformat()}",
                                  "c2": f"100.0|{(now - timedelta(seconds=305)).isoformat()}"})  # fmt: skip
    # shard streams: 5 entries on each; shard 0's group read 3 and acknowledged 1; shard 1 has no group yet
    for k in range(2):
        for i in range(5):
            r.xadd(keys.events(k), {"m": f"{i}"})
    group = config.distributed.casekeeper_group
    r.xgroup_create(keys.events(0), group, id="0")
    got = r.xreadgroup(group, "k1", {keys.events(0): ">"}, count=3)
    r.xack(keys.events(0), group, got[0][1][0][0])
    r.xadd(keys.dead, {"kind": "frame", "camera": "c2", "stream": keys.events(0), "error": "unknown category 'fly_tipping'"})
    return keys


def test_read_cluster_reports_members_owners_costs_backlog_and_findings(deployment):
    r, config = deployment
    keys = _lay_out(r, config)
    st = read_cluster(r, config)

    assert [m.id for m in st.workers] == ["w1"]  # w2's membership lapsed
    assert [m.id for m in st.casekeepers] == ["k1"] and 0 < st.casekeepers[0].expires_in_s <= 8
    cams = {c.camera_id: c for c in st.cameras}
    assert set(cams) == {"c1", "c2", "c3"}  # the disabled camera is not expected to run
    assert (cams["c1"].owner, cams["c1"].cores, cams["c1"].behind_s) == ("w1", 0.052, 1.0)
    assert (cams["c2"].owner, cams["c2"].behind_s) == ("w2", 300.0)
    assert (cams["c3"].owner, cams["c3"].cores, cams["c3"].behind_s) == (None, None, None)
    assert cams["c3"].shard == shard_of(shard_key("c3", "plaza"), 2)
    shards = {s.shard: s for s in st.shards}
    assert (shards[0].owner, shards[0].length, shards[0].pending, shards[0].unread) == ("k1", 5, 2, 2)
    assert (shards[1].owner, shards[1].length, shards[1].pending, shards[1].unread) == (None, 5, 0, 5)
    assert st.dead == 1 and st.segments_queued == 0
    assert st.dead_recent == (f"camera c2, {keys.events(0)}: unknown category 'fly_tipping'",)
    assert not st.healthy
    text = "\n".join(st.findings)
    for expected in ("held by no worker: c3", "shard(s) 1 have events waiting", "camera c2: events applied 300 s behind", "1 message(s) set aside"):
        assert expected in text, text
    assert len(st.findings) == 4  # nothing about c1, and workers and casekeepers are running


def test_cluster_status_command_prints_json_and_exits_by_health(deployment, tmp_path):
    r, config = deployment
    _lay_out(r, config, ttl_s=120)
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    done = subprocess.run([*EXE, "cluster", "status", "-c", str(config_file), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert {c["camera_id"]: c["owner"] for c in data["cameras"]} == {"c1": "w1", "c2": "w2", "c3": None}
    assert data["cameras"][1]["behind_s"] == 300.0 and data["dead"] == 1

    table = subprocess.run([*EXE, "cluster", "status", "-c", str(config_file)], capture_output=True, text=True, timeout=120)
    assert table.returncode == 1
    assert "held by no worker: c3" in table.stdout and "dead letters: 1" in table.stdout
    assert "newest dead letter: camera c2" in table.stdout and "fly_tipping" in table.stdout


def test_cluster_status_names_an_unreachable_redis_without_its_password(tmp_path):
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump({
        "cameras": [{"id": "c1", "source": "rtsp://127.0.0.1:1/c1"}],
        "distributed": {"redis_url": "redis://:hunter2secret@127.0.0.1:1/0"},
    }))  # fmt: skip
    done = subprocess.run([*EXE, "cluster", "status", "-c", str(config_file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot read the cluster" in done.stderr and "127.0.0.1:1" in done.stderr
    assert "hunter2secret" not in done.stderr + done.stdout


def test_cluster_exporter_serves_the_same_state_as_prometheus_metrics(deployment, tmp_path):
    r, config = deployment
    _lay_out(r, config, ttl_s=120)
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    proc = subprocess.Popen([*EXE, "cluster", "exporter", "-c", str(config_file), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert "/metrics" in line, line + proc.stdout.read() if proc.poll() is not None else line
        url = line.split(" on ", 1)[1].strip()
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(url, timeout=10).text)}

        def value(name: str, **labels: str) -> float:
            return next(s.value for s in families[name].samples if s.labels == labels)

        assert value("citypatrol_cluster_redis_up") == 1 and value("citypatrol_cluster_workers") == 1
        assert value("citypatrol_cluster_findings") == 4 and value("citypatrol_cluster_dead_letters") == 1
        assert [value("citypatrol_cluster_camera_held", camera=c) for c in ("c1", "c2", "c3")] == [1, 1, 0]
        assert value("citypatrol_cluster_camera_cost_cores", camera="c2") == pytest.approx(0.31)
        assert value("citypatrol_cluster_camera_applied_behind_seconds", camera="c2") == pytest.approx(300)
        assert 1 <= value("citypatrol_cluster_camera_analysed_age_seconds", camera="c1") < 60
        assert [value("citypatrol_cluster_shard_unread", shard=k) for k in ("0", "1")] == [2, 5]
        assert "c3" not in {s.labels.get("camera") for s in families["citypatrol_cluster_camera_cost_cores"].samples}
        assert "rtsp://" not in httpx.get(url, timeout=10).text
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_the_exporter_says_redis_is_down_instead_of_failing_the_scrape():
    config = Config.model_validate({"cameras": [{"id": "c1", "source": "rtsp://127.0.0.1:1/c1"}],
                                    "distributed": {"redis_url": "redis://127.0.0.1:1/0"}})  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(lambda: read_cluster(connect(config.distributed.redis_url, socket_timeout_s=2), config)))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert set(families) == {"citypatrol_cluster_redis_up"}
    assert families["citypatrol_cluster_redis_up"].samples[0].value == 0
