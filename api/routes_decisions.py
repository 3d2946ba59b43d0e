"""Review decisions on a case: confirm, reject, reclassify, merge, note, correct the box.

Each goes through the case state machine where the status moves and writes an audit row with
the user and the time; each answers with the case as it is now. A move the state machine
refuses (e.g. confirming a rejected case) is a 409 that names the allowed moves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam
from fastapi.exceptions import RequestValidationError

from citypatrol.api.auth import REVIEWERS, Principal
from citypatrol.api.routes_cases import load_detail
from citypatrol.api.schemas import CASE_ID, BoxIn, CaseDetailOut, ConfirmIn, MergeIn, NoteIn, ReclassifyIn, RejectIn
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.config.models import is_builtin
from citypatrol.pipeline.store.records import CaseNotFound
from citypatrol.pipeline.store.review import ReviewConflict, UnknownCategory
from citypatrol.pipeline.types import CaseStatus

router = APIRouter(tags=["decisions"])
CaseId = Annotated[str, PathParam(pattern=CASE_ID)]
ERRORS = {404: {"description": "No such case"}, 409: {"description": "The case's status does not allow this"}}


def _run(state: AppState, case_id: str, action) -> CaseDetailOut:  # noqa: ANN001
    try:
        action()
    except CaseNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (InvalidTransition, ReviewConflict) as exc:
        raise HTTPException(409, str(exc)) from None
    except UnknownCategory as exc:
        raise _bad_category(str(exc)) from None
    return load_detail(state, case_id)


@router.post("/cases/{case_id}/confirm", response_model=CaseDetailOut, responses=ERRORS, summary="Confirm: the problem is real (→ approved)")
def confirm(case_id: CaseId, body: ConfirmIn, state: Annotated[AppState, Depends(app_state)],
            who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    def act() -> None:
        state.review.decide(case_id, "confirm", CaseStatus.approved, actor=who.actor, reason=body.note)
    return _run(state, case_id, act)


@router.post("/cases/{case_id}/reject", response_model=CaseDetailOut, responses=ERRORS, summary="Reject with a reason (→ rejected)")
def reject(case_id: CaseId, body: RejectIn, state: Annotated[AppState, Depends(app_state)],
           who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    def act() -> None:
        state.review.decide(case_id, "reject", CaseStatus.rejected, actor=who.actor, reason=body.reason)
    return _run(state, case_id, act)


@router.post("/cases/{case_id}/reclassify", response_model=CaseDetailOut, responses=ERRORS,
             summary="Change the category (and its city code)")
def reclassify(case_id: CaseId, body: ReclassifyIn, state: Annotated[AppState, Depends(app_state)],
               who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    if not (is_builtin(body.category) or state.config.category(body.category)):
        raise _bad_category(f"unknown category {body.category!r}: neither built-in nor configured under `categories`")

    def act() -> None:
        state.review.reclassify(case_id, body.category, actor=who.actor, reason=body.reason)
    return _run(state, case_id, act)


def _bad_category(message: str) -> RequestValidationError:
    """A 422 in the documented validation-error shape, naming the body's `category`."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", "category"), "msg": message}])


@router.post("/cases/{case_id}/merge", response_model=CaseDetailOut, responses=ERRORS,
             summary="Merge this case into another (its duplicate): sightings move, this one is rejected")
def merge(case_id: CaseId, body: MergeIn, state: Annotated[AppState, Depends(app_state)],
          who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    def act() -> None:
        state.review.merge(case_id, body.into, actor=who.actor, reason=body.reason)
    return _run(state, case_id, act)


@router.post("/cases/{case_id}/notes", response_model=CaseDetailOut, responses=ERRORS, summary="Add a note to the case")
def add_note(case_id: CaseId, body: NoteIn, state: Annotated[AppState, Depends(app_state)],
             who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    def act() -> None:
        state.review.add_note(case_id, body.text, actor=who.actor)
    return _run(state, case_id, act)


@router.post("/cases/{case_id}/box", response_model=CaseDetailOut, responses=ERRORS,
             summary="Correct the object's box on the evidence frame (used when exporting training data)")
def correct_box(case_id: CaseId, body: BoxIn, state: Annotated[AppState, Depends(app_state)],
                who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    def act() -> None:
        state.review.correct_box(case_id, tuple(body.box), actor=who.actor, reason=body.reason, evidence_id=body.evidence_id)
    return _run(state, case_id, act)
