"""No secret in any log line, API response or output file.

Secrets come from the environment, as they must (`${VAR}` in the config): the RTSP camera's
password, the database password (the machine's PostgreSQL trusts loopback, so any password
connects and would show if a URL were logged unredacted), the dispatch HMAC key and the
callback key, the MQTT password; and the review center's secrets: a user's password, session
cookie and CSRF token, and API bearer tokens.

With every logger at DEBUG (SQLAlchemy's statement log, httpx, uvicorn, citypatrol's own): a
batch over a recording with dispatch on (cases go into the outbox), the dispatcher delivering them
signed to the dispatch-system simulator, a live run over the password-protected RTSP camera whose
server is killed mid-run (reconnect errors name the URL), and a review-center session (sign in,
read, decide, evidence, tokens, a signed status callback, failed sign-ins). Then every captured
log line, every API answer (headers and body), the status file, cases.json, the report and the
outbox payloads are searched for each secret, as written and URL-encoded. (While the test plays
the browser, the httpx/httpcore lines of its own client are left out: they log the cookie that
client received, which is the browser's business, not citypatrol's.)
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse

import httpx
import pytest
from sqlalchemy.engine import make_url

from citypatrol.api.app import create_app
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.loading import parse_config
from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter
from citypatrol.pipeline.dispatch.simulator import DispatchSimulator
from citypatrol.pipeline.live.runner import run_live
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.users import Role, UserStore

from fixtures_streams import rtsp_server_factory  # noqa: F401
from footage import PARKED_BAYS
from tests.fixtures_api import LiveServer
from tests.fixtures_db import PG_URL, pg_schema

pytestmark = pytest.mark.slow

SECRETS = {
    "CAM_PW": "Cam-Pa55-9f3k1",
    "DB_PW": "Db-Pa55-7q2m8",
    "DISPATCH_SECRET": "Dispatch-Key-4h6j2w8e0r",
    "CALLBACK_SECRET": "Callback-Key-1z3x5c7v9b",
    "MQTT_PW": "Mqtt-Pa55-2n4m6",
}
USER_PASSWORD = "Reviewer-Pa55-5t7y9u"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        # While the test plays the browser, httpx/httpcore log what that client received (its own
        # session cookie among the response headers): the client's log, not citypatrol's.
        self.ignore_clients = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.ignore_clients and record.name.startswith(("httpx", "httpcore")):
            return
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot even be formatted is a finding too
            self.lines.append(f"UNFORMATTABLE {record.name}: {exc}")


@pytest.fixture
def debug_logs():
    capture = Capture()
    capture.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    touched = {}
    for name in ("sqlalchemy.engine", "sqlalchemy.pool", "httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error",
                 "citypatrol", "alembic", "urllib3"):
        lg = logging.getLogger(name)
        touched[name] = lg.level
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        for name, level in touched.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
def secrets_schema():
    with pg_schema("cp_secrets") as schema:
        yield schema


def _variants(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


def test_no_secret_in_logs_api_answers_or_outputs(tmp_path, parked_video, detector, rtsp_server_factory,  # noqa: F811
                                                  secrets_schema, debug_logs, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    camera_server = rtsp_server_factory({"lot": parked_video}, user="operator", password=SECRETS["CAM_PW"])
    sim = DispatchSimulator(SECRETS["DISPATCH_SECRET"]).start()
    db_url = (make_url(PG_URL).set(password="${DB_PW}").update_query_dict({"options": f"-csearch_path={secrets_schema}"})
              .render_as_string(hide_password=False))
    port = camera_server.port
    config_text = f"""
cameras:
  - id: lot
    name: 停车场 lot
    source: rtsp://operator:${{CAM_PW}}@127.0.0.1:{port}/lot
    cadence_s: 1
    zones: [{{id: bays, kind: no_parking, polygon: {PARKED_BAYS}}}]
    rules: {{illegal_parking: {{dwell_s: 6}}}}
storage: {{database_url: '{db_url}', evidence_dir: {tmp_path / 'evidence'}, clip_seconds: 2}}
dispatch:
  enabled: true
  url: {sim.url}
  secret: ${{DISPATCH_SECRET}}
  callback_secret: ${{CALLBACK_SECRET}}
  mqtt_password: ${{MQTT_PW}}
  backoff_base_s: 0.05
  poll_s: 0.05
  evidence_wait_s: 0
review: {{default: {{auto_submit: true, min_score: 0.0}}}}
live: {{metrics_port: 0, status_file: {tmp_path / 'status.json'}, status_interval_s: 0.5, open_timeout_s: 3,
        read_timeout_s: 2, backoff_max_s: 1}}
"""
    config = parse_config(config_text, "city.yaml")
    sim.callback_secret = SECRETS["CALLBACK_SECRET"]
    answers: list[str] = []
    try:
        # 1. batch over the recording (same camera id), dispatch on: cases with outbox messages
        recorded = config.cameras[0].model_copy(update={"source": str(parked_video)})
        batch = run_batch(config, [recorded], tmp_path / "out", detector, show_progress=False)
        assert batch.cases and not batch.evidence_errors
        store = open_store(config.storage.database_url)

        # 2. the dispatcher delivers them, signed with the dispatch key
        dispatcher = Dispatcher(store, config, make_adapter(config), evidence_dir=config.storage.evidence_dir)
        deadline = time.monotonic() + 20
        while len(sim.accepted_keys()) < len(batch.cases) and time.monotonic() < deadline:
            dispatcher.run_once()
            time.sleep(0.05)
        assert len(sim.accepted_keys()) == len(batch.cases)
        dispatcher.close()

        # 3. live over the password-protected camera; its server is killed and restarted mid-run
        stop = threading.Event()

        def outage() -> None:
            time.sleep(3)
            camera_server.kill()
            time.sleep(2)
            camera_server.start()
            time.sleep(4)
            stop.set()

        threading.Thread(target=outage, daemon=True).start()
        live = run_live(config, config.cameras, detector, stop=stop)
        assert live.status.cameras[0].frames_analysed > 0 and live.status.cameras[0].reconnects >= 1

        # 4. a review-center session over HTTP
        users = UserStore(store.engine)
        users.add_user("wang", USER_PASSWORD, Role.admin, actor="test")
        server = LiveServer(create_app(config, store, config.storage.evidence_dir)).start()
        debug_logs.ignore_clients = True
        try:
            answers += _review_session(server.url, sim, batch.cases[0].case_id)
        finally:
            debug_logs.ignore_clients = False
            server.stop()
        store.close()
    finally:
        sim.stop()

    tokens = [a.split("\t", 1)[1] for a in answers if a.startswith("TOKEN\t")]
    secrets = {**SECRETS, "user password": USER_PASSWORD, **{f"secret #{i}": t for i, t in enumerate(tokens)}}
    assert len(tokens) >= 3  # session cookie, CSRF token, API token
    places = {
        "log": "\n".join(debug_logs.lines),
        "api answers": "\n".join(a for a in answers if not a.startswith("TOKEN\t")),
        "status file": (tmp_path / "status.json").read_text(),
        "cases.json": (tmp_path / "out" / "cases.json").read_text(),
        "report": (tmp_path / "out" / "report.html").read_text(),
        "detections": (tmp_path / "out" / "detections.jsonl").read_text(),
    }
    with open_store(config.storage.database_url) as s:
        places["outbox payloads"] = repr([m.payload for m in s.outbox(limit=1000)])
    assert len(debug_logs.lines) > 200 and any("sqlalchemy.engine" in line for line in debug_logs.lines)
    found = [(name, where) for name, secret in secrets.items() for where, content in places.items()
             if any(v in content for v in _variants(secret))]
    assert not found, f"secrets leaked: {found}"


def _review_session(url: str, sim: DispatchSimulator, case_id: str) -> list[str]:
    """Sign in, use the API as a browser and as a machine; every answer's headers and body, and the secrets issued."""
    out: list[str] = []

    def keep(r: httpx.Response) -> httpx.Response:
        out.append(f"{r.request.method} {r.request.url} → {r.status_code}\n{r.headers}\n{r.text}")
        return r

    browser = httpx.Client(base_url=url, timeout=20)
    for _ in range(2):
        keep(browser.post("/api/v1/auth/login", json={"username": "wang", "password": "wrong " + USER_PASSWORD}))
    r = browser.post("/api/v1/auth/login", json={"username": "wang", "password": USER_PASSWORD})
    assert r.status_code == 200
    csrf = r.json()["csrf_token"]
    out += [f"TOKEN\t{r.cookies['cp_session']}", f"TOKEN\t{csrf}"]
    made = browser.post("/api/v1/tokens", json={"name": "dispatch-callbacks", "role": "analyst"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    out.append(f"TOKEN\t{made.json()['token']}")
    for path in ("/api/v1/auth/me", "/api/v1/cases", f"/api/v1/cases/{case_id}", "/api/v1/cameras", "/api/v1/tokens",
                 "/api/v1/users", "/api/v1/audit", "/api/v1/stats", "/api/v1/models", "/api/v1/openapi.json",
                 "/", "/cameras", "/login", "/healthz"):
        keep(browser.get(path))
    detail = browser.get(f"/api/v1/cases/{case_id}").json()
    for ev in detail.get("evidence", [])[:2]:
        if ev.get("url"):
            r = browser.get(ev["url"])
            out.append(f"GET {ev['url']} → {r.status_code}\n{r.headers}")  # binary body: headers only
    keep(browser.post(f"/api/v1/cases/{case_id}/notes", json={"text": "checked"}, headers={"X-CSRF-Token": csrf}))
    machine = httpx.Client(base_url=url, timeout=20, headers={"Authorization": f"Bearer {made.json()['token']}"})
    keep(machine.get("/api/v1/cases"))
    keep(machine.post(f"/api/v1/cases/{case_id}/notes", json={"text": "not allowed for analysts"}))
    keep(sim.callback(case_id, "handled", url=f"{url}/api/v1/dispatch/callback", note="done"))
    keep(sim.callback(case_id, "handled", url=f"{url}/api/v1/dispatch/callback", secret="a-guessed-key"))
    keep(browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}))
    return out
