"""PostgreSQL restarted while the case recorder (what the batch and live runners persist through)
is writing: every case the case builder made is stored exactly once, with all its sightings,
audit row and evidence rows; the writer never sees an error.

The machine's PostgreSQL cluster is restarted once (`pg_ctlcluster … restart`, about a second)
while a writer thread records a stream of case changes. Other test sessions share the server, so
this is the only restart in the suite. The test skips when the cluster cannot be controlled
(`pg_ctlcluster` missing or not root), and fails if PostgreSQL does not come back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from citypatrol.models.detections import Detections
from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.cases.builder import CaseBuilder
from citypatrol.pipeline.config.models import Camera, Category, Config
from citypatrol.pipeline.sinks.recorder import CaseRecorder
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.schema import CaseRow
from citypatrol.pipeline.types import Event
from citypatrol.streams.frame import Frame
from tests.fixtures_db import pg_schema, schema_url

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
CASES = 60  # distinct places: each opens a case …
SIGHTINGS = 4  # … and is seen again this many times in all


def _cluster() -> list[str]:
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0 or not Path("/etc/postgresql").is_dir():
        pytest.skip("PostgreSQL cluster cannot be restarted here (needs pg_ctlcluster as root)")
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        pytest.skip("no PostgreSQL cluster configured")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


@pytest.fixture
def pg_schema_url():
    with pg_schema("cp_fault", drop_wait_s=60) as schema:  # the server may still be starting when a test fails early
        yield schema_url(schema)


def _box(i: int) -> tuple[float, float, float, float]:
    col, row = i % 10, i // 10
    return (0.02 + col * 0.09, 0.02 + row * 0.12, 0.08 + col * 0.09, 0.1 + row * 0.12)


def _changes():
    """(frame, change) pairs from the real case builder: CASES openings, then repeated sightings."""
    builder = CaseBuilder(Config().cases)
    image = np.full((48, 64, 3), 90, np.uint8)
    pts = 300.0
    for round_ in range(SIGHTINGS):
        for i in range(CASES):
            pts += 0.5
            wall = T0 + timedelta(seconds=pts)
            event = Event("cam", Category.illegal_parking, _box(i), "z1", pts, wall, pts - 180.0 - round_, 0.8,
                          detail=f"car {i} still")
            change = builder.add(event)
            frame = Frame("cam", pts, wall, image)
            yield frame, change, builder


def test_postgres_restart_mid_write_loses_and_doubles_nothing(pg_schema_url, tmp_path):
    cluster = _cluster()
    store = open_store(pg_schema_url)
    config = Config(cameras=[Camera(id="cam", source="cam.mp4")])
    store.upsert_camera(config.cameras[0])
    recorder = CaseRecorder(store, config, tmp_path / "evidence", config.cameras)
    written = threading.Event()
    errors: list[BaseException] = []
    state: dict[str, object] = {}

    def writer() -> None:
        try:
            n = 0
            for frame, change, builder in _changes():
                dets = Detections.empty((64, 48))
                recorder.record(FrameResult(frame, dets, (), (change.event,), (change,)))
                n += 1
                if n == CASES // 2:
                    written.set()  # half the openings are in: restart now
                time.sleep(0.01)
            state["builder"] = builder
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)
        finally:
            written.set()

    thread = threading.Thread(target=writer, name="case-writer")
    thread.start()
    assert written.wait(60)
    t = time.monotonic()
    restart = subprocess.run([*cluster, "restart"], capture_output=True, text=True, timeout=120)
    restart_s = time.monotonic() - t
    assert restart.returncode == 0, restart.stderr
    thread.join(180)
    assert not thread.is_alive(), "the writer hangs after the restart"
    recorder.close()
    assert not errors, f"a write failed across the restart: {errors[0]!r}"
    assert recorder.store_retries > 0, "no write met the restart: the test did not exercise the fault"

    builder: CaseBuilder = state["builder"]  # type: ignore[assignment]
    expected = {c.case_id: c for c in builder.open_cases}
    assert len(expected) == CASES
    stored = {r.case.case_id: r for r in store.list_cases(limit=10 * CASES)}
    assert set(stored) == set(expected), "a case was lost or doubled"
    for case_id, case in expected.items():
        record = stored[case_id]
        assert record.case.events == case.events == SIGHTINGS, (case_id, record.case.events)
        assert record.sightings == SIGHTINGS  # one row per sighting, none doubled by a retry
        assert [t.to_status.value for t in record.case.history] == ["detected"]
        assert {e.kind.value for e in record.evidence} == {"frame", "crop"}
        for e in record.evidence:  # every evidence file complete on disk, none half-written
            assert (tmp_path / "evidence" / e.path).stat().st_size == e.size
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CaseRow)).scalar() == CASES
    assert recorder.evidence_errors == 0
    store.close()
    print(f"PostgreSQL restart took {restart_s:.1f} s; {recorder.store_retries} write(s) retried")
