"""Zones per camera, edited in the browser and stored as numbered versions.

Version 0 is what the config file says; every save stores the camera's whole zone list as the
next version (so an earlier one can be read back). A save names the version it was edited from
(`base_version`): if someone saved meanwhile the answer is 409 and nothing is lost. Reading the
saved zones into the running pipeline is the live runner's job.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query

from citypatrol.api.auth import ADMINS, ANYONE, Principal
from citypatrol.api.routes_cameras import get_camera_or_404
from citypatrol.api.schemas import CAMERA_ID, ZONE_ID, ZoneItemIn, ZoneSetIn, ZoneSetOut, ZoneVersionOut
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.config.models import Zone, ZoneKind
from citypatrol.pipeline.store.review import ReviewConflict

router = APIRouter(tags=["zones"])
CameraId = Annotated[str, PathParam(pattern=CAMERA_ID)]
ZoneId = Annotated[str, PathParam(pattern=ZONE_ID)]
ERRORS = {404: {"description": "No such camera or zone"}, 409: {"description": "Saved meanwhile, or the zone id exists"}}


def current(state: AppState, camera_id: str) -> ZoneSetOut:
    get_camera_or_404(state, camera_id)
    saved = state.review.zones(camera_id)
    if saved is not None:
        return ZoneSetOut(camera_id=camera_id, version=saved.version, source="saved", zones=[Zone(**z) for z in saved.zones],
                          saved_at=saved.created_at, saved_by=saved.created_by)
    configured = next((c for c in state.config.cameras if c.id == camera_id), None)
    zones = list(configured.zones) if configured is not None else []
    return ZoneSetOut(camera_id=camera_id, version=0, source="config" if zones else "none", zones=zones, saved_at=None, saved_by=None)


def _save(state: AppState, camera_id: str, zones: list[Zone], base_version: int, who: Principal, reason: str = "") -> ZoneSetOut:
    ids = [z.id for z in zones]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise HTTPException(422, f"zone id(s) appear twice: {', '.join(dupes)}")
    kinds = {k.value for k in ZoneKind} | {c.zone_kind for c in state.config.categories}
    unknown = [f"{z.id} ({z.kind})" for z in zones if z.kind not in kinds]
    if unknown:
        raise HTTPException(422, f"zone kind neither built-in nor declared by a configured category: {', '.join(unknown)}")
    try:
        state.review.save_zones(camera_id, [Zone.model_validate(z.model_dump()).model_dump(mode="json") for z in zones],
                                base_version=base_version, actor=who.actor, reason=reason)
    except ReviewConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return current(state, camera_id)


def _stale(zs: ZoneSetOut, base_version: int) -> None:
    if zs.version != base_version:
        raise HTTPException(409, f"camera {zs.camera_id}: zones are at version {zs.version}, you edited version {base_version}; reload")


@router.get("/cameras/{camera_id}/zones", response_model=ZoneSetOut, responses=ERRORS, summary="The camera's current zones")
def get_zones(camera_id: CameraId, state: Annotated[AppState, Depends(app_state)],
              _: Annotated[Principal, Depends(ANYONE)]) -> ZoneSetOut:
    return current(state, camera_id)


@router.put("/cameras/{camera_id}/zones", response_model=ZoneSetOut, responses=ERRORS, summary="Replace all zones (a new version)")
def put_zones(camera_id: CameraId, body: ZoneSetIn, state: Annotated[AppState, Depends(app_state)],
              who: Annotated[Principal, Depends(ADMINS)]) -> ZoneSetOut:
    get_camera_or_404(state, camera_id)
    return _save(state, camera_id, list(body.zones), body.base_version, who, body.reason)


@router.post("/cameras/{camera_id}/zones/items", response_model=ZoneSetOut, status_code=201, responses=ERRORS, summary="Add one zone")
def add_zone(camera_id: CameraId, body: ZoneItemIn, state: Annotated[AppState, Depends(app_state)],
             who: Annotated[Principal, Depends(ADMINS)]) -> ZoneSetOut:
    zs = current(state, camera_id)
    _stale(zs, body.base_version)
    if any(z.id == body.zone.id for z in zs.zones):
        raise HTTPException(409, f"camera {camera_id} has a zone {body.zone.id} already")
    return _save(state, camera_id, [*zs.zones, body.zone], body.base_version, who)


@router.put("/cameras/{camera_id}/zones/items/{zone_id}", response_model=ZoneSetOut, responses=ERRORS, summary="Replace one zone")
def put_zone(camera_id: CameraId, zone_id: ZoneId, body: ZoneItemIn, state: Annotated[AppState, Depends(app_state)],
             who: Annotated[Principal, Depends(ADMINS)]) -> ZoneSetOut:
    zs = current(state, camera_id)
    _stale(zs, body.base_version)
    if not any(z.id == zone_id for z in zs.zones):
        raise HTTPException(404, f"camera {camera_id} has no zone {zone_id}")
    return _save(state, camera_id, [body.zone if z.id == zone_id else z for z in zs.zones], body.base_version, who)


@router.delete("/cameras/{camera_id}/zones/items/{zone_id}", response_model=ZoneSetOut, responses=ERRORS, summary="Delete one zone")
def delete_zone(camera_id: CameraId, zone_id: ZoneId, state: Annotated[AppState, Depends(app_state)],
                who: Annotated[Principal, Depends(ADMINS)],
                base_version: Annotated[int, Query(ge=0, le=2**31 - 1)]) -> ZoneSetOut:
    zs = current(state, camera_id)
    _stale(zs, base_version)
    if not any(z.id == zone_id for z in zs.zones):
        raise HTTPException(404, f"camera {camera_id} has no zone {zone_id}")
    return _save(state, camera_id, [z for z in zs.zones if z.id != zone_id], base_version, who)


@router.get("/cameras/{camera_id}/zones/versions", response_model=list[ZoneVersionOut], responses=ERRORS,
            summary="Saved versions of the camera's zones, newest first")
def zone_versions(camera_id: CameraId, state: Annotated[AppState, Depends(app_state)],
                  _: Annotated[Principal, Depends(ANYONE)]) -> list[ZoneVersionOut]:
    get_camera_or_404(state, camera_id)
    return [ZoneVersionOut(version=v.version, zones=len(v.zones), created_at=v.created_at, created_by=v.created_by)
            for v in state.review.zone_versions(camera_id)]
