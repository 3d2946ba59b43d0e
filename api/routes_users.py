"""Administration: users, machine API tokens, and the audit log (admins only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query

from citypatrol.api.auth import ADMINS, Principal
from citypatrol.api.schemas import AuditOut, NewTokenOut, Short, TokenIn, TokenOut, UserIn, UserOut, UserPatch
from citypatrol.api.state import AppState, app_state
from citypatrol.api.views import audit_out
from citypatrol.pipeline.store.schema import utcnow
from citypatrol.pipeline.store.users import UserError

router = APIRouter(tags=["admin"])
UserName = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.@-]{2,64}$")]


@router.get("/users", response_model=list[UserOut], summary="All users")
def list_users(state: Annotated[AppState, Depends(app_state)], _: Annotated[Principal, Depends(ADMINS)]) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in state.users.users()]


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user",
             responses={409: {"description": "The user exists"}})
def add_user(body: UserIn, state: Annotated[AppState, Depends(app_state)], who: Annotated[Principal, Depends(ADMINS)]) -> UserOut:
    try:
        return UserOut.model_validate(state.users.add_user(body.username, body.password, body.role, actor=who.actor))
    except UserError as exc:
        raise HTTPException(409 if "exists" in str(exc) else 422, str(exc)) from None


@router.patch("/users/{username}", response_model=UserOut, summary="Enable or disable a user (disabling ends their sessions)",
              responses={404: {"description": "No such user"}})
def patch_user(username: UserName, body: UserPatch, state: Annotated[AppState, Depends(app_state)],
               who: Annotated[Principal, Depends(ADMINS)]) -> UserOut:
    if who.via == "session" and who.name == username.casefold() and not body.active:
        raise HTTPException(409, "you cannot disable yourself")
    try:
        return UserOut.model_validate(state.users.set_active(username, body.active, actor=who.actor))
    except KeyError:
        raise HTTPException(404, f"no user {username}") from None


@router.get("/tokens", response_model=list[TokenOut], summary="API tokens (secrets are never shown again)")
def list_tokens(state: Annotated[AppState, Depends(app_state)], _: Annotated[Principal, Depends(ADMINS)]) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in state.users.tokens()]


@router.post("/tokens", response_model=NewTokenOut, status_code=201, summary="Create an API token for a machine")
def create_token(body: TokenIn, state: Annotated[AppState, Depends(app_state)], who: Annotated[Principal, Depends(ADMINS)]) -> NewTokenOut:
    expires = utcnow() + timedelta(days=body.expires_days) if body.expires_days else None
    try:
        secret, record = state.users.create_token(body.name, body.role, actor=who.actor, expires_at=expires)
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None
    return NewTokenOut(**TokenOut.model_validate(record).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token",
               responses={404: {"description": "No such token"}})
def revoke_token(token_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], state: Annotated[AppState, Depends(app_state)],
                 who: Annotated[Principal, Depends(ADMINS)]) -> TokenOut:
    try:
        return TokenOut.model_validate(state.users.revoke_token(token_id, actor=who.actor))
    except KeyError:
        raise HTTPException(404, f"no token {token_id}") from None


@router.get("/audit", response_model=list[AuditOut], summary="The audit log, newest first")
def audit_log(
    state: Annotated[AppState, Depends(app_state)],
    _: Annotated[Principal, Depends(ADMINS)],
    action: Annotated[Short | None, Query()] = None,
    actor: Annotated[Short | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AuditOut]:
    return [audit_out(a) for a in state.review.audit_log(limit=limit, offset=offset, action=action, actor=actor)]
