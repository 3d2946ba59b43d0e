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
