"""Signing in and out, and who am I.

Sign-in sets two cookies: `cp_session` (HttpOnly, SameSite=Strict, Secure over HTTPS, lasting
`ApiConfig.session_hours`) and `cp_csrf` (readable by the page, same attributes otherwise), and
answers with the CSRF token too. Sign-ins are rate limited per user and address, counted
before the password is checked, with a cap on checks running at once (`ratelimit.py`); failures are
audited; the answer never says whether the user name exists.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from citypatrol.api.auth import ANYONE, CSRF_COOKIE, SESSION_COOKIE, Principal
from citypatrol.api.ratelimit import TooManyAttempts
from citypatrol.api.schemas import LoginIn, MeOut
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.store.users import UserRecord

router = APIRouter(tags=["auth"])


def _secure(state: AppState, request: Request) -> bool:
    mode = state.config.api.cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


@router.post("/auth/login", response_model=MeOut, summary="Sign in with user name and password (sets the session cookie)",
             responses={401: {"description": "Wrong user name or password"}, 429: {"description": "Too many failed sign-ins, or too many at once"}})
async def login(body: LoginIn, request: Request, response: Response, state: Annotated[AppState, Depends(app_state)]) -> MeOut:
    ip = request.client.host if request.client else ""
    try:
        attempt = state.limiter.start(body.username, ip)  # counted before the (costly) password check
    except TooManyAttempts as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(max(1, math.ceil(exc.wait_s)))}) from None

    def check() -> UserRecord | None:  # the attempt ends with the hash in its thread, even if the request is cancelled
        user = None
        try:
            user = state.users.verify(body.username, body.password)
            return user
        finally:
            state.limiter.finish(attempt, succeeded=user is not None)

    user = await run_in_threadpool(check)
    if user is None:
        await run_in_threadpool(lambda: state.users.log("anonymous", "login.failed", target=body.username[:64], detail={"ip": ip}))
        raise HTTPException(401, "wrong user name or password")
    hours = state.config.api.session_hours
    new = await run_in_threadpool(lambda: state.users.start_session(user, hours, ip=ip))
    max_age = int(hours * 3600)
    secure = _secure(state, request)
    response.set_cookie(SESSION_COOKIE, new.token, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, new.csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/")
    response.headers["Cache-Control"] = "no-store"
    return MeOut(username=user.username, role=user.role, via="session", expires_at=new.expires_at, csrf_token=new.csrf)


@router.post("/auth/logout", status_code=204, summary="Sign out (ends the session)")
def logout(request: Request, response: Response, state: Annotated[AppState, Depends(app_state)],
           who: Annotated[Principal, Depends(ANYONE)]) -> Response:
    if who.session_id is not None:
        state.users.end_session(who.session_id, actor=who.actor)
    out = Response(status_code=204)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        out.delete_cookie(name, path="/", samesite="strict", secure=_secure(state, request), httponly=name == SESSION_COOKIE)
    return out


@router.get("/auth/me", response_model=MeOut, summary="Who is signed in")
def me(who: Annotated[Principal, Depends(ANYONE)]) -> MeOut:
    return MeOut(username=who.name, role=who.role, via=who.via, expires_at=who.expires_at)
