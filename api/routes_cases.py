"""Cases: list with filters and paging, detail with evidence and history, evidence files by id."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query
from fastapi.responses import FileResponse
from pydantic import Field

from citypatrol.api.auth import ANYONE, Principal
from citypatrol.api.schemas import CASE_ID, CaseDetailOut, CasePage, Short, Time
from citypatrol.api.state import AppState, app_state
from citypatrol.api.views import camera_names, case_detail, case_out
from citypatrol.models.assets import sha256_file
from citypatrol.pipeline.config.models import NAME_PATTERN
from citypatrol.pipeline.store.records import CaseNotFound
from citypatrol.pipeline.store.review import REVIEW_QUEUE, EvidenceItem
from citypatrol.pipeline.types import CaseStatus

router = APIRouter(tags=["cases"])
CaseId = Annotated[str, PathParam(pattern=CASE_ID)]


@router.get("/cases", response_model=CasePage, summary="List cases, newest first")
def list_cases(
    state: Annotated[AppState, Depends(app_state)],
    _: Annotated[Principal, Depends(ANYONE)],
    status: Annotated[list[CaseStatus] | None, Query(description="One or more statuses.")] = None,
    category: Annotated[list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None,
                        Query(description="Categories, built-in or configured.")] = None,
    camera: Annotated[list[Short] | None, Query(description="Camera ids.")] = None,
    district: Annotated[list[Short] | None, Query()] = None,
    since: Annotated[Time | None, Query(description="Opened at or after (ISO 8601).")] = None,
    until: Annotated[Time | None, Query(description="Opened before (ISO 8601).")] = None,
    queue: Annotated[bool, Query(description="Only cases waiting for a reviewer (detected, pending_review, reopened).")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CasePage:
    statuses = [s.value for s in status] if status else None
    if queue:
        wanted = {s.value for s in REVIEW_QUEUE}
        statuses = [s for s in statuses if s in wanted] if statuses else sorted(wanted)
    filters = dict(status=statuses, category=category or None, camera_id=camera,
                   district=district, since=since, until=until)
    if statuses == []:
        return CasePage(total=0, limit=limit, offset=offset, items=[])
    records = state.store.list_cases(**filters, limit=limit, offset=offset)
    total = state.store.count_cases(**filters)
    evidence = state.review.evidence_for([r.case_id for r in records])
    names = camera_names(state)
    return CasePage(total=total, limit=limit, offset=offset, items=[case_out(r, evidence[r.case_id], names) for r in records])


@router.get("/cases/{case_id}", response_model=CaseDetailOut, summary="One case with evidence, status history and review activity",
            responses={404: {"description": "No such case"}})
def get_case(case_id: CaseId, state: Annotated[AppState, Depends(app_state)], _: Annotated[Principal, Depends(ANYONE)]) -> CaseDetailOut:
    return load_detail(state, case_id)


def load_detail(state: AppState, case_id: str) -> CaseDetailOut:
    try:
        record = state.store.get_case(case_id)
    except CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    evidence = state.review.evidence_for([case_id])[case_id]
    return case_detail(record, evidence, camera_names(state), state.review.activity(case_id))


@router.get("/evidence/{evidence_id}", response_class=FileResponse, tags=["evidence"],
            summary="An evidence file (image or clip) by its id",
            responses={200: {"content": {"image/jpeg": {}, "video/mp4": {}}}, 404: {"description": "No such evidence"},
                       409: {"description": "The file on disk no longer matches its recorded sha256"}})
def get_evidence(
    evidence_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
    state: Annotated[AppState, Depends(app_state)],
    _: Annotated[Principal, Depends(ANYONE)],
) -> FileResponse:
    item = state.review.evidence(evidence_id)
    if item is None:
        raise HTTPException(404, f"no evidence {evidence_id}")
    return evidence_file(state, item)


def evidence_file(state: AppState, item: EvidenceItem) -> FileResponse:
    """The file of a stored evidence row: only ever under the evidence dir, and only if its hash still matches."""
    root = state.evidence_dir.resolve()
    path = (root / item.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, f"evidence {item.id}: the file is missing from the evidence folder")
    stat = path.stat()
    cached = state.hash_cache.get(item.id)
    if cached is None or cached[:2] != (stat.st_mtime, stat.st_size):
        if len(state.hash_cache) > 100_000:  # bounded: forget everything now and then
            state.hash_cache.clear()
        state.hash_cache[item.id] = cached = (stat.st_mtime, stat.st_size, sha256_file(path))
    if cached[2] != item.sha256:
        raise HTTPException(409, f"evidence {item.id}: the file on disk does not match its recorded sha256")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={
        "ETag": f'"{item.sha256}"', "Cache-Control": "private, max-age=3600", "X-Content-SHA256": item.sha256,
    })
