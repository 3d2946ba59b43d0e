"""The review center's FastAPI app: `create_app(config, store, evidence_dir)`.

One router per resource under `/api/v1` (cases, decisions, live events, cameras, zones,
statistics, models, dead letters, auth, admin), the browser pages and their static files, and
`/healthz`. The OpenAPI document is at `/api/v1/openapi.json` (behind sign-in like everything
but the health check and the sign-in page; no Swagger page, which would load files from a CDN).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypatrol.api import (
    routes_auth,
    routes_cameras,
    routes_cases,
    routes_deadletters,
    routes_dispatch,
    routes_decisions,
    routes_register,
    routes_events,
    routes_models,
    routes_stats,
    routes_ui,
    routes_users,
    routes_zones,
)
from citypatrol.api.auth import ANYONE, AuthMiddleware, Principal
from citypatrol.api.ratelimit import LoginLimiter
from citypatrol.api.state import AppState, HealthProvider
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.review import ReviewStore
from citypatrol.pipeline.store.users import UserStore

API = "/api/v1"
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 2 * 1024 * 1024  # the largest real request (a camera's 64 zones) is a few hundred kB
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self'; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def create_app(config: Config, store: Store, evidence_dir: Path, *, health: HealthProvider | None = None,
               limiter: LoginLimiter | None = None, stream_max_s: float = 600.0) -> FastAPI:
    """The app over an open store; evidence files are served from under `evidence_dir` only."""
    # bodies over MAX_BODY_BYTES are refused with 413 before they are read into memory (FastAPI ≥ 0.165)
    limit = {"max_body_size": MAX_BODY_BYTES} if "max_body_size" in inspect.signature(FastAPI).parameters else {}
    app = FastAPI(title="citypatrol review center", version="1", openapi_url=None, docs_url=None, redoc_url=None,
                  description="Review, statistics and administration of the cases citypatrol files. "
                              "Sign in with a session (cookie + X-CSRF-Token on changes) or an API token (Bearer).",
                  **limit)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with where and why, never the input itself: it may be a password, or a value JSON cannot
        carry back (1e999 parses as infinity, and echoing it made a 500)."""
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    app.state.cp = AppState(
        config=config, store=store, review=ReviewStore(store.engine, config.codes), users=UserStore(store.engine),
        evidence_dir=Path(evidence_dir), health=health, live_poll_s=config.api.live_poll_s, stream_max_s=stream_max_s,
        events_recheck_s=config.api.events_recheck_s,
        limiter=limiter or LoginLimiter(config.api.login_max_failures, config.api.login_window_s),
    )
    app.include_router(routes_dispatch.router, prefix=API)  # the dispatch system's signed status callbacks
    for module in (routes_auth, routes_events, routes_cases, routes_decisions, routes_register, routes_cameras, routes_zones, routes_stats,
                   routes_models, routes_deadletters, routes_users):
        app.include_router(module.router, prefix=API)

    @app.get("/healthz", tags=["health"], summary="Liveness and database reachability (no sign-in)")
    def healthz() -> JSONResponse:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # the reason goes to the log of whoever runs it, not to anonymous callers
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get(f"{API}/openapi.json", include_in_schema=False)
    async def openapi(_: Annotated[Principal, Depends(ANYONE)]) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(_openapi, app))

    app.include_router(routes_ui.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(AuthMiddleware)
    app.add_middleware(SecurityHeaders)
    return app


def proxy_options(config: Config) -> dict[str, Any]:
    """uvicorn's forwarded-header settings: X-Forwarded-For/-Proto are believed only from `api.trusted_proxies`.

    uvicorn's own default believes them from 127.0.0.1, so any local process (or a proxy that passes the
    header on) could set the client address that sign-in limits and audit rows go by.
    """
    trusted = config.api.trusted_proxies
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": list(trusted)}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "session": {"type": "apiKey", "in": "cookie", "name": "cp_session"},
            "token": {"type": "http", "scheme": "bearer"},
        }
        for method, path, roles in route_table(app):
            op = schema["paths"].get(path, {}).get(method.lower())
            if op is None:
                continue
            if roles is None:
                op["security"] = []
                continue
            op["security"] = [{"session": []}, {"token": []}]
            op["x-roles"] = sorted(r.value for r in roles)
            op.setdefault("responses", {}).update({
                "401": {"description": "Not signed in"}, "403": {"description": "Role not allowed, or CSRF token missing"},
            })
        app.openapi_schema = schema
    return app.openapi_schema


def route_table(app: FastAPI) -> list[tuple[str, str, frozenset | None]]:
    """(method, full path, roles its gate allows or None) for every route of the app, routers flattened."""
    out = []
    for rc in iter_route_contexts(app.routes):
        route = rc.original_route
        if isinstance(route, APIRoute):
            out += [(m, rc.path_format, route_roles(route)) for m in sorted(rc.methods or ()) if m != "HEAD"]
    return out


def route_roles(route: APIRoute) -> frozenset | None:
    """The roles a route's gate allows, or None for a route without a gate (public ones)."""
    for dep in route.dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return roles
    return None


class SecurityHeaders:
    """CSP (nothing from other origins, no inline script), no framing, no sniffing, no referrer;
    API answers are not cached (evidence files set their own caching)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {b"content-security-policy": CSP.encode(), b"x-content-type-options": b"nosniff",
                         b"x-frame-options": b"DENY", b"referrer-policy": b"no-referrer"}
                if path.startswith(API) and b"cache-control" not in names:
                    extra[b"cache-control"] = b"no-store"
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)

