"""When and where to read a camera's printed text: the text cue's slow cadence.

OCR costs about a second of CPU per read, and the text on a wall changes over minutes, so each
camera is read once every `billboard.text_every_s` of stream time (the first analysed frame is
read at once), and only the box around its active `ad_area` zones (plus a small margin, so a
poster on the zone's edge is whole), and those of the kinds configured `text_region` categories
are judged in. A camera without such active zones, or with the text cue off and no such
category, is never read. Pure: the caller passes stream time and local time in.
"""

from __future__ import annotations

from datetime import time

from citypatrol.pipeline.config.models import Camera, Rules, Zone, ZoneKind
from citypatrol.pipeline.types import Box
from citypatrol.pipeline.zones import is_active, zone_geometry, zones_of_kind

MARGIN = 0.02  # of the frame, around the ad areas' box


class TextSchedule:
    """Per camera: the stream time of its last read."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def due(self, camera: Camera, rules: Rules, local_time: time, pts: float, kinds: tuple[str, ...] = ()) -> Box | None:
        """The area to read now (normalised box), or None; a returned area counts as read.
        `kinds`: zone kinds of configured text_region categories, read whether the billboard text cue is on or not."""
        s = rules.billboard
        kinds = ((ZoneKind.ad_area,) if s.enabled and s.text_cue else ()) + tuple(kinds)
        if not kinds:
            return None
        areas = [z for z in zones_of_kind(camera.zones, *kinds) if is_active(z, local_time)]
        if not areas:
            return None
        last = self._last.get(camera.id)
        if last is not None and pts >= last and pts - last < s.text_every_s - 1e-6:
            return None
        self._last[camera.id] = pts
        return read_area(areas)

    def forget(self, camera_id: str) -> None:
        self._last.pop(camera_id, None)


def read_area(areas: list[Zone]) -> Box:
    """The box the text cue reads for these ad areas: their bounds plus a margin.

    核查 reads the same box, so a case is re-checked at the scale and in the context it was found in
    (the recogniser's confidence on a logo or stylised lettering depends on both)."""
    bounds = [zone_geometry(z).bounds for z in areas]
    return (
        max(0.0, min(b[0] for b in bounds) - MARGIN),
        max(0.0, min(b[1] for b in bounds) - MARGIN),
        min(1.0, max(b[2] for b in bounds) + MARGIN),
        min(1.0, max(b[3] for b in bounds) + MARGIN),
    )
