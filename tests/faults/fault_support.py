"""Helpers for the fault suite's tests (import as `from fault_support import ...`)."""

from __future__ import annotations

from pathlib import Path

from citypatrol.pipeline.config.models import Camera, Config, LiveConfig, StorageConfig, Zone, ZoneKind

from footage import PARKED_BAYS

DWELL_S = 20.0
CADENCE_S = 2.0


def parked_camera(source: str, cam_id: str = "lot", dwell: float = DWELL_S, cadence: float = CADENCE_S) -> Camera:
    zone = Zone(id="bays", name="消防通道 fire lane", kind=ZoneKind.no_parking, polygon=PARKED_BAYS)
    return Camera(id=cam_id, name="停车场 lot", source=source, cadence_s=cadence, zones=[zone],
                  rules={"illegal_parking": {"dwell_s": dwell}})  # fmt: skip


def live_config(tmp: Path, cameras: list[Camera], **live: object) -> Config:
    storage = StorageConfig(database_url=f"sqlite:///{tmp / 'live.db'}", evidence_dir=tmp / "evidence", clip_seconds=4)
    return Config(cameras=cameras, storage=storage, live=LiveConfig(metrics_port=0, status_file=tmp / "status.json", **live))
