"""Approve this sign: a reviewer turns a billboard case into an entry of the camera's ads register.

The entry is an `approved_ad` zone over the case's box with the permit number, the permit's last
day and the sign's look, taken from the case's clean crop; it is saved as a new version of the
camera's zones (the live runner picks it up like any zone edit). The case is rejected as compliant
(合规) with the permit named, so retraining keeps the sign as a real object, not a false alarm. From
then on the same sign in that place is no case until the permit runs out; another sign put up there
is a case again.
"""

from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam

from citypatrol.annotate.evidence import crop_bounds
from citypatrol.api.auth import REVIEWERS, Principal
from citypatrol.api.routes_cases import evidence_file, load_detail
from citypatrol.api.routes_zones import _save, current
from citypatrol.api.schemas import CASE_ID, ApproveSignIn, CaseDetailOut
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.config.models import Category
from citypatrol.pipeline.rules.register import entry_for_sign
from citypatrol.pipeline.store.records import CaseNotFound
from citypatrol.pipeline.types import CaseStatus

router = APIRouter(tags=["decisions"])
CaseId = Annotated[str, PathParam(pattern=CASE_ID)]
ERRORS = {404: {"description": "No such case"}, 409: {"description": "The case's status does not allow this, or the sign is registered"},
          422: {"description": "Not a billboard case, or its evidence cannot be read"}}


def _picture(state: AppState, item) -> np.ndarray:  # noqa: ANN001 (EvidenceItem)
    path = evidence_file(state, item).path  # only under the evidence dir, only with its recorded hash
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise HTTPException(422, f"evidence {item.id} cannot be decoded as a picture")
    return image


@router.post("/cases/{case_id}/approve-sign", response_model=CaseDetailOut, responses=ERRORS,
             summary="Approve this sign: register it (permit, last day, look) and reject the case as compliant")
def approve_sign(case_id: CaseId, body: ApproveSignIn, state: Annotated[AppState, Depends(app_state)],
                 who: Annotated[Principal, Depends(REVIEWERS)]) -> CaseDetailOut:
    try:
        record = state.store.get_case(case_id)
    except CaseNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    case = record.case
    if case.category is not Category.billboard:
        raise HTTPException(422, f"case {case_id} is {case.category.value}, not a billboard: only a sign can be registered")
    if case.status not in (CaseStatus.detected, CaseStatus.pending_review, CaseStatus.reopened):
        raise HTTPException(409, f"case {case_id} is {case.status.value}: only a case awaiting review can be approved as a sign")
    items = state.review.evidence_for([case_id])[case_id]
    # the opening frame and its crop (a reopening adds later ones)
    frame = next((e for e in items if e.kind == "frame" and e.path.endswith("/frame.jpg")), None)
    crop = next((e for e in items if e.kind == "crop" and e.path.endswith("/frame_crop.jpg")), None)
    if frame is None or crop is None:
        raise HTTPException(422, f"case {case_id} has no frame and crop to take the sign's look from")
    full, cut = _picture(state, frame), _picture(state, crop)
    h, w = full.shape[:2]
    x1, y1, _, _ = crop_bounds(case.box, w, h)
    zone_id = f"approved-{case_id[:24]}"
    try:
        entry = entry_for_sign(zone_id, case.box, (w, h), cut, (x1, y1), body.permit, body.valid_until,
                               name=f"已审批广告 permit {body.permit}")
    except ValueError as exc:
        raise HTTPException(422, f"case {case_id}: {exc}") from None
    zones = current(state, case.camera_id)
    if any(z.id == zone_id for z in zones.zones):
        raise HTTPException(409, f"camera {case.camera_id} has a register entry {zone_id} already")
    reason = f"合规：已审批广告 compliant: approved sign, permit {body.permit} valid until {body.valid_until.isoformat()}"
    try:  # the decision first: a case that cannot be rejected adds no entry
        state.review.decide(case_id, "reject", CaseStatus.rejected, actor=who.actor,
                            reason=f"{reason}{'; ' + body.note if body.note else ''}")
    except InvalidTransition as exc:
        raise HTTPException(409, str(exc)) from None
    _save(state, case.camera_id, [*zones.zones, entry], zones.version, who, reason=f"{reason} (case {case_id})")
    return load_detail(state, case_id)
