"""Dead letters: cases whose delivery to the dispatch system failed, and retrying them.

The retry itself belongs to the dispatcher: this route calls its `retry_dead_letter`, so the
review center never invents its own delivery path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam

from citypatrol.api.auth import ADMINS, Principal
from citypatrol.api.schemas import CASE_ID, DeadLetterOut, RetryOut
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.dispatch.dispatcher import retry_dead_letter
from citypatrol.pipeline.store.records import CaseNotFound, OutboxStatus

router = APIRouter(tags=["dispatch"])


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
             responses={404: {"description": "No such case"}, 409: {"description": "Not dead-lettered"}})
def retry(case_id: Annotated[str, PathParam(pattern=CASE_ID)], state: Annotated[AppState, Depends(app_state)],
          who: Annotated[Principal, Depends(ADMINS)]) -> RetryOut:
    try:
        state.store.get_case(case_id)
        result = retry_dead_letter(state.store, case_id, actor=who.actor)
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    except (InvalidTransition, ValueError) as exc:
        raise HTTPException(409, str(exc)) from None
    requeued = int(result) if isinstance(result, (int, bool)) else int(getattr(result, "requeued", 0) or 0)
    state.users.log(who.actor, "retry", case_id=case_id, detail={"requeued": requeued})
    return RetryOut(case_id=case_id, requeued=requeued, detail=f"{requeued} message(s) queued again")
