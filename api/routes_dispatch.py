"""The dispatch system's status callbacks: POST /api/v1/dispatch/callback.

The caller is a machine, authenticated by the HMAC-SHA256 signature over timestamp + body (see
`citypatrol.pipeline.dispatch.signing`), not by a user session or API token — so this path must be public
to the session middleware (`api/auth.py` PUBLIC_EXACT) while the handler itself refuses anything
unsigned. Verification, replay protection and the status change live in
`citypatrol.pipeline.dispatch.callbacks`; this route only reads the raw body (the signature covers its exact
bytes) and answers with the reply it is given.

The handler takes the store and config from `request.app.state.cp` (the review center's
`AppState`, or anything with `.store` and `.config`). `create_callback_app` serves the route on its
own (the dispatcher process and tests use it while no review center runs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from citypatrol.pipeline.dispatch import callbacks
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.store.case_store import Store

PATH = "/dispatch/callback"
FULL_PATH = "/api/v1" + PATH
router = APIRouter(tags=["dispatch"])

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["callback_id", "case_id", "status"],
            "properties": {
                "callback_id": {"type": "string", "maxLength": 128, "description": "Unique per callback (replays are refused)."},
                "case_id": {"type": "string", "maxLength": 128},
                "status": {"type": "string", "enum": list(callbacks.REPORTED)},
                "at": {"type": "string", "description": "When it happened at the dispatch system (ISO 8601)."},
                "note": {"type": "string", "maxLength": 500},
            },
        }}},
    },
    "parameters": [
        {"name": "X-Citypatrol-Timestamp", "in": "header", "required": True, "schema": {"type": "string"}, "description": "Unix seconds."},
        {"name": "X-Citypatrol-Signature", "in": "header", "required": True, "schema": {"type": "string"},
         "description": "sha256=<hex HMAC-SHA256(key, timestamp + '.' + body)>."},
    ],
}


@router.post(
    PATH,
    summary="Status callback from the dispatch system (signed; no session)",
    openapi_extra=_BODY_DOC,
    responses={200: {"description": "Applied, or already known"}, 400: {"description": "Malformed body"},
               401: {"description": "Bad or missing signature, or timestamp outside the window"},
               404: {"description": "Unknown case"}, 409: {"description": "Replayed callback, or a change the case's status does not allow"},
               413: {"description": "Body too large"}, 422: {"description": "Unknown status"},
               503: {"description": "Callbacks not configured"}},
)
async def dispatch_callback(request: Request) -> JSONResponse:
    if int(request.headers.get("content-length") or 0) > callbacks.MAX_BODY:
        return JSONResponse({"result": "refused", "reason": "body too large"}, status_code=413)
    body = await request.body()
    state = request.app.state.cp
    remote = request.client.host if request.client else ""
    reply = await run_in_threadpool(callbacks.handle, state.store, state.config, dict(request.headers), body,
                                    now=datetime.now(UTC), remote=remote)
    return JSONResponse(reply.body, status_code=reply.code)


def create_callback_app(store: Store, config: Config) -> FastAPI:
    """A minimal app serving only the callback route (at /api/v1/dispatch/callback) and /healthz."""
    app = FastAPI(title="citypatrol dispatch callbacks", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cp = SimpleNamespace(store=store, config=config)
    app.include_router(router, prefix="/api/v1")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
