"""The unit that flows out of every source: one decoded picture with its stream time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded frame.

    `pts` is seconds of stream time since the source started (rules measure dwell in it, so a
    batch run and a live run over the same footage agree); `wall` is the UTC time of capture
    (for files: the recording's start time, if known, plus `pts`).
    """

    camera_id: str
    pts: float
    wall: datetime
    image: np.ndarray = field(repr=False)  # BGR, HxWx3, uint8
    keyframe: bool = False
    index: int = 0  # analysed-frame counter within the source

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])
