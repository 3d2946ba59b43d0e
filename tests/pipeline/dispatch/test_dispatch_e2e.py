"""The whole closed loop on real frames, on SQLite and PostgreSQL: a batch run over a parked-car
camera opens cases and the review policy auto-submits them; the dispatcher pushes them to the
simulator, which calls back 'dispatched' and 'handled'; the verifier re-checks the place on footage
where the cars have been towed and closes the cases; the period report counts them closed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from citypatrol.annotate.period_report import period_cases, period_stats
from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.models import Camera, Config, ReviewConfig, ReviewThresholds, VerifyConfig, Zone, ZoneKind
from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.records import OutboxStatus
from citypatrol.pipeline.types import CaseStatus
from citypatrol.pipeline.verify.recheck import Verifier
from tests.fixtures_dispatch import CallbackServer, db_url, dispatch_config, pg_admin, sim, wait_for  # noqa: F401
from tests.footage import PARKED_BAYS, PARKED_CARS, PARKING, encode, frame_at, paste

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


def test_cases_go_round_the_loop_and_close(db_url, sim, detector, assets, tmp_path):
    parked, empty = frame_at(assets / PARKING, 4.0), frame_at(assets / PARKING, 0.0)
    towed = parked
    for car in PARKED_CARS:
        towed = paste(towed, empty, car)
    camera_video = encode(tmp_path / "lot.mp4", 40, lambda s: parked)
    after_video = encode(tmp_path / "lot_after.mp4", 30, lambda s: towed)

    zone = Zone(id="bays", name="消防通道 fire lane", kind=ZoneKind.no_parking, polygon=PARKED_BAYS)
    camera = Camera(id="lot", name="停车场 lot", source=str(camera_video), cadence_s=2.0, zones=[zone],
                    rules={"illegal_parking": {"dwell_s": 20}})
    base = dispatch_config(sim.url)
    config = base.model_copy(update={
        "cameras": [camera],
        "review": ReviewConfig(default=ReviewThresholds(min_score=0.5)),
        "verify": VerifyConfig(confirm_s=16, cadence_s=2, gap_s=4, max_watch_s=30),
        "storage": base.storage.model_copy(update={"database_url": db_url, "evidence_dir": tmp_path / "evidence"}),
    })
    start = datetime.now(UTC)
    result = run_batch(config, [camera], tmp_path / "out", detector, show_progress=False)
    ids = [r.case_id for r in result.cases]
    assert len(ids) >= 2, "the parked cars in the fire lane are found"
    assert all(r.case.status is CaseStatus.approved for r in result.cases), "auto-submitted by the review policy"

    store = open_store(db_url)
    try:
        with CallbackServer(store, config) as server:
            sim.callback_url, sim.auto = server.url, (("dispatched", 0.1), ("handled", 0.4))
            dispatcher = Dispatcher(store, config, make_adapter(config), evidence_dir=tmp_path / "evidence")
            dispatcher.run_once()
            assert sorted(sim.accepted_keys()) == sorted(ids)
            assert all(b.body["evidence"] for b in sim.state.accepted.values()), "evidence travels with each case"
            assert wait_for(lambda: all(store.get_case(c).case.status is CaseStatus.handled for c in ids), 20)

        verifier = Verifier(store, config, detector, tmp_path / "evidence", sources={"lot": str(after_video)}.get)
        results = verifier.run_pending()
        assert {r.case_id: r.status for r in results} == dict.fromkeys(ids, CaseStatus.closed)
        dispatcher.run_once()  # the closing notices
        assert all(m.status is OutboxStatus.sent for m in store.outbox(limit=100))
        assert sorted(k for k in sim.accepted_keys() if k.endswith(":verified:1")) == sorted(f"{c}:verified:1" for c in ids)

        records = store.list_cases(since=start - timedelta(days=1), limit=100)
        total = period_stats(period_cases(records, set()))[0]
        assert (total.counts["detected"], total.counts["auto_submitted"], total.counts["closed"]) == (len(ids),) * 3
        assert total.median("to_close_s") is not None
    finally:
        store.close()
