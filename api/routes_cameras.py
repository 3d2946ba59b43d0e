"""Cameras: the configured and the stored ones, with open cases, health and the latest snapshot.

Health comes from the live runner when one is attached (`create_app(health=...)`); without it a
camera's health is "unknown". The snapshot is the newest evidence frame of the camera (the camera
wall); `/frame` takes a picture from the camera's source now (the zone editor: a new camera has no
evidence yet, and zones are drawn on what the camera sees today).
"""

from __future__ import annotations

from typing import Annotated

import cv2
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from citypatrol.api.auth import ANYONE, Principal
from citypatrol.api.routes_cases import evidence_file
from citypatrol.api.schemas import CAMERA_ID, CameraOut, HealthOut, LocationOut
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.store.review import CameraInfo
from citypatrol.streams.open import grab_frame
from citypatrol.streams.source import SourceError

router = APIRouter(tags=["cameras"])
CameraId = Annotated[str, PathParam(pattern=CAMERA_ID)]
FRAME_TIMEOUT_S = 10.0  # a camera that gives no picture this fast is reported as off


def all_cameras(state: AppState) -> list[CameraOut]:
    stored = {c.id: c for c in state.review.cameras()}
    configured = {c.id: c for c in state.config.cameras}
    out = []
    for cid in sorted(set(stored) | set(configured)):
        s, c = stored.get(cid), configured.get(cid)
        loc = c.location if c is not None else None
        health = state.health(cid) if state.health else None
        out.append(CameraOut(
            id=cid,
            name=(c.name if c is not None and c.name else (s.name if s else "")) or cid,
            site=(c.site if c is not None else (s.site if s else "")),
            enabled=c.enabled if c is not None else None,
            location=LocationOut(
                lon=loc.lon if loc else (s.lon if s else None), lat=loc.lat if loc else (s.lat if s else None),
                address=loc.address if loc else (s.address if s else ""), district=loc.district if loc else (s.district if s else ""),
                grid_code=loc.grid_code if loc else (s.grid_code if s else ""),
            ),
            zones=_zone_count(state, cid, c),
            open_cases=s.open_cases if s else 0,
            last_case_at=s.last_case_at if s else None,
            health=HealthOut(status=health.get("status", "unknown"), detail={k: v for k, v in health.items() if k != "status"})
            if health else HealthOut(),
            snapshot_url=_snapshot_url(cid, s),
        ))
    return out


def _zone_count(state: AppState, camera_id: str, configured) -> int:  # noqa: ANN001
    saved = state.review.zones(camera_id)
    if saved is not None:
        return len(saved.zones)
    return len(configured.zones) if configured is not None else 0


def _snapshot_url(camera_id: str, info: CameraInfo | None) -> str | None:
    if info is None or info.snapshot_evidence_id is None:
        return None
    return f"/api/v1/cameras/{camera_id}/snapshot?v={info.snapshot_evidence_id}"


def get_camera_or_404(state: AppState, camera_id: str) -> CameraOut:
    for cam in all_cameras(state):
        if cam.id == camera_id:
            return cam
    raise HTTPException(404, f"no camera {camera_id}")


@router.get("/cameras", response_model=list[CameraOut], summary="All cameras with health, open cases and snapshot")
def list_cameras(state: Annotated[AppState, Depends(app_state)], _: Annotated[Principal, Depends(ANYONE)]) -> list[CameraOut]:
    return all_cameras(state)


@router.get("/cameras/{camera_id}", response_model=CameraOut, responses={404: {"description": "No such camera"}})
def get_camera(camera_id: CameraId, state: Annotated[AppState, Depends(app_state)],
               _: Annotated[Principal, Depends(ANYONE)]) -> CameraOut:
    return get_camera_or_404(state, camera_id)


@router.get("/cameras/{camera_id}/snapshot", response_class=FileResponse, summary="The camera's latest snapshot (JPEG)",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No camera or no snapshot yet"}})
def get_snapshot(camera_id: CameraId, state: Annotated[AppState, Depends(app_state)],
                 _: Annotated[Principal, Depends(ANYONE)]) -> FileResponse:
    info = next((c for c in state.review.cameras() if c.id == camera_id), None)
    if info is None or info.snapshot_evidence_id is None:
        raise HTTPException(404, f"no snapshot of camera {camera_id} yet")
    item = state.review.evidence(info.snapshot_evidence_id)
    if item is None:
        raise HTTPException(404, f"no snapshot of camera {camera_id} yet")
    return evidence_file(state, item)


@router.get("/cameras/{camera_id}/frame", summary="A picture taken from the camera's source now (JPEG)",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No such camera in the config"},
                       503: {"description": "The camera gives no picture (off, unreachable, or its file unreadable)"}})
async def get_frame(camera_id: CameraId, state: Annotated[AppState, Depends(app_state)],
                    _: Annotated[Principal, Depends(ANYONE)]) -> Response:
    camera = next((c for c in state.config.cameras if c.id == camera_id), None)
    if camera is None:
        raise HTTPException(404, f"no camera {camera_id} in the config: its source is not known")
    timeout = min(state.config.live.open_timeout_s, FRAME_TIMEOUT_S)
    try:
        frame = await run_in_threadpool(grab_frame, camera.id, camera.source, timeout_s=timeout)
    except SourceError as exc:
        raise HTTPException(503, f"camera {camera_id} gives no picture: {exc}") from None
    ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise HTTPException(503, f"camera {camera_id}: its picture could not be encoded")
    return Response(jpeg.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})
