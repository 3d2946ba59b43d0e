"""Test footage made from real frames: a still from a real camera held for minutes of stream time.

Sample clips are seconds long; dwell thresholds are minutes. A fixed camera whose scene is static
where it matters is a still repeated, so tests build minutes of H.264 from real frames, with
scripted changes (an occlusion, a car gone) painted from other real frames.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PARKING = "videos/parking_lot_cctv_timelapse_640x480_8s.mp4"
# In the frame at 4.0 s three cars stand in these bays (detector scores ~0.6); at 0.0 s they are empty.
PARKED_BAYS = [[0.555, 0.55], [0.76, 0.55], [0.76, 0.74], [0.555, 0.74]]
PARKED_CARS = [(0.60, 0.61, 0.68, 0.71), (0.65, 0.59, 0.73, 0.70), (0.56, 0.62, 0.63, 0.72)]


def frame_at(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            if fr.time is not None and fr.time >= t:
                return fr.to_ndarray(format="bgr24")
    raise ValueError(f"{path} has no frame at {t} s")


def encode(path: Path, seconds: int, frame_for: Callable[[int], np.ndarray], fps: int = 1, gop: int = 2) -> Path:
    """Write `seconds` × `fps` frames (frame_for(second)) as H.264; keyframe every `gop` seconds."""
    with av.open(str(path), "w") as out:
        first = frame_for(0)
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop * fps
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            img = first if i == 0 else frame_for(i // fps)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def paste(dst: np.ndarray, src: np.ndarray, polygon_box: tuple[float, float, float, float]) -> np.ndarray:
    """dst with the normalised box region taken from src."""
    h, w = dst.shape[:2]
    x1, y1, x2, y2 = polygon_box
    out = dst.copy()
    out[int(y1 * h) : int(y2 * h), int(x1 * w) : int(x2 * w)] = src[int(y1 * h) : int(y2 * h), int(x1 * w) : int(x2 * w)]
    return out


# PKLot UFPR05 sequence 1 (stills at 06:25, 06:55, 07:05:01, 07:10:01, 07:15:01): cars that arrive
# and stay, against the 06:25 frame, are real new objects at rest (a scene_change rule kind's positive).
PKLOT_SEQ1 = "sequences/pklot_ufpr05_polo/labelled/sequence1/frames"
PKLOT_SPACE_4 = (0.348, 0.422, 0.448, 0.536)  # the car already there at 06:25 (in the reference picture)
PKLOT_SPACE_6 = (0.300, 0.275, 0.388, 0.365)  # from 06:55
PKLOT_SPACE_11 = (0.570, 0.664, 0.676, 0.792)  # from 07:05


def box_zone(zid: str, kind: str, box: tuple[float, float, float, float], **kw):  # noqa: ANN201 (Zone)
    from citypatrol.pipeline.config.models import Zone

    x1, y1, x2, y2 = box
    return Zone(id=zid, kind=kind, polygon=[[x1, y1], [x2, y1], [x2, y2], [x1, y2]], **kw)


def example_config():  # noqa: ANN201 (→ Config)
    """configs/example.yaml as a deployment loads it, its two secrets set to stand-ins."""
    import pytest

    from citypatrol.pipeline.config.loading import load_config

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAM_EAST_PASSWORD", "x")
        mp.setenv("DISPATCH_SECRET", "y")
        return load_config(Path(__file__).resolve().parents[1] / "configs" / "example.yaml")


def pklot_door_fronts(camera):  # noqa: ANN001, ANN201 (Camera → Camera)
    """The PKLot sequence-1 camera with door_front zones over spaces 6 and 11 (cars arrive) and 4 (a
    car in the reference picture), its 06:25 frame as the reference, and the built-in rules off."""
    frames = sorted(Path(camera.source).iterdir())
    off = {name: {"enabled": False} for name in ("illegal_parking", "street_vending", "garbage", "billboard")}
    return camera.model_copy(update={
        "reference_image": frames[0],
        "rules": camera.rules.model_copy(update=off),
        "zones": [box_zone("space-6", "door_front", (0.28, 0.26, 0.40, 0.38)),
                  box_zone("space-11", "door_front", (0.55, 0.64, 0.70, 0.82)),
                  box_zone("space-4", "door_front", (0.33, 0.40, 0.47, 0.56))],
    })
