"""The models in use: the configured detectors, and the model versions named on stored cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from citypatrol.api.auth import ANYONE, Principal
from citypatrol.api.schemas import DetectorOut, ModelsOut
from citypatrol.api.state import AppState, app_state

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsOut, summary="Detectors configured and model versions seen on cases")
def models(state: Annotated[AppState, Depends(app_state)], _: Annotated[Principal, Depends(ANYONE)]) -> ModelsOut:
    return ModelsOut(
        detectors=[DetectorOut(name=d.name, weights=d.weights, imgsz=d.imgsz, conf=d.conf, device=d.device)
                   for d in state.config.models.detectors],
        in_cases=state.review.models_in_cases(),
    )
