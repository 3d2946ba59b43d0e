"""A dispatcher process killed (SIGKILL) in the middle of a delivery: on restart every message is
sent, and the receiver ends up with each case exactly once.

`citypatrol dispatch run` runs as a real subprocess against the real database (SQLite file and
PostgreSQL) and the simulator. The simulator records the first case and then stalls its answer; the
process is killed while it waits, so that message was received but never marked sent, and the second
case's message was committed but never sent. After the restart the first is resent once its lease
ends (the simulator answers 409: it has that idempotency key) and the second is delivered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from citypatrol.pipeline.store.records import OutboxStatus
from citypatrol.pipeline.types import CaseStatus
from tests.fixtures_dispatch import db_url, dispatch_config, open_submitted, pg_admin, sim, store, wait_for  # noqa: F401

CONFIG = """\
storage:
  database_url: "{db}"
  evidence_dir: "{evidence}"
dispatch:
  enabled: true
  adapter: http
  url: "{url}"
  secret: ${{CP_TEST_DISPATCH_SECRET}}
  timeout_s: 4
  lease_s: 5
  batch: 1
  poll_s: 0.1
  backoff_base_s: 0.1
  backoff_max_s: 0.5
  evidence_wait_s: 0
"""


def _start(config: Path, log: Path) -> subprocess.Popen:
    from tests.fixtures_dispatch import SECRET

    env = {**os.environ, "CP_TEST_DISPATCH_SECRET": SECRET}
    cmd = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "dispatch", "run", "--config", str(config)]
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_killed_mid_delivery_resends_on_restart_without_duplicates(store, sim, db_url, tmp_path):
    config = dispatch_config(sim.url)
    for cid in ("first", "second"):
        open_submitted(store, config, cid)
    cfg = tmp_path / "dispatch.yaml"
    cfg.write_text(CONFIG.format(db=db_url, url=sim.url, evidence=tmp_path / "evidence"))
    log = tmp_path / "dispatcher.log"
    sim.delay_s = 30.0  # record the message, then keep the sender waiting

    proc = _start(cfg, log)
    try:
        assert wait_for(lambda: sim.accepted_keys() == ["first"], 60), f"no delivery arrived:\n{log.read_text()}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    first, second = (store.outbox(case_id=c)[0] for c in ("first", "second"))
    assert first.status is OutboxStatus.pending and first.attempts == 1, "received but never marked sent"
    assert second.status is OutboxStatus.pending and second.attempts == 0, "committed but never sent"
    assert store.get_case("first").case.status is CaseStatus.approved

    sim.delay_s = 0.0
    proc = _start(cfg, log)
    try:
        done = wait_for(lambda: not store.outbox(status=OutboxStatus.pending), 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert done, f"messages still pending after the restart:\n{log.read_text()}"
    assert proc.returncode == 0, log.read_text()
    assert sorted(sim.accepted_keys()) == ["first", "second"]
    assert [code for key, code in sim.state.attempts if key == "first"] == [200, 409]
    assert [code for key, code in sim.state.attempts if key == "second"] == [200]
    for cid in ("first", "second"):
        assert store.get_case(cid).case.status is CaseStatus.dispatched
    assert "receiver had it already" in log.read_text()
