"""Fixtures for the dispatch tests: a real database (SQLite file or a fresh PostgreSQL schema), the
dispatch-system simulator on loopback, citypatrol's callback endpoint under uvicorn, and cases.

Use from a test module:
    from tests.fixtures_dispatch import db_url, pg_admin, store, sim, SECRET  # noqa: F401
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn

from citypatrol.api.routes_dispatch import FULL_PATH, create_callback_app
from citypatrol.pipeline.cases.states import opened_row
from citypatrol.pipeline.config.models import Camera, Category, Config, DispatchConfig, Location
from citypatrol.pipeline.dispatch.simulator import DispatchSimulator
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.types import Case, CaseStatus
from tests.fixtures_db import PG_URL, db_url, pg_admin, store  # noqa: F401, F811  (fixtures)

SECRET = "test-dispatch-key-" + "k" * 16
T0 = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Asia/Shanghai
BOX = (0.60, 0.61, 0.68, 0.71)


@pytest.fixture
def sim() -> Iterator[DispatchSimulator]:
    with DispatchSimulator(SECRET) as s:
        yield s


def dispatch_config(url: str = "", **dispatch: object) -> Config:
    """A config that delivers fast: small backoff, no evidence wait, short timeouts."""
    base = dict(enabled=True, adapter="http", url=url or "http://127.0.0.1:9/none", secret=SECRET, backoff_base_s=0.05,
                backoff_max_s=0.2, backoff_jitter=0.0, timeout_s=2, lease_s=5, poll_s=0.05, evidence_wait_s=0, max_attempts=8)
    base.update(dispatch)
    cam = Camera(id="cam1", name="东门 east gate", source="unused.mp4",
                 location=Location(lon=114.05, lat=22.54, address="深南大道 1 号", district="福田区", grid_code="440304-001"))
    return Config(cameras=[cam], dispatch=DispatchConfig(**base))


def make_case(case_id: str, *, score: float = 0.9, camera: str = "cam1", category: Category = Category.illegal_parking,
              at: datetime = T0, box: tuple[float, float, float, float] = BOX, zone: str = "bays",
              cue: str = "detector") -> Case:
    return Case(case_id, camera, category, CaseStatus.detected, box, zone, 100.0, at, 100.0, at, score,
                history=(opened_row(at, "casebuilder", "car still"),), cue=cue)


def open_submitted(store: Store, config: Config, case_id: str, **kw) -> Case:
    """Open a case the way the recorder does with a policy: decision and message in one transaction."""
    case = make_case(case_id, **kw)
    moved, message, _ = ReviewPolicy(config.review).apply(case, at=case.opened_at, dwell_s=200)
    store.upsert_camera(config.cameras[0])
    store.open_case(moved, None, codes=config.codes[case.category], outbox=message)
    return moved


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CallbackServer:
    """citypatrol's callback endpoint served by uvicorn on a loopback port, in a thread."""

    def __init__(self, store: Store, config: Config) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_callback_app(store, config), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{FULL_PATH}"

    def __enter__(self) -> CallbackServer:
        self.thread.start()
        if not wait_for(lambda: self.server.started, 10):
            raise RuntimeError("callback server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
