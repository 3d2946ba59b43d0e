"""Review center auth over real HTTP, on SQLite and PostgreSQL: every route needs a sign-in (except
health and the sign-in itself), every route has the roles it should, sessions are HttpOnly and
SameSite=Strict with CSRF on changes, sessions expire, and sign-in is rate limited."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from citypatrol.api.app import route_table
from citypatrol.pipeline.store.review_schema import SessionRow
from citypatrol.pipeline.store.schema import utcnow
from citypatrol.pipeline.store.users import Role, UserError, UserStore
from tests.fixtures_api import PASSWORD, api_server, db_url, evidence_set, pg_admin, start_api  # noqa: F401

R, A, M = "reviewer", "analyst", "admin"
ANY = {R, A, M}

# Who may do what. Every route of the app must be listed: a new route fails until it is added here.
POLICY: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/cases"): ANY,
    ("GET", "/api/v1/cases/{case_id}"): ANY,
    ("GET", "/api/v1/evidence/{evidence_id}"): ANY,
    ("GET", "/api/v1/events"): ANY,
    ("POST", "/api/v1/cases/{case_id}/confirm"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/reject"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/reclassify"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/approve-sign"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/merge"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/notes"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/box"): {R, M},
    ("POST", "/api/v1/cases/{case_id}/retry"): {M},
    ("GET", "/api/v1/dead-letters"): {M},
    ("GET", "/api/v1/cameras"): ANY,
    ("GET", "/api/v1/cameras/{camera_id}"): ANY,
    ("GET", "/api/v1/cameras/{camera_id}/snapshot"): ANY,
    ("GET", "/api/v1/cameras/{camera_id}/frame"): ANY,
    ("GET", "/api/v1/cameras/{camera_id}/zones"): ANY,
    ("GET", "/api/v1/cameras/{camera_id}/zones/versions"): ANY,
    ("PUT", "/api/v1/cameras/{camera_id}/zones"): {M},
    ("POST", "/api/v1/cameras/{camera_id}/zones/items"): {M},
    ("PUT", "/api/v1/cameras/{camera_id}/zones/items/{zone_id}"): {M},
    ("DELETE", "/api/v1/cameras/{camera_id}/zones/items/{zone_id}"): {M},
    ("GET", "/api/v1/stats"): ANY,
    ("GET", "/api/v1/models"): ANY,
    ("GET", "/api/v1/auth/me"): ANY,
    ("POST", "/api/v1/auth/logout"): ANY,
    ("GET", "/api/v1/users"): {M},
    ("POST", "/api/v1/users"): {M},
    ("PATCH", "/api/v1/users/{username}"): {M},
    ("GET", "/api/v1/tokens"): {M},
    ("POST", "/api/v1/tokens"): {M},
    ("DELETE", "/api/v1/tokens/{token_id}"): {M},
    ("GET", "/api/v1/audit"): {M},
    ("GET", "/api/v1/openapi.json"): ANY,
    ("GET", "/"): ANY,
    ("GET", "/cameras"): ANY,
    ("GET", "/zones"): ANY,
    ("GET", "/stats"): ANY,
}
PUBLIC = {("GET", "/healthz"), ("GET", "/login"), ("POST", "/api/v1/auth/login"),
          ("POST", "/api/v1/dispatch/callback")}  # signed by the dispatch system (HMAC), refused unsigned
# Path values that exist nowhere: an allowed role gets 404/422, never a change to the seeded data.
DUMMY = {"case_id": "no-such-case", "camera_id": "no-such-camera", "zone_id": "no-such-zone", "evidence_id": "999999",
         "token_id": "999999", "username": "nobody"}


def app_routes() -> list[tuple[str, str, frozenset | None]]:
    """(method, path, roles) of every route of a freshly made app (routers flattened)."""
    from citypatrol.api.app import create_app
    from tests.fixtures_api import api_config

    class _Store:  # routes are listed without touching a database
        engine = None

    return route_table(create_app(api_config(), _Store(), "."))  # type: ignore[arg-type]


def request(client: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
    url = re.sub(r"\{(\w+)\}", lambda m: DUMMY[m.group(1)], path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    with client.stream(method, url, json=body, follow_redirects=False, **kw) as r:  # stream: /events never ends by itself
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            r.read()
        return r


def test_every_route_is_in_the_policy_table_and_gated_as_listed():
    seen = set()
    for method, path, roles in app_routes():
        key = (method, path)
        seen.add(key)
        if key in PUBLIC:
            assert roles is None, f"{method} {path} is public but has a role gate"
            continue
        assert key in POLICY, f"{method} {path} is new: add it to POLICY in tests/api/test_api_auth.py"
        assert roles is not None, f"{method} {path} has no role gate (Depends(ANYONE/REVIEWERS/ADMINS))"
        assert {r.value for r in roles} == POLICY[key], f"{method} {path}: gate allows {sorted(r.value for r in roles)}"
    assert not set(POLICY) - seen, f"routes in POLICY that the app lacks: {set(POLICY) - seen}"


def test_without_sign_in_every_route_is_refused_but_health_and_sign_in(api_server):
    anon = api_server.client()
    for method, path, _ in app_routes():
        r = request(anon, method, path)
        if (method, path) in PUBLIC:  # reaches its handler (the callback then refuses an unsigned body itself)
            assert r.status_code not in (403, 303) and "sign in first" not in r.text, f"{method} {path} should be public: {r.status_code}"
        elif path.startswith("/api/") or method != "GET":
            assert r.status_code == 401, f"{method} {path} without sign-in: {r.status_code}"
            assert r.headers["www-authenticate"].startswith("Bearer")
        else:  # a page: the browser is sent to sign in, and comes back afterwards
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), f"{method} {path}: {r.status_code}"
    assert anon.get("/healthz").json() == {"status": "ok", "database": "ok"}
    bad = api_server.client()
    for header in ("Bearer cpt_not-a-token", "Basic YWRtaW46YWRtaW4=", "Bearer x", "cpt_x"):
        assert bad.get("/api/v1/cases", headers={"Authorization": header}).status_code == 401
    assert bad.get("/api/v1/cases", cookies={"cp_session": "forged"}).status_code == 401


def test_each_role_gets_exactly_the_routes_of_the_policy(api_server):
    clients = {role: api_server.client(role) for role in (R, A, M)}
    for method, path, _ in app_routes():
        if (method, path) in PUBLIC:
            continue
        for role, client in clients.items():
            r = request(client, method, path)
            if role in POLICY[(method, path)]:
                assert r.status_code not in (401, 403), f"{role} {method} {path}: {r.status_code}"
            else:
                assert r.status_code == 403, f"{role} {method} {path} should be forbidden: {r.status_code}"


def test_session_cookie_attributes_csrf_and_sign_out(api_server):
    c = httpx.Client(base_url=api_server.url)
    r = c.post("/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]})
    assert r.status_code == 200 and r.json()["role"] == R
    cookies = {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}
    assert "httponly" in cookies["cp_session"] and "samesite=strict" in cookies["cp_session"]
    assert "max-age=43200" in cookies["cp_session"]  # ApiConfig.session_hours = 12
    assert "httponly" not in cookies["cp_csrf"] and "samesite=strict" in cookies["cp_csrf"]
    csrf = r.json()["csrf_token"]
    assert c.get("/api/v1/auth/me").json()["username"] == R
    note = {"text": "checked on site"}
    assert c.post("/api/v1/cases/c-bin/notes", json=note).status_code == 403  # no CSRF header
    assert c.post("/api/v1/cases/c-bin/notes", json=note, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    other, other_csrf = api_server.login(R)  # another session's token does not pass for this one
    assert c.post("/api/v1/cases/c-bin/notes", json=note, headers={"X-CSRF-Token": other_csrf}).status_code == 403
    assert c.post("/api/v1/cases/c-bin/notes", json=note, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    stale = httpx.Client(base_url=api_server.url, cookies={"cp_session": r.cookies["cp_session"]})
    assert stale.get("/api/v1/auth/me").status_code == 401
    assert other.get("/api/v1/auth/me").status_code == 200


def test_sessions_expire(api_server):
    c, _ = api_server.login(A)
    assert c.get("/api/v1/cases").status_code == 200
    with api_server.store.engine.begin() as conn:
        conn.execute(update(SessionRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert c.get("/api/v1/cases").status_code == 401
    assert c.get("/", follow_redirects=False).status_code == 303


def test_wrong_passwords_are_rate_limited_per_user_and_address(api_server):
    c = api_server.client()
    wrong = {"username": R, "password": "not the password"}
    for _ in range(5):
        assert c.post("/api/v1/auth/login", json=wrong).status_code == 401
    r = c.post("/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # even the right password waits
    assert c.post("/api/v1/auth/login", json={"username": A, "password": PASSWORD[A]}).status_code == 200  # other user
    elsewhere = httpx.Client(base_url=api_server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    assert elsewhere.post("/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]}).status_code == 200
    unknown = c.post("/api/v1/auth/login", json={"username": "nobody", "password": "whatever it is"})
    assert unknown.status_code == 401 and unknown.json()["detail"] == "wrong user name or password"
    audit = api_server.client(M).get("/api/v1/audit", params={"action": "login.failed"}).json()
    assert len(audit) >= 6 and all("not the password" not in str(a) for a in audit)


@pytest.fixture
def counted_api(tmp_path):
    """A review center on SQLite whose password checks are counted (and each held 0.2 s, so a burst overlaps)."""
    api, server = start_api(f"sqlite:///{tmp_path / 'cases.db'}", (tmp_path, {}), seed=False)
    users = server.server.config.app.state.cp.users
    verify, lock = users.verify, threading.Lock()
    seen = {"calls": 0, "running": 0, "peak": 0}

    def counted(username: str, password: str):  # noqa: ANN202
        with lock:
            seen["calls"] += 1
            seen["running"] += 1
            seen["peak"] = max(seen["peak"], seen["running"])
        try:
            time.sleep(0.2)
            return verify(username, password)
        finally:
            with lock:
                seen["running"] -= 1

    users.verify = counted
    try:
        yield api, seen
    finally:
        server.stop()
        api.store.close()


def burst(url: str, bodies: list[dict], local_address: str = "127.0.0.1") -> list[httpx.Response]:
    """POST every sign-in at the same moment, each on its own connection."""
    start = threading.Barrier(len(bodies))

    def one(body: dict) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60, transport=httpx.HTTPTransport(local_address=local_address)) as c:
            start.wait()
            return c.post("/api/v1/auth/login", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_a_burst_of_guesses_is_counted_before_any_password_is_checked(counted_api):
    api, seen = counted_api
    answers = burst(api.url, [{"username": R, "password": f"guess number {i}"} for i in range(50)])
    codes = Counter(r.status_code for r in answers)
    assert set(codes) == {401, 429} and codes[401] <= 5, codes  # at most login_max_failures guesses are checked
    assert seen["calls"] == codes[401] and seen["peak"] <= 2, seen  # and at most two at once for one user
    one_by_one = [httpx.post(f"{api.url}/api/v1/auth/login", json={"username": R, "password": "guess again"}).status_code
                  for _ in range(6)]
    assert codes[401] + one_by_one.count(401) == 5 and one_by_one[-1] == 429, (codes, one_by_one)
    right = httpx.post(f"{api.url}/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]})
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    assert httpx.post(f"{api.url}/api/v1/auth/login", json={"username": A, "password": PASSWORD[A]}).status_code == 200
    elsewhere = httpx.Client(base_url=api.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    assert elsewhere.post("/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]}).status_code == 200


def test_password_checks_running_at_once_are_capped_per_address(counted_api):
    api, seen = counted_api
    answers = burst(api.url, [{"username": f"user{i:02d}", "password": "a guessed password"} for i in range(30)], "127.0.0.3")
    codes = Counter(r.status_code for r in answers)
    assert seen["peak"] <= 4 and seen["calls"] == codes[401], seen  # 4 argon2 hashes (64 MiB each) at most
    assert codes[429] > 0 and all("at once" in r.json()["detail"] for r in answers if r.status_code == 429), codes
    back = httpx.Client(base_url=api.url, transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    assert back.post("/api/v1/auth/login", json={"username": M, "password": PASSWORD[M]}).status_code == 200  # the burst is over


def test_tokens_can_be_revoked_and_disabled_users_lose_their_sessions(api_server):
    admin = api_server.client(M)
    made = admin.post("/api/v1/tokens", json={"name": "dispatch-callbacks", "role": "analyst"})
    assert made.status_code == 201
    token = made.json()["token"]
    machine = httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {token}"})
    assert machine.get("/api/v1/auth/me").json() == {"username": "dispatch-callbacks", "role": "analyst", "via": "token",
                                                     "expires_at": None, "csrf_token": None}
    assert all("token" not in t for t in admin.get("/api/v1/tokens").json())  # secrets are never listed
    assert admin.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 200
    assert machine.get("/api/v1/auth/me").status_code == 401
    c, _ = api_server.login(R)
    assert admin.patch(f"/api/v1/users/{R}", json={"active": False}).json()["active"] is False
    assert c.get("/api/v1/cases").status_code == 401
    assert httpx.post(f"{api_server.url}/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]}).status_code == 401
    added = admin.post("/api/v1/users", json={"username": "wang.li", "password": "short", "role": "reviewer"})
    assert added.status_code == 422
    added = admin.post("/api/v1/users", json={"username": "wang.li", "password": "long enough pass", "role": "reviewer"})
    assert added.status_code == 201 and added.json()["role"] == "reviewer"
    actions = [a["action"] for a in admin.get("/api/v1/audit").json()]
    assert {"token.create", "token.revoke", "user.disable", "user.add"} <= set(actions)


def test_user_names_are_one_account_whatever_their_case(api_server):
    admin = api_server.client(M)
    added = admin.post("/api/v1/users", json={"username": "Wang.Li", "password": "long enough pass", "role": "reviewer"})
    assert added.status_code == 201 and added.json()["username"] == "wang.li"
    twin = admin.post("/api/v1/users", json={"username": "WANG.li", "password": "another long pass", "role": "admin"})
    assert twin.status_code == 409 and "exists" in twin.json()["detail"]
    assert [u["username"] for u in admin.get("/api/v1/users").json()].count("wang.li") == 1
    for typed in ("WANG.LI", "wang.li", "Wang.Li"):
        r = httpx.post(f"{api_server.url}/api/v1/auth/login", json={"username": typed, "password": "long enough pass"})
        assert r.status_code == 200 and (r.json()["username"], r.json()["role"]) == ("wang.li", "reviewer"), typed
    assert httpx.post(f"{api_server.url}/api/v1/auth/login", json={"username": "WANG.LI", "password": "another long pass"}).status_code == 401
    r = httpx.post(f"{api_server.url}/api/v1/auth/login", json={"username": "Reviewer", "password": PASSWORD[R]})
    assert r.status_code == 200 and r.json()["username"] == R
    assert admin.patch("/api/v1/users/Wang.LI", json={"active": False}).json() == {**added.json(), "active": False}
    assert httpx.post(f"{api_server.url}/api/v1/auth/login", json={"username": "wang.li", "password": "long enough pass"}).status_code == 401


class EventStream:
    """GET /api/v1/events read in a thread: `ended` is set when the server ends the stream."""

    def __init__(self, client: httpx.Client) -> None:
        self.client, self.status, self.clean = client, 0, False
        self.opened, self.ended = threading.Event(), threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(10) and self.status == 200, self.status

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/v1/events") as r:
                self.status = r.status_code
                self.opened.set()
                for _ in r.iter_lines():
                    pass
                self.clean = True
        except httpx.HTTPError:  # cut off when the server stops at the end of the test
            self.clean = False
        finally:
            self.opened.set()
            self.ended.set()


def test_a_live_stream_ends_once_its_sign_in_is_gone(db_url, tmp_path):
    from citypatrol.pipeline.config.models import ApiConfig
    from tests.fixtures_api import api_config

    config = api_config().model_copy(update={"api": ApiConfig(events_recheck_s=0.3, live_poll_s=0.1)})
    api, server = start_api(db_url, (tmp_path, {}), seed=False, config=config)
    try:
        admin = api.client(M)
        signed_out, csrf = api.login(R)
        disabled, _ = api.login(A)
        token = admin.post("/api/v1/tokens", json={"name": "wall display", "role": "analyst"}).json()
        revoked = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token['token']}"}, timeout=20)
        streams = {name: EventStream(c) for name, c in
                   (("signed out", signed_out), ("disabled", disabled), ("revoked", revoked), ("kept", api.client(M)))}
        time.sleep(1.0)  # several re-checks: a live sign-in keeps its stream
        assert not any(s.ended.is_set() for s in streams.values())
        assert signed_out.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert admin.patch(f"/api/v1/users/{A}", json={"active": False}).status_code == 200
        assert admin.delete(f"/api/v1/tokens/{token['id']}").status_code == 200
        for name in ("signed out", "disabled", "revoked"):
            assert streams[name].ended.wait(5) and streams[name].clean, f"the stream of the {name} sign-in goes on"
        assert not streams["kept"].ended.is_set()
        assert revoked.get("/api/v1/events").status_code == 401  # and it cannot come back
    finally:
        server.stop()
        api.store.close()


def test_openapi_is_published_behind_sign_in_with_roles(api_server):
    assert api_server.client().get("/api/v1/openapi.json").status_code == 401
    spec = api_server.client(A).get("/api/v1/openapi.json").json()
    assert spec["paths"]["/api/v1/cases/{case_id}/confirm"]["post"]["x-roles"] == ["admin", "reviewer"]
    assert spec["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    assert set(spec["components"]["securitySchemes"]) == {"session", "token"}


def test_users_add_takes_the_password_from_env_or_stdin_never_argv(tmp_path):
    db = f"sqlite:///{tmp_path / 'users.db'}"
    cli = [sys.executable, "-m", "citypatrol.pipeline.cli.main", "users", "add"]
    r = subprocess.run([*cli, "zhang", "--role", "reviewer", "--db", db, "--password-stdin"], input="a good long password\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "li", "--role", "admin", "--db", db, "--password-env", "CP_PW"], capture_output=True, text=True,
                       timeout=120, env={**__import__("os").environ, "CP_PW": "another long password"})
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "zhao", "--role", "reviewer", "--db", db, "--password-stdin"], input="short\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "at least 10" in r.stderr
    from citypatrol.api.commands import users_add

    assert "password" not in inspect.signature(users_add).parameters  # no way to pass it on the command line
    from citypatrol.pipeline.store.case_store import open_store

    with open_store(db) as store:
        users = UserStore(store.engine)
        assert [(u.username, u.role) for u in users.users()] == [("li", Role.admin), ("zhang", Role.reviewer)]
        assert users.verify("zhang", "a good long password") is not None
        assert users.verify("zhang", "a good long passwor") is None
        with pytest.raises(UserError, match="exists"):
            users.add_user("zhang", "a good long password", "reviewer", actor="test")
        with pytest.raises(UserError, match="role must be one of"):
            users.add_user("wu", "a good long password", "boss", actor="test")


def test_demo_login_is_a_reviewer_with_a_fresh_password_each_time(tmp_path):
    from citypatrol.api.commands import demo_login
    from citypatrol.pipeline.store.case_store import open_store

    db = f"sqlite:///{tmp_path / 'demo.db'}"
    first, second = demo_login(db), demo_login(db)
    assert first != second and len(second) >= 12
    with open_store(db) as store:
        users = UserStore(store.engine)
        assert users.verify("demo", first) is None
        assert users.verify("demo", second).role is Role.reviewer


def _serve(tmp_path, db: str, trusted: list[str]) -> subprocess.Popen:
    """`citypatrol serve` in its own process, as deployed, on a free loopback port; returns once it answers."""
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / f"serve-{port}.yaml"
    config.write_text(f"api:\n  trusted_proxies: {json.dumps(trusted)}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "citypatrol.pipeline.cli.main", "serve", "--config", str(config), "--db", db,
                             "--evidence", str(tmp_path), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{proc.url}/healthz", timeout=1).status_code == 200:  # type: ignore[attr-defined]
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"citypatrol serve did not start: {proc.communicate()[1].decode()[-2000:]}")


@pytest.mark.parametrize(("trusted", "seen_as"), [([], "127.0.0.1"), (["127.0.0.1"], "203.0.113.9"), (["10.0.0.0/8"], "127.0.0.1")])
def test_serve_believes_forwarded_for_only_from_trusted_proxies(tmp_path, trusted, seen_as):
    from citypatrol.pipeline.store.case_store import open_store
    from citypatrol.pipeline.store.review_schema import AuditRow

    db = f"sqlite:///{tmp_path / 'serve.db'}"
    with open_store(db) as store:
        UserStore(store.engine).add_user(R, PASSWORD[R], Role.reviewer, actor="test")
    proc = _serve(tmp_path, db, trusted)
    try:
        forged = {"X-Forwarded-For": "203.0.113.9"}
        r = httpx.post(f"{proc.url}/api/v1/auth/login", json={"username": R, "password": "not the password"}, headers=forged)
        assert r.status_code == 401
        ok = httpx.post(f"{proc.url}/api/v1/auth/login", json={"username": R, "password": PASSWORD[R]}, headers=forged)
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)
    with open_store(db) as store, store.engine.connect() as conn:
        rows = conn.execute(select(AuditRow.action, AuditRow.detail).where(AuditRow.action.in_(["login", "login.failed"]))).all()
    assert sorted((action, detail["ip"]) for action, detail in rows) == [("login", seen_as), ("login.failed", seen_as)]
