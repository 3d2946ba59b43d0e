"""Zones drawn in the review center reach the live runner, at start and while it runs.

Real footage (a real car-park frame with three parked cars, H.264), the real default detector, the
runner's own SQLite store; zones saved through the review store as the zone editor saves them.
The config's zone lies in an empty corner of the picture, so only the saved zone can make cases.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from footage import PARKED_BAYS, PARKED_CARS

from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.boxes import box_iou
from citypatrol.pipeline.config.models import Camera, Config, LiveConfig, StorageConfig, Zone, ZoneKind
from citypatrol.pipeline.live.runner import run_live
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.review import ReviewStore
from test_live import detector, parked_video  # noqa: F401  (module fixtures: the default models, 70 s of parked cars)

pytestmark = pytest.mark.slow

CORNER = [[0.0, 0.0], [0.08, 0.0], [0.08, 0.08], [0.0, 0.08]]  # sky and trees: nothing parks there


def _config(tmp: Path, video: Path, **live: object) -> Config:
    cam = Camera(id="lot", name="停车场 lot", source=str(video), cadence_s=2.0,
                 zones=[Zone(id="corner", kind=ZoneKind.no_parking, polygon=CORNER)],
                 rules={"illegal_parking": {"dwell_s": 20}})  # fmt: skip
    storage = StorageConfig(database_url=f"sqlite:///{tmp / 'live.db'}", evidence_dir=tmp / "evidence", clip_seconds=2)
    return Config(cameras=[cam], storage=storage,
                  live=LiveConfig(metrics_port=0, status_file=tmp / "status.json", realtime=False, **live))


def _save_bays(config: Config, base_version: int = 0) -> None:
    with open_store(config.storage.database_url) as store:
        ReviewStore(store.engine, config.codes).save_zones(
            "lot", [Zone(id="bays", name="消防通道", kind=ZoneKind.no_parking, polygon=PARKED_BAYS).model_dump(mode="json")],
            base_version=base_version, actor="user:wang")


def _cases(config: Config):
    with open_store(config.storage.database_url) as store:
        return store.list_cases(limit=100)


def _on_cars(cases) -> bool:
    return all(max(box_iou(r.case.box, car) for car in PARKED_CARS) > 0.4 for r in cases)


def test_the_config_zone_alone_gives_no_case(tmp_path, parked_video, detector):  # noqa: F811
    config = _config(tmp_path, parked_video)
    run_live(config, config.cameras, detector)
    assert _cases(config) == []


def test_zones_saved_before_start_replace_the_config_zones(tmp_path, parked_video, detector, caplog):  # noqa: F811
    config = _config(tmp_path, parked_video)
    _save_bays(config)
    with caplog.at_level(logging.INFO, logger="citypatrol.live.zones"):
        result = run_live(config, config.cameras, detector)
    cases = _cases(config)
    assert len(cases) >= 2 and _on_cars(cases), [(r.case.zone_id, r.case.box) for r in cases]
    assert {r.case.zone_id for r in cases} == {"bays"}
    assert result.errors == 0
    assert "camera lot: zones version 1 saved by user:wang (1 zone(s)) in use" in caplog.text


class _SaveAt:
    """A live hook that saves the bays zone once the stream reaches `pts`."""

    def __init__(self, config: Config, pts: float) -> None:
        self.config, self.pts, self.saved_at = config, pts, None

    def on_frame(self, result: FrameResult) -> None:
        if self.saved_at is None and result.frame.pts >= self.pts:
            _save_bays(self.config)
            self.saved_at = result.frame.pts


def test_a_zone_saved_while_running_takes_effect_without_a_restart(tmp_path, parked_video, detector):  # noqa: F811
    config = _config(tmp_path, parked_video, zones_poll_s=0.2)
    hook = _SaveAt(config, pts=30.0)
    result = run_live(config, config.cameras, detector, hooks=[hook], stop=threading.Event())
    cases = _cases(config)
    assert hook.saved_at is not None
    # the cars stood for their dwell long before: their cases open as soon as the zone applies, not before
    assert len(cases) >= 2 and _on_cars(cases)
    assert all(r.case.opened_pts >= hook.saved_at for r in cases), [(r.case.opened_pts, hook.saved_at) for r in cases]
    assert result.errors == 0


def test_an_invalid_saved_version_keeps_the_zones_in_use(tmp_path, parked_video, detector, caplog):  # noqa: F811
    config = _config(tmp_path, parked_video)
    with open_store(config.storage.database_url) as store:  # written straight to the store: the API would refuse it
        ReviewStore(store.engine, config.codes).save_zones(
            "lot", [{"id": "bad", "kind": "no_parking", "polygon": [[0.1, 0.1], [0.2, 0.2]]}], base_version=0, actor="user:wang")
    with caplog.at_level(logging.INFO, logger="citypatrol.live.zones"):
        result = run_live(config, config.cameras, detector)
    assert "camera lot: saved zones version 1 are not valid, the zones in use stay" in caplog.text
    assert _cases(config) == [] and result.errors == 0
