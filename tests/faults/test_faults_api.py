"""Abuse of the review center over real HTTP: oversized and malformed requests, path traversal on
every file-serving route, session fixation. Every answer is a 4xx (never a 5xx), the server keeps
serving, nothing outside the evidence and static folders is ever sent.

(Route × role table, CSRF, session cookie attributes, expiry, rate limits: tests/api/test_api_auth.py;
evidence by id with hash and symlink checks: tests/api/test_api.py; schemathesis over the OpenAPI
document: tests/api/test_api_schema.py.)
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from sqlalchemy import text

from tests.fixtures_api import PASSWORD, evidence_set, start_api  # noqa: F401

pytestmark = pytest.mark.slow

NOTE = "/api/v1/cases/c-bin/notes"
PASSWD = b"root:x:0:0"  # what /etc/passwd starts with: must never come back


@pytest.fixture(scope="module")
def api(evidence_set, tmp_path_factory):  # noqa: F811
    db = f"sqlite:///{tmp_path_factory.mktemp('abuse') / 'review.db'}"
    api, server = start_api(db, evidence_set)
    try:
        yield api
    finally:
        server.stop()
        api.store.close()


def _alive(api) -> None:
    assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200


def _client_error(r: httpx.Response, what: str) -> None:
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"


def test_oversized_bodies_are_refused_not_swallowed(api):
    admin = api.client("admin")
    huge = b'{"text": "' + b"x" * (20 * 1024 * 1024) + b'"}'  # 20 MiB of JSON
    r = admin.post(NOTE, content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.status_code  # refused by size, before it is read into memory
    r = httpx.post(f"{api.url}/api/v1/auth/login", content=b'{"username": "admin", "password": "' + b"p" * (8 * 1024 * 1024) + b'"}',
                   headers={"Content-Type": "application/json"}, timeout=60)
    _client_error(r, "8 MiB password")
    many = {"zones": [{"id": f"z{i}", "kind": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]]} for i in range(5000)]}
    _client_error(admin.put("/api/v1/cameras/london/zones", json=many), "5000 zones")
    _alive(api)


@pytest.mark.parametrize("body, ctype", [
    (b"text=checked", "application/x-www-form-urlencoded"),
    (b"checked on site", "text/plain"),
    (b"<note><text>x</text></note>", "application/xml"),
    (b'{"text": "checked"}', "multipart/form-data; boundary=xyz"),
    (b'{"text": "checked"', "application/json"),  # truncated
    (b'{"text": "\xff\xfe\xfa"}', "application/json"),  # not UTF-8
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),  # nested past any parser's stack
    (b'{"text": "a\\u0000b"}', "application/json"),  # a NUL inside the text
    (b'{"text": 1e999999}', "application/json"),
    (b'{"text": "checked", "text": "' + b"y" * 3000 + b'"}', "application/json"),  # duplicate key, too long
    (b"", "application/json"),
    (b"null", "application/json"),
    (b'"just a string"', "application/json"),
], ids=["form", "plain", "xml", "multipart", "truncated", "not-utf8", "deep", "nul", "huge-number", "dup-key", "empty",
        "null", "string"])
def test_malformed_bodies_get_a_client_error(api, body, ctype):
    r = api.client("admin").post(NOTE, content=body, headers={"Content-Type": ctype})
    _client_error(r, ctype)


@pytest.mark.parametrize("query", [
    "limit=-1", "limit=99999999999999999999999", "offset=-5", "limit=abc", "since=not-a-date", "since=9999-99-99",
    "status=" + "x" * 5000, "camera_id=%00", "category=%ff%fe", "limit=1e3", "since=2025-01-01T00:00:00%2B99:00",
])
def test_malformed_queries_get_a_client_error_or_an_answer(api, query):
    r = api.client("analyst").get(f"/api/v1/cases?{query}")
    assert r.status_code < 500, f"{query}: {r.status_code} {r.text[:300]}"


def _raw(api, request: bytes) -> bytes:
    """Send bytes as they are (no client-side checks or normalisation); the answer, or b"" if the server hung up."""
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=20) as s:
        try:
            s.sendall(request)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionError:
            return b""
    return answer


def test_oversized_headers_and_urls_are_refused(api):
    auth = f"Authorization: Bearer {api.tokens['analyst']}\r\n".encode()
    for what, request in (
        ("200 kB header", b"GET /api/v1/cases HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Junk: " + b"j" * 200_000 + b"\r\n\r\n"),
        ("100 kB path", b"GET /api/v1/cases/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"),
        ("5000 header lines", b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"X: y\r\n" * 5000 + b"\r\n"),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4),
    ):
        answer = _raw(api, request)
        assert not answer.startswith(b"HTTP/1.1 5"), (what, answer[:200])  # answered, refused or hung up: never a 5xx
    _alive(api)


TRAVERSAL = [
    "/api/v1/evidence/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/v1/evidence/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/v1/evidence/%252e%252e%252fetc%252fpasswd",
    "/api/v1/evidence//etc/passwd",
    "/api/v1/evidence/1%00.jpg",
    "/api/v1/cameras/..%2F..%2F..%2Fetc%2Fpasswd/snapshot",
    "/api/v1/cameras/%2e%2e/snapshot",
    "/static/../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/%252e%252e/%252e%252e/etc/passwd",
    "/static//etc/passwd",
    "/static/..\\..\\..\\etc\\passwd",
    "/static/review.js%00.png",
    "/..%2F..%2F..%2Fetc%2Fpasswd",
    "/%2e%2e/%2e%2e/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_path_traversal_never_leaves_the_served_folders(api, path):
    # raw paths: httpx must not normalise the dots away before they reach the server
    answer = _raw(api, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api.tokens['admin']}\r\n"
                       "Connection: close\r\n\r\n".encode())
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 401, 403, 404, 405, 422), (path, answer[:300])
    assert PASSWD not in answer


def test_tampered_evidence_rows_never_serve_files_outside_the_evidence_folder(api):
    """Rows written behind the store's back (a path with '..', an absolute path) are refused at serving time."""
    admin = api.client("admin")
    with api.store.engine.begin() as conn:
        for path in ("../../../../../../etc/passwd", "/etc/passwd", "c-bin/../../../../../../etc/passwd"):
            conn.execute(text("INSERT INTO evidence (case_id, kind, path, sha256, bytes, created_at) "
                              "VALUES ('c-bin', 'frame', :p, :h, 1, CURRENT_TIMESTAMP)"), {"p": path, "h": "0" * 64})
        ids = [row[0] for row in conn.execute(text("SELECT id FROM evidence WHERE path LIKE '%passwd'"))]
    assert len(ids) == 3
    for evidence_id in ids:
        r = admin.get(f"/api/v1/evidence/{evidence_id}")
        assert r.status_code == 404 and PASSWD not in r.content, (evidence_id, r.status_code)
    detail = admin.get("/api/v1/cases/c-bin")
    assert detail.status_code == 200 and PASSWD not in detail.content


def test_session_fixation_a_planted_cookie_is_never_signed_in(api):
    planted = "attacker-chosen-session-value-0123456789abcdef"
    c = httpx.Client(base_url=api.url, cookies={"cp_session": planted, "cp_csrf": "attacker-csrf"})
    assert c.get("/api/v1/auth/me").status_code == 401
    r = c.post("/api/v1/auth/login", json={"username": "reviewer", "password": PASSWORD["reviewer"]})
    assert r.status_code == 200
    issued = r.cookies.get("cp_session")
    assert issued and issued != planted and r.json()["csrf_token"] != "attacker-csrf"  # a fresh session, fresh CSRF token
    attacker = httpx.Client(base_url=api.url, cookies={"cp_session": planted})
    assert attacker.get("/api/v1/auth/me").status_code == 401  # the planted value did not become a session
    # signing in again from a signed-in browser issues yet another session id
    again = c.post("/api/v1/auth/login", json={"username": "reviewer", "password": PASSWORD["reviewer"]})
    assert again.status_code == 200 and again.cookies.get("cp_session") not in (issued, planted)


def test_a_session_cookie_does_not_work_across_origins_without_the_csrf_header(api):
    c, csrf = api.login("reviewer")
    evil = {"Origin": "https://evil.example", "Referer": "https://evil.example/page"}
    assert c.post(NOTE, json={"text": "forged"}, headers=evil).status_code == 403
    assert c.post(NOTE, json={"text": "forged"}, headers={**evil, "X-CSRF-Token": ""}).status_code == 403
    r = c.post(NOTE, content=json.dumps({"text": "forged"}), headers={"Content-Type": "text/plain", **evil})
    assert r.status_code == 403  # a "simple" cross-site form post
    assert c.post(NOTE, json={"text": "checked on site"}, headers={"X-CSRF-Token": csrf}).status_code == 200
