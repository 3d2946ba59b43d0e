"""Fixtures for the review center's tests: a real uvicorn server on a loopback port over a real
database (SQLite file or a fresh PostgreSQL schema), seeded with cases whose evidence is rendered
from real sample frames (annotated frame with the zone drawn, crop, H.264 clip).

Use from a test module:  from tests.fixtures_api import api_server, db_url, evidence_set, pg_admin  # noqa: F401
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from citypatrol.annotate.evidence import write_case_images, write_clip_from_file
from citypatrol.api.app import create_app
from citypatrol.api.ratelimit import LoginLimiter
from citypatrol.pipeline.config.models import Camera, Category, Config, Location, Zone
from citypatrol.pipeline.store.case_store import Store, open_store
from citypatrol.pipeline.store.users import Role, UserStore
from citypatrol.pipeline.types import Case, CaseStatus, Event, PlateRead
from tests.conftest import ASSETS, SAMPLE_VIDEOS
from tests.footage import PARKED_BAYS, PARKED_CARS, frame_at
from tests.fixtures_db import PG_URL, db_url, pg_admin  # noqa: F401  (fixtures)

PASSWORD = {r: f"{r}-pass-{'x' * 6}" for r in ("reviewer", "analyst", "admin")}


def camera_configs() -> list[Camera]:
    video = lambda name: str(ASSETS / SAMPLE_VIDEOS[name])  # noqa: E731
    return [
        Camera(id="london", name="伦敦街道 London street", source=video("london"),
               location=Location(address="sample street", district="西城区", grid_code="SAMPLE-02", lon=116.36, lat=39.91),
               zones=[Zone(id="hoarding", name="施工围挡", kind="ad_area", polygon=[[0.64, 0.30], [1.0, 0.30], [1.0, 0.60], [0.64, 0.60]])]),
        Camera(id="parking_lot", name="停车场 Car park", source=video("parking_lot"),
               location=Location(address="sample car park", district="东城区", grid_code="SAMPLE-03"),
               zones=[Zone(id="bays", name="消防通道", kind="no_parking", polygon=PARKED_BAYS)]),
        Camera(id="pedestrian", name="步行街 Pedestrian street", source=video("pedestrian"),
               location=Location(address="sample pedestrian street", district="西城区", grid_code="SAMPLE-04"),
               zones=[Zone(id="bins", name="垃圾桶", kind="bin_area", polygon=[[0.3, 0.15], [0.9, 0.15], [0.9, 0.8], [0.3, 0.8]])]),
        Camera(id="intersection", name="交叉口 Intersection", source=video("intersection"),
               location=Location(address="sample intersection", district="东城区", grid_code="SAMPLE-01"),
               zones=[Zone(id="junction", name="路口中心", kind="no_parking",
                           polygon=[[0.22, 0.18], [0.88, 0.18], [0.92, 0.75], [0.25, 0.78]])]),
    ]


def api_config() -> Config:
    # a callback secret, so the dispatch system's signed callback route is live (it answers 503 without one)
    return Config(cameras=camera_configs(), dispatch={"callback_secret": "test-callback-key-" + "k" * 16})


@dataclass(frozen=True)
class SeedCase:
    case_id: str
    camera: str
    category: Category
    box: tuple[float, float, float, float]
    zone: str
    at_s: float  # where in the video the evidence frame is
    hours_ago: float
    clip: bool = False
    detail: str = ""
    plate: PlateRead | None = None


SEED = [
    SeedCase("c-london-poster", "london", Category.billboard, (0.89, 0.35, 1.0, 0.56), "hoarding", 1.0, 1.0, clip=True,
             detail="advert panel on the construction hoarding for 15 min"),
    SeedCase("c-parking-1", "parking_lot", Category.illegal_parking, PARKED_CARS[0], "bays", 4.0, 2.0, clip=True,
             detail="car still for 320 s in zone 消防通道", plate=PlateRead("皖AD12345", 0.96, "read")),
    SeedCase("c-bin", "pedestrian", Category.garbage_overflow, (0.60, 0.50, 0.70, 0.72), "bins", 1.0, 3.0,
             detail="bin with overflow for 600 s"),
    SeedCase("c-london-render", "london", Category.billboard, (0.705, 0.395, 0.76, 0.545), "hoarding", 1.0, 5.0),
    SeedCase("c-parking-2", "parking_lot", Category.illegal_parking, PARKED_CARS[1], "bays", 4.0, 26.0,
             plate=PlateRead.unread("no text found on the vehicle")),
    SeedCase("c-junction", "intersection", Category.illegal_parking, (0.45, 0.40, 0.60, 0.55), "junction", 10.0, 50.0),
]


@pytest.fixture(scope="session")
def evidence_set(tmp_path_factory) -> tuple[Path, dict[str, list[tuple[str, str, str, int]]]]:
    """Evidence files rendered once per session: case id -> [(kind, relative path, sha256, bytes)]."""
    root = tmp_path_factory.mktemp("evidence")
    cams = {c.id: c for c in camera_configs()}
    files: dict[str, list[tuple[str, str, str, int]]] = {}
    frames: dict[tuple[str, float], object] = {}
    for s in SEED:
        cam = cams[s.camera]
        key = (s.camera, s.at_s)
        if key not in frames:
            frames[key] = frame_at(Path(cam.source), s.at_s)
        zone = next(z for z in cam.zones if z.id == s.zone)
        folder = root / s.case_id
        opened = (datetime.now(UTC) - timedelta(hours=s.hours_ago)).astimezone(ZoneInfo("Asia/Shanghai"))
        made = list(write_case_images(folder, "frame", frames[key], s.box, s.category, 0.81, camera_name=cam.name,
                                      local_time=opened, polygons=[zone.polygon],
                                      zone_names=[zone.name], detail=s.detail))
        if s.clip:
            made.append(write_clip_from_file(cam.source, max(0.0, s.at_s - 1.0), s.at_s + 1.0, folder / "clip.mp4", max_side=640))
        kinds = {"image": "frame", "crop": "crop", "clip": "clip"}
        files[s.case_id] = [(kinds[f.kind], f.path.relative_to(root).as_posix(), f.sha256, f.bytes) for f in made]
    return root, files


def add_case(store: Store, config: Config, s: SeedCase, files: list[tuple[str, str, str, int]], *, now: datetime | None = None,
             status: CaseStatus = CaseStatus.detected) -> None:
    now = now or datetime.now(UTC)
    at = now - timedelta(hours=s.hours_ago)
    case = Case(s.case_id, s.camera, s.category, status, s.box, s.zone, 100.0, at, 400.0, at + timedelta(minutes=5), 0.81,
                events=3, detail=s.detail, model="yolo11n-coco-openvino-int8", plate=s.plate)
    event = Event(s.camera, s.category, s.box, s.zone, 400.0, at, 100.0, 0.81, detail=s.detail)
    cam = config.camera(s.camera)
    store.open_case(case, event, codes=config.codes, location=cam.location)
    for kind, rel, sha, size in files:
        store.add_evidence(s.case_id, kind, rel, sha, size)


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the review center did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass
class ApiServer:
    url: str
    store: Store
    config: Config
    evidence_dir: Path
    files: dict[str, list[tuple[str, str, str, int]]]
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token
    db_url: str = ""

    def client(self, role: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=20, **kw)

    def login(self, role: str) -> tuple[httpx.Client, str]:
        """A client signed in with a session cookie as the user named after `role`; returns it and its CSRF token."""
        c = httpx.Client(base_url=self.url, timeout=20)
        r = c.post("/api/v1/auth/login", json={"username": role, "password": PASSWORD[role]})
        assert r.status_code == 200, r.text
        return c, r.json()["csrf_token"]


def start_api(db: str, evidence: tuple[Path, dict], *, seed: bool = True, limiter: LoginLimiter | None = None,
              stream_max_s: float = 600.0, health=None, config: Config | None = None) -> tuple[ApiServer, LiveServer]:  # noqa: ANN001
    root, files = evidence
    config = config or api_config()
    store = open_store(db)
    for cam in config.cameras:
        store.upsert_camera(cam)
    if seed:
        now = datetime.now(UTC)
        for s in SEED:
            add_case(store, config, s, files[s.case_id], now=now)
    users = UserStore(store.engine)
    api = ApiServer(url="", store=store, config=config, evidence_dir=root, files=files, db_url=db)
    for role in Role:
        users.add_user(role.value, PASSWORD[role.value], role, actor="test")
        api.tokens[role.value] = users.create_token(f"{role.value}-machine", role, actor="test")[0]
    server = LiveServer(create_app(config, store, root, limiter=limiter, stream_max_s=stream_max_s, health=health)).start()
    api.url = server.url
    return api, server


@pytest.fixture
def api_server(db_url, evidence_set) -> Iterator[ApiServer]:
    api, server = start_api(db_url, evidence_set)
    try:
        yield api
    finally:
        server.stop()
        api.store.close()
