"""A dispatch-system simulator on loopback, for tests and demos (`citypatrol dispatch simulate`).

It stands in for the city's 数字城管 platform — the far side of a boundary citypatrol does not own —
and behaves like a careful receiver:

- checks every message's HMAC signature and timestamp (401 when wrong);
- keeps what it accepted by idempotency key, answering 409 to a key it already has, so a test
  can check exactly-once delivery (`accepted`, `duplicates`, `attempts`);
- can be down (`down()` closes the port: connection refused; `up()` opens it again), slow
  (`delay_s`: the message is recorded, then the answer waits), or fail (`fail_next(n, 500)`);
- calls back, signed, to citypatrol's callback endpoint (`callback(...)`), by hand or on its own
  after accepting a case (`auto=[("dispatched", 1.0), ("handled", 5.0)]`: status, seconds after).

Plain `http.server` in a thread: no framework on the receiving side, nothing to configure.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from citypatrol.pipeline.dispatch.signing import IDEMPOTENCY_HEADER, KIND_HEADER, SignatureError, signed_headers, verify

log = logging.getLogger("citypatrol.dispatch_sim")


@dataclass(frozen=True, slots=True)
class Received:
    idempotency_key: str
    kind: str
    body: dict
    at: float  # time.time() when it arrived


@dataclass
class SimState:
    accepted: dict[str, Received] = field(default_factory=dict)  # idempotency key -> first accepted message
    attempts: list[tuple[str, int]] = field(default_factory=list)  # (idempotency key, HTTP status answered)
    duplicates: int = 0
    bad_signatures: int = 0
    callbacks: list[tuple[str, str, int]] = field(default_factory=list)  # (case id, status, HTTP answer)


class DispatchSimulator:
    """Start with `start()` (or as a context manager); `url` is where citypatrol should POST."""

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0, path: str = "/cases",
                 callback_url: str = "", callback_secret: str = "", auto: Sequence[tuple[str, float]] = (),
                 window_s: float = 300.0) -> None:
        self.secret = secret
        self.host, self.port, self.path = host, port, path
        self.callback_url = callback_url
        self.callback_secret = callback_secret or secret
        self.auto = tuple(auto)
        self.window_s = window_s
        self.delay_s = 0.0
        self.state = SimState()
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def start(self) -> DispatchSimulator:
        self.up()
        return self

    def up(self) -> None:
        """Open the port (the same one again after `down()`)."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer((self.host, self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="dispatch-sim", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Close the port: deliveries get 'connection refused' until `up()`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        self.down()

    def __enter__(self) -> DispatchSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` messages with `status` without accepting them."""
        with self._lock:
            self._fail.extend([status] * n)

    def accepted_keys(self) -> list[str]:
        with self._lock:
            return list(self.state.accepted)

    def attempts_for(self, key: str) -> int:
        with self._lock:
            return sum(1 for k, _ in self.state.attempts if k == key)

    # -- calling back ---------------------------------------------------------------------------

    def callback(self, case_id: str, status: str, *, note: str = "", callback_id: str | None = None, url: str = "",
                 secret: str | None = None, timestamp: int | None = None, body: bytes | None = None) -> httpx.Response:
        """POST a signed status callback to citypatrol (override `secret`/`timestamp`/`body` to test refusals)."""
        payload = body if body is not None else json.dumps({
            "callback_id": callback_id or uuid.uuid4().hex, "case_id": case_id, "status": status,
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "note": note,
        }, ensure_ascii=False).encode("utf-8")
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": "application/json", **signed_headers(self.callback_secret if secret is None else secret, ts, payload)}
        r = httpx.post(url or self.callback_url, content=payload, headers=headers, timeout=10)
        with self._lock:
            self.state.callbacks.append((case_id, status, r.status_code))
        return r

    def _schedule_callbacks(self, case_id: str) -> None:
        for status, after in self.auto:
            t = threading.Timer(after, self._safe_callback, args=(case_id, status))
            t.daemon = True
            self._timers.append(t)
            t.start()

    def _safe_callback(self, case_id: str, status: str) -> None:
        try:
            r = self.callback(case_id, status, note="simulated")
            log.info("callback %s %s → HTTP %d", case_id, status, r.status_code)
        except httpx.HTTPError as exc:
            log.warning("callback %s %s failed: %s", case_id, status, exc)

    # -- receiving ------------------------------------------------------------------------------

    def _receive(self, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        key = headers.get(IDEMPOTENCY_HEADER.lower(), "")
        try:
            verify(self.secret, headers, body, now=time.time(), window_s=self.window_s)
        except SignatureError as exc:
            with self._lock:
                self.state.bad_signatures += 1
                self.state.attempts.append((key, 401))
            return 401, {"error": str(exc)}
        with self._lock:
            if self._fail:
                status = self._fail.pop(0)
                self.state.attempts.append((key, status))
                return status, {"error": "simulated failure"}
            if not key:
                self.state.attempts.append((key, 400))
                return 400, {"error": "Idempotency-Key missing"}
            if key in self.state.accepted:
                self.state.duplicates += 1
                self.state.attempts.append((key, 409))
                return 409, {"error": "duplicate", "idempotency_key": key}
            try:
                message = json.loads(body)
            except ValueError:
                self.state.attempts.append((key, 400))
                return 400, {"error": "body is not JSON"}
            kind = headers.get(KIND_HEADER.lower(), "")
            self.state.accepted[key] = Received(key, kind, message, time.time())
            self.state.attempts.append((key, 200))
        if self.delay_s:
            time.sleep(self.delay_s)  # recorded, then slow to answer: the sender may time out or die meanwhile
        if kind == "case.submit" and self.auto and self.callback_url:
            self._schedule_callbacks(message.get("case_id") or headers.get("x-citypatrol-case-id", ""))
        return 200, {"received": key, "ticket": f"SIM-{abs(hash(key)) % 10**8:08d}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, reply = (404, {"error": "not found"}) if self.path != sim.path else sim._receive(headers, body)
                data = json.dumps(reply, ensure_ascii=False).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up (timeout, or was killed)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("sim: " + fmt, *args)

        return Handler
