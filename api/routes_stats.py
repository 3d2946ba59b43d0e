"""Statistics for the supervision center: cases per day and category, reviewer-judged precision
per category (confirmed ÷ judged, by the category the pipeline gave; a reclassified case counts
against its first category), time to close and time to the first decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from citypatrol.api.auth import ANYONE, Principal
from citypatrol.api.schemas import StatsOut, Time
from citypatrol.api.state import AppState, app_state

router = APIRouter(tags=["statistics"])


@router.get("/stats", response_model=StatsOut, summary="Counts, precision and durations over cases opened in a time range")
def stats(
    state: Annotated[AppState, Depends(app_state)],
    _: Annotated[Principal, Depends(ANYONE)],
    since: Annotated[Time | None, Query(description="Cases opened at or after (ISO 8601); default: all.")] = None,
    until: Annotated[Time | None, Query(description="Cases opened before; default: all.")] = None,
) -> StatsOut:
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")
    return StatsOut(**state.review.stats(since=since, until=until, timezone=state.config.site.timezone))
