"""Which tiles a camera's frames are cut into (config `detector.tiles`), from its zones and resolution."""

from __future__ import annotations

from collections.abc import Sequence

from citypatrol.models.detector import MultiDetector
from citypatrol.models.tiles import VEHICLES, TileGrid, auto_grid
from citypatrol.pipeline.config.models import Camera, TileSpec
from citypatrol.streams.frame import Frame


def zones_region(camera: Camera, pad: float = 0.03) -> tuple[float, float, float, float]:
    """The normalised bounding box of the camera's zones (padded); the whole frame if it has none."""
    points = [p for z in camera.zones for p in z.polygon]
    if not points:
        return (0.0, 0.0, 1.0, 1.0)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (max(0.0, min(xs) - pad), max(0.0, min(ys) - pad), min(1.0, max(xs) + pad), min(1.0, max(ys) + pad))


def camera_grid(camera: Camera, width: int, height: int, imgsz: int) -> TileGrid | None:
    """The tile grid for this camera's frames of `width`×`height` at a model input of `imgsz`; None = whole frame only."""
    tiles = camera.detector.tiles
    if tiles == "off":
        return None
    region = zones_region(camera)
    if isinstance(tiles, TileSpec):
        return TileGrid(tiles.rows, tiles.cols, tiles.overlap, region)
    return auto_grid(width, height, imgsz, camera.detector.min_vehicle_px, region)


class CameraGrids:
    """Each camera's tile grid, decided from its first frame's size (config `detector.tiles`)."""

    def __init__(self, cameras: Sequence[Camera], detector: MultiDetector) -> None:
        self._cameras = {c.id: c for c in cameras}
        tilers = [d for d in detector.detectors if d.classes & VEHICLES]
        self._imgsz = min((d.imgsz for d in tilers), default=640)
        self._grids: dict[str, TileGrid | None] = {}

    def set_camera(self, camera: Camera, *, as_id: str | None = None) -> None:
        """(Re)take a camera's settings; `as_id`: the id its frames carry when not its own (a segment)."""
        key = as_id or camera.id
        self._cameras[key] = camera
        self._grids.pop(key, None)

    def get(self, frame: Frame) -> TileGrid | None:
        if frame.camera_id not in self._cameras:
            return None
        if frame.camera_id not in self._grids:
            h, w = frame.image.shape[:2]
            self._grids[frame.camera_id] = camera_grid(self._cameras[frame.camera_id], w, h, self._imgsz)
        return self._grids[frame.camera_id]

    def imgsz(self, frame: Frame) -> int | None:
        """The camera's own model input size (`detector.imgsz`); None = each detector's."""
        cam = self._cameras.get(frame.camera_id)
        return cam.detector.imgsz if cam is not None else None

    def describe(self, camera_id: str) -> str:
        grid = self._grids.get(camera_id)
        return grid.describe() if grid is not None else ""
