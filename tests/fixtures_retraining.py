"""Fixtures for the retraining loop: a case store seeded by the real batch runner on real frames,
and reviewer decisions recorded through the real review center over HTTP.

Footage: the car park's real frame at 4.0 s (three cars in the bays) held for 150 s of stream time,
analysed as two cameras whose recordings start 90 minutes apart (so their cases fall in different
minutes and can land on different sides of the split). The default COCO detector opens one
illegal-parking case per parked car after the 60 s dwell; each case has a frame, a clean crop and
a clip re-decoded from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from citypatrol.api.app import create_app
from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.sinks.active_sampling import ActiveSampler, SamplingConfig
from citypatrol.pipeline.batch.runner import BatchResult, run_batch
from citypatrol.pipeline.config.models import Camera, Config, Zone, ZoneKind
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.users import Role, UserStore
from tests.conftest import ASSETS
from tests.fixtures_api import LiveServer
from tests.footage import PARKED_BAYS, PARKING, encode, frame_at

REVIEWER, REVIEWER_PASSWORD = "wang.fang", "reviewer-pass-" + "r" * 8
COCO_ONLY = {"detectors": [{"name": "coco", "weights": "yolo11n-coco-openvino-int8"}]}
STARTS = {"lot-a": "2026-11-18T08:00:00+08:00", "lot-b": "2026-11-18T09:30:00+08:00"}


def lot_config(cameras: list[Camera] | None = None, **extra) -> Config:  # noqa: ANN003
    zone = Zone(id="bays", name="消防通道 fire lane", kind=ZoneKind.no_parking, polygon=PARKED_BAYS)
    cams = cameras or [Camera(id=cid, name=f"停车场 {cid}", source="x", cadence_s=2.0, zones=[zone], start_time=start,
                              rules={"illegal_parking": {"dwell_s": 60}}) for cid, start in STARTS.items()]
    # the COCO detector alone: the loop below retrains its slot (the city model, where configured, is another slot)
    return Config(cameras=cams, models=COCO_ONLY, **extra)


@pytest.fixture(scope="module")
def parked_video(tmp_path_factory) -> Path:
    parked = frame_at(ASSETS / PARKING, 4.0)
    return encode(tmp_path_factory.mktemp("footage") / "parked.mp4", 150, lambda s: parked)


@pytest.fixture(scope="module")
def coco_detector():
    return load_detectors(lot_config().models)


@dataclass
class Seeded:
    out: Path
    db_url: str
    evidence: Path
    config: Config
    batch: BatchResult
    sampler: ActiveSampler


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, parked_video, coco_detector) -> Seeded:
    out = tmp_path_factory.mktemp("seeded")
    config = lot_config()
    cams = [c.model_copy(update={"source": str(parked_video)}) for c in config.cameras]
    config = config.model_copy(update={"cameras": cams})
    sampler = ActiveSampler(out / "to_label", SamplingConfig(max_per_hour=3, min_gap_s=30))
    batch = run_batch(config, cams, out, coco_detector, show_progress=False, frame_sink=sampler)
    return Seeded(out, batch.database_url, out / "evidence", config, batch, sampler)


def side(box) -> str:  # noqa: ANN001
    return "left" if box[0] < 0.6 else "right"


@dataclass
class Decided:
    confirmed: list[str]
    rejected_false: list[str]  # 误报：不是问题
    rejected_compliant: list[str]  # 合规
    skipped: list[str]  # 画面不清: not used for training
    reviewed_boxes: dict[str, list[float]] = field(default_factory=dict)  # boxes the reviewer drew


@pytest.fixture(scope="module")
def decided(seeded: Seeded) -> Decided:
    """A reviewer signs in to the review center and decides every case over HTTP."""
    store = open_store(seeded.db_url)
    users = UserStore(store.engine)
    users.add_user(REVIEWER, REVIEWER_PASSWORD, Role.reviewer, actor="test")
    server = LiveServer(create_app(seeded.config, store, seeded.evidence)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/api/v1/auth/login", json={"username": REVIEWER, "password": REVIEWER_PASSWORD})
            assert r.status_code == 200, r.text
            h = {"X-CSRF-Token": r.json()["csrf_token"]}
            cases = c.get("/api/v1/cases", params={"limit": 100}).json()["items"]
            assert {i["camera_id"] for i in cases} == set(STARTS) and len(cases) >= 4, cases
            d = Decided([], [], [], [])
            # the same two cars on both cameras: the left one (x1 < 0.6) is not a problem, the right one is
            plan = {("lot-a", "left"): "false", ("lot-a", "right"): "confirm",
                    ("lot-b", "left"): "compliant", ("lot-b", "right"): "unclear"}
            for item in sorted(cases, key=lambda i: (i["camera_id"], i["box"][0])):
                case_id, what = item["case_id"], plan[(item["camera_id"], side(item["box"]))]
                if what == "confirm":
                    # the reviewer first tightens the box around the car, as drawn in the review center
                    x1, y1, x2, y2 = item["box"]
                    tight = [round(v, 4) for v in (x1 + 0.1 * (x2 - x1), y1 + 0.1 * (y2 - y1), x2 - 0.1 * (x2 - x1), y2 - 0.05 * (y2 - y1))]
                    r = c.post(f"/api/v1/cases/{case_id}/box", json={"box": tight, "reason": "tighter"}, headers=h)
                    assert r.status_code == 200 and r.json()["reviewed_box"] == tight, r.text
                    d.reviewed_boxes[case_id] = tight
                    r = c.post(f"/api/v1/cases/{case_id}/confirm", json={"note": "car in the fire lane"}, headers=h)
                    d.confirmed.append(case_id)
                else:
                    reason = {"false": "误报：不是问题", "compliant": "合规（允许的停车/广告/经营）", "unclear": "画面不清，无法判断"}[what]
                    r = c.post(f"/api/v1/cases/{case_id}/reject", json={"reason": reason}, headers=h)
                    {"false": d.rejected_false, "compliant": d.rejected_compliant, "unclear": d.skipped}[what].append(case_id)
                assert r.status_code == 200, r.text
                assert r.json()["history"][-1]["actor"] == f"user:{REVIEWER}"
                assert r.json()["model"] == seeded.batch.model  # the case detail names the model that made it
    finally:
        server.stop()
        store.close()
    return d
