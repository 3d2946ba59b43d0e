"""Dead letters: cases whose delivery to the dispatch system failed, and retrying them.

The retry itself belongs to the dispatcher (`citypatrol.pipeline.dispatch.dispatcher`): this route calls its
`retry_dead_letter(store, case_id, actor=...)` when that exists and answers 501 otherwise, so
the review center never invents its own delivery path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam

from citypatrol.api.auth import ADMINS, Principal
from citypatrol.api.schemas import CASE_ID, DeadLetterOut, RetryOut
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.store.records import CaseNotFound, OutboxStatus

router = APIRouter(tags=["dispatch"])
RETRY_FUNCTION = "retry_dead_letter"


def retry_function() -> Callable[..., Any] | None:
    """The dispatcher's retry function, or None while `citypatrol.pipeline.dispatch.dispatcher` has none."""
    try:
        module = importlib.import_module("citypatrol.pipeline.dispatch.dispatcher")
    except ImportError:
        return None
    fn = getattr(module, RETRY_FUNCTION, None)
    return fn if callable(fn) else None


@router.get("/dead-letters", response_model=list[DeadLetterOut], summary="Cases whose delivery failed")
def dead_letters(state: Annotated[AppState, Depends(app_state)], _: Annotated[Principal, Depends(ADMINS)]) -> list[DeadLetterOut]:
    out = []
    for case_id, status, category, camera in state.review.dead_letters():
        msgs = state.store.outbox(case_id=case_id, status=OutboxStatus.dead_letter)
        last = msgs[-1] if msgs else None
        out.append(DeadLetterOut(case_id=case_id, status=status, category=category, camera_id=camera, messages=len(msgs),
                                 last_error=last.last_error if last else "", attempts=last.attempts if last else 0))
    return out


@router.post("/cases/{case_id}/retry", response_model=RetryOut, summary="Retry delivering a dead-lettered case",
             responses={404: {"description": "No such case"}, 409: {"description": "Not dead-lettered"},
                        501: {"description": "This build has no dispatcher retry yet"}})
def retry(case_id: Annotated[str, PathParam(pattern=CASE_ID)], state: Annotated[AppState, Depends(app_state)],
          who: Annotated[Principal, Depends(ADMINS)]) -> RetryOut:
    fn = retry_function()
    if fn is None:
        raise HTTPException(501, f"dead-letter retry is not available: citypatrol.pipeline.dispatch.dispatcher has no {RETRY_FUNCTION}() "
                                 "in this build; nothing was changed")
    try:
        state.store.get_case(case_id)
        result = fn(state.store, case_id, actor=who.actor)
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    except (InvalidTransition, ValueError) as exc:
        raise HTTPException(409, str(exc)) from None
    requeued = int(result) if isinstance(result, (int, bool)) else int(getattr(result, "requeued", 0) or 0)
    state.users.log(who.actor, "retry", case_id=case_id, detail={"requeued": requeued})
    return RetryOut(case_id=case_id, requeued=requeued, detail=f"{requeued} message(s) queued again")
