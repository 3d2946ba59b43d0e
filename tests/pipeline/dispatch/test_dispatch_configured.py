"""A configured category round the closed loop, on SQLite and PostgreSQL: 店外经营 as the example
config declares it (scene_change in door_front zones), on the PKLot stills where cars arrive and stay
(a real new object at rest: the rule kind's positive, not real 店外经营). The batch run opens its
cases and the review policy auto-submits them (an override for the category); the dispatch message carries the category and the
city's code like a built-in's; the simulator reports them handled; 核查 re-checks each place with
the same cue (a new object against the reference picture) on footage of the empty lot and closes them.
"""

from __future__ import annotations

import shutil

import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.models import Config, ReviewConfig, ReviewOverride, VerifyConfig
from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter
from citypatrol.pipeline.evaluation.run import sample_cameras
from citypatrol.pipeline.evaluation.samples import fetch_samples, load_samples
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.types import CaseStatus
from citypatrol.pipeline.verify.recheck import Verifier
from tests.fixtures_dispatch import CallbackServer, db_url, dispatch_config, pg_admin, sim, wait_for  # noqa: F401
from tests.footage import example_config, pklot_door_fronts

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


@pytest.fixture(scope="module")
def example() -> Config:
    return example_config()


def test_a_configured_category_is_dispatched_with_its_code_and_verified(db_url, sim, detector, example, tmp_path):
    fetch_samples(tmp_path, ["pklot_ufpr05_seq1"])
    [(camera, _)] = sample_cameras([s for s in load_samples() if s.name == "pklot_ufpr05_seq1"], tmp_path)
    camera = pklot_door_fronts(camera)
    empty_lot = tmp_path / "empty_lot"  # the 06:25 still held as a fixed camera: the cars have gone
    empty_lot.mkdir()
    for i in range(8):
        shutil.copyfile(camera.reference_image, empty_lot / f"still_{i:03d}.png")

    base = dispatch_config(sim.url)
    config = Config.model_validate({
        **base.model_dump(), "cameras": [camera.model_dump()], "categories": [c.model_dump() for c in example.categories],
        # a scene_change case has no detector score (0.5): the city lets this category's cases go on their own
        "review": ReviewConfig(overrides=[ReviewOverride(category="shop_front_business", min_score=0.5)]).model_dump(),
        "verify": VerifyConfig(confirm_s=15, cadence_s=5, gap_s=5, max_watch_s=35).model_dump(),
        "storage": {**base.storage.model_dump(), "database_url": db_url, "evidence_dir": tmp_path / "evidence"},
    })
    result = run_batch(config, [camera], tmp_path / "out", detector, show_progress=False)
    ids = sorted(r.case_id for r in result.cases)
    assert {(r.case.category, r.case.zone_id) for r in result.cases} == {
        ("shop_front_business", "space-6"), ("shop_front_business", "space-11")}
    assert all(r.case.status is CaseStatus.approved for r in result.cases), "auto-submitted by the review policy"

    store = open_store(db_url)
    try:
        with CallbackServer(store, config) as server:
            sim.callback_url, sim.auto = server.url, (("dispatched", 0.1), ("handled", 0.4))
            Dispatcher(store, config, make_adapter(config), evidence_dir=tmp_path / "evidence").run_once()
            assert sorted(sim.accepted_keys()) == ids
            for body in (b.body for b in sim.state.accepted.values()):
                assert (body["category"], body["category_code"], body["category_name"], body["category_major"]) == (
                    "shop_front_business", "0504", "店外经营", "街面秩序")
                assert body["camera_id"] == "pklot_seq1" and body["zone_id"] in ("space-6", "space-11")
            assert wait_for(lambda: all(store.get_case(c).case.status is CaseStatus.handled for c in ids), 20)

        verifier = Verifier(store, config, detector, tmp_path / "evidence", sources={"pklot_seq1": str(empty_lot)}.get)
        results = verifier.run_pending()
        assert {r.case_id: r.status for r in results} == dict.fromkeys(ids, CaseStatus.closed)
        assert all("scene-change cue" in r.reason for r in results)
    finally:
        store.close()
