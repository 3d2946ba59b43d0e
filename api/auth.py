"""Who is asking, and may they: authentication for every route, CSRF, and role gates.

Authentication is a middleware, so a route is protected unless its path is in `PUBLIC` (the
health check, the sign-in page and call, the static files, and the dispatch system's signed
status callback, which checks its own HMAC signature): a route added later is guarded
without anyone remembering to. Two ways in:

- a browser session: the HttpOnly, SameSite=Strict cookie `cp_session` (expiry from
  `ApiConfig.session_hours`). A state-changing request (POST/PUT/PATCH/DELETE) on a session
  must also carry the session's CSRF token in the `X-CSRF-Token` header; the page reads it from
  the `cp_csrf` cookie (double submit), and the server compares it with the hash stored with
  the session, so a token planted in a cookie by someone else does not pass.
- a machine: `Authorization: Bearer cpt_…` (API tokens from `citypatrol users token` or the
  admin API). Bearer requests need no CSRF token: browsers never add that header on their own.

Unauthenticated API calls get 401; unauthenticated page loads are sent to the sign-in page.
Routes then say who may use them with a role gate: `Depends(REVIEWERS)` etc.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from citypatrol.pipeline.store.users import Role, digest

SESSION_COOKIE = "cp_session"
CSRF_COOKIE = "cp_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The dispatch system's status callback authenticates by its HMAC signature (routes_dispatch.py), not by a session.
PUBLIC_EXACT = frozenset({"/healthz", "/login", "/api/v1/auth/login", "/favicon.ico", "/api/v1/dispatch/callback"})
PUBLIC_PREFIXES = ("/static/",)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    via: str  # "session" | "token"
    session_id: int | None = None
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        """How this principal appears in the audit log."""
        return f"{'user' if self.via == 'session' else 'token'}:{self.name}"


def is_public(path: str) -> bool:
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


class AuthMiddleware:
    """Puts the request's `Principal` in `request.state.principal`, or answers 401 / a redirect / 403 (CSRF)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = request.app.state.cp
        principal, csrf_hash = await run_in_threadpool(authenticate, state, request)
        if principal is None:
            await _unauthenticated(request)(scope, receive, send)
            return
        if principal.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(digest(sent), csrf_hash or ""):
                await JSONResponse({"detail": "CSRF token missing or wrong: send the X-CSRF-Token header"}, 403)(scope, receive, send)
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def authenticate(state, request: Request) -> tuple[Principal | None, str | None]:  # noqa: ANN001
    """The request's principal from its bearer token or session cookie (and the session's CSRF hash), or (None, None)."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            return None, None
        token = state.users.token(secret.strip())
        if token is None:
            return None, None
        return Principal(token.name, token.role, "token", expires_at=token.expires_at), None
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if cookie:
        session = state.users.session(cookie)
        if session is not None:
            return Principal(session.user.username, session.user.role, "session", session.id, session.expires_at), session.csrf_hash
    return None, None


def _unauthenticated(request: Request):
    if request.url.path.startswith("/api/") or request.method != "GET":
        return JSONResponse({"detail": "sign in first: a session cookie or an 'Authorization: Bearer' token"}, 401,
                            headers={"WWW-Authenticate": 'Bearer realm="citypatrol"'})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def principal(request: Request) -> Principal:
    p = getattr(request.state, "principal", None)
    if p is None:  # only reachable for a public route that asks for a principal: a programming error
        raise HTTPException(401, "sign in first")
    return p


def allow(*roles: Role) -> Callable[[Request], Principal]:
    """A dependency that returns the principal if its role is one of `roles`, else answers 403."""
    allowed = frozenset(roles)

    def gate(request: Request) -> Principal:
        p = principal(request)
        if p.role not in allowed:
            raise HTTPException(403, f"role {p.role.value} may not do this (needs: {', '.join(sorted(r.value for r in allowed))})")
        return p

    gate.roles = allowed  # type: ignore[attr-defined]  (read by the route × role tests and the OpenAPI extension)
    gate.__name__ = "allow_" + "_".join(sorted(r.value for r in allowed))
    return gate


ANYONE = allow(Role.reviewer, Role.analyst, Role.admin)
REVIEWERS = allow(Role.reviewer, Role.admin)
ADMINS = allow(Role.admin)
