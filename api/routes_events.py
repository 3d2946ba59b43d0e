"""Server-sent events: every case as it opens or changes, for the live review queue.

The stream polls the database (`ApiConfig.live_poll_s`), because cases are written by other
processes (the pipeline, the dispatcher) as well as by this one. Each event is
`event: case` with the case as JSON (the list's shape) and `id:` its change time, so a browser
that reconnects (EventSource does by itself) sends `Last-Event-ID` and misses nothing. A stream
ends after `stream_max_s` and a comment line is sent every 15 s to keep proxies from closing it.

The sign-in is checked again every `ApiConfig.events_recheck_s` (15 s at most): a stream ends once
its session is signed out or expired, its user disabled, or its token revoked, instead of carrying
on for the rest of `stream_max_s`. The browser's reconnect then gets 401 like any other request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from citypatrol.api.auth import ANYONE, Principal, authenticate
from citypatrol.api.schemas import Time, _sane_time
from citypatrol.api.state import AppState, app_state
from citypatrol.api.views import camera_names, case_out
from citypatrol.pipeline.store.records import CaseNotFound
from citypatrol.pipeline.store.schema import as_utc, utcnow

router = APIRouter(tags=["cases"])
OVERLAP = timedelta(seconds=2)  # re-read this far back: a change committed late with an earlier timestamp is not missed
KEEPALIVE_S = 15.0


def _resume_point(last_event_id: str | None) -> datetime | None:
    if not last_event_id:
        return None
    try:
        return as_utc(_sane_time(datetime.fromisoformat(last_event_id[:64])))
    except ValueError:
        return None


@router.get("/events", response_class=StreamingResponse, summary="Live case changes (text/event-stream)",
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(
    request: Request,
    state: Annotated[AppState, Depends(app_state)],
    _: Annotated[Principal, Depends(ANYONE)],
    since: Annotated[Time | None, Query(description="Send changes from this time on (default: now).")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> StreamingResponse:
    cursor = _resume_point(last_event_id) or (as_utc(since) if since else utcnow())
    return StreamingResponse(_changes(request, state, cursor), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _changes(request: Request, state: AppState, cursor: datetime) -> AsyncIterator[str]:
    started = last_sent = checked = time.monotonic()
    floor = cursor  # nothing from before the point asked for, overlap or not
    sent: dict[str, datetime] = {}  # case id -> change time already sent
    yield "retry: 3000\n\n"
    while time.monotonic() - started < state.stream_max_s:
        if await request.is_disconnected():
            return
        if time.monotonic() - checked >= state.events_recheck_s:
            who, _ = await run_in_threadpool(authenticate, state, request)
            if who is None:  # signed out, expired, disabled or revoked meanwhile
                return
            checked = time.monotonic()
        rows = await run_in_threadpool(state.review.changed_since, max(floor, cursor - OVERLAP))
        fresh = [(cid, at) for cid, at in rows if sent.get(cid) != at]
        if fresh:
            names = await run_in_threadpool(camera_names, state)
            for cid, at in fresh:
                payload = await run_in_threadpool(_case_json, state, cid, names)
                if payload is not None:
                    yield f"id: {at.isoformat()}\nevent: case\ndata: {payload}\n\n"
                sent[cid] = at
                cursor = max(cursor, at)
            sent = {cid: at for cid, at in sent.items() if at >= cursor - OVERLAP}
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(min(state.live_poll_s, state.events_recheck_s))


def _case_json(state: AppState, case_id: str, names: dict[str, str]) -> str | None:
    try:
        record = state.store.get_case(case_id)
    except CaseNotFound:  # deleted meanwhile
        return None
    evidence = state.review.evidence_for([case_id])[case_id]
    return case_out(record, evidence, names).model_dump_json()
