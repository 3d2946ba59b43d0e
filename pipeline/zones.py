"""Zone geometry and schedule: is a detection inside a zone, and is the zone active now.

Zones are polygons in normalised frame coordinates (see `config.Zone`); boxes are normalised xyxy.
Membership is tested at an anchor point that depends on the class, as road-side systems do: the
bottom centre of the box for things standing on the ground (vehicles touch the road with their
wheels, people with their feet, bins and stalls with their base), the box centre for things
mounted on walls (billboards, banners). Geometry is shapely's, not ours; polygons are built once
per distinct vertex list and cached.

Pure functions, no I/O. The local time of day is passed in by the caller (the site's time zone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import time
from enum import StrEnum
from functools import lru_cache

import shapely
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box
from shapely.geometry.base import BaseGeometry

from citypatrol.pipeline.config.models import Zone, ZoneKind
from citypatrol.pipeline.types import Box

DAY_S = 86400.0


class Anchor(StrEnum):
    bottom_center = "bottom_center"
    center = "center"


#: Classes mounted on walls or poles: their box centre, not their bottom edge, says where they are.
CENTER_ANCHOR_CLASSES: frozenset[str] = frozenset(
    {"billboard", "banner", "poster", "advertisement", "ad", "signboard", "scene_change", "text"}
)


def anchor_for(class_name: str) -> Anchor:
    """The anchor a class is placed by: box centre for billboards/ads, bottom centre otherwise."""
    return Anchor.center if class_name in CENTER_ANCHOR_CLASSES else Anchor.bottom_center


def anchor_point(box: Box, anchor: Anchor) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    cx = (x1 + x2) / 2.0
    return (cx, y2) if anchor is Anchor.bottom_center else (cx, (y1 + y2) / 2.0)


@lru_cache(maxsize=4096)
def _polygon(vertices: tuple[tuple[float, float], ...]) -> BaseGeometry:
    geom: BaseGeometry = Polygon(vertices)
    if not geom.is_valid:  # a hand-drawn polygon may cross itself; keep what the operator meant
        geom = shapely.make_valid(geom)
    shapely.prepare(geom)
    return geom


def zone_geometry(zone: Zone) -> BaseGeometry:
    """The zone's polygon as a prepared shapely geometry (cached by vertex list)."""
    return _polygon(tuple((float(x), float(y)) for x, y in zone.polygon))


def point_in_zone(zone: Zone, x: float, y: float) -> bool:
    """True if the normalised point lies inside the polygon or on its edge."""
    return bool(shapely.intersects_xy(zone_geometry(zone), x, y))


def box_in_zone(zone: Zone, box: Box, class_name: str = "", anchor: Anchor | None = None) -> bool:
    """Membership of a box, tested at `anchor` (default: the class's anchor, see `anchor_for`)."""
    x, y = anchor_point(box, anchor if anchor is not None else anchor_for(class_name))
    return point_in_zone(zone, x, y)


def overlap_share(box: Box, zone: Zone) -> float:
    """Share of the box's area that lies inside the zone (0..1); 0 for a degenerate box."""
    b = shapely_box(*box)
    if b.area <= 0.0:
        return 0.0
    return float(b.intersection(zone_geometry(zone)).area / b.area)


def zones_of_kind(zones: Iterable[Zone], *kinds: ZoneKind) -> list[Zone]:
    """Zones of any of the given kinds, in configuration order."""
    wanted = set(kinds)
    return [z for z in zones if z.kind in wanted]


def _seconds(t: time) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


def seconds_active(zone: Zone, local_time: time) -> float | None:
    """How long the zone has been active at `local_time`.

    None when the zone is outside its hours; `math.inf` when it has no hours (always active);
    otherwise the seconds since the start of the daily window that contains `local_time` (the
    longest, where windows overlap). Rules use it so that dwell only counts inside the hours: a car
    parked at 06:50 in a zone active from 07:00 has dwelt 0 s at 07:00.
    """
    ranges = zone.hour_ranges()
    if not ranges:
        return math.inf
    now = _seconds(local_time)
    best: float | None = None
    for r in ranges:
        if r.contains(local_time):
            into = (now - _seconds(r.start)) % DAY_S
            best = into if best is None else max(best, into)
    return best


def is_active(zone: Zone, local_time: time) -> bool:
    """True if the zone has no hours or `local_time` falls in one of its daily windows."""
    return seconds_active(zone, local_time) is not None


def zones_at(
    zones: Iterable[Zone],
    box: Box,
    class_name: str = "",
    *,
    kinds: Iterable[ZoneKind] = (),
    local_time: time | None = None,
    anchor: Anchor | None = None,
) -> list[Zone]:
    """Zones (optionally of `kinds`, optionally active at `local_time`) that contain the box's anchor."""
    wanted = set(kinds)
    out = []
    for z in zones:
        if wanted and z.kind not in wanted:
            continue
        if local_time is not None and not is_active(z, local_time):
            continue
        if box_in_zone(z, box, class_name, anchor):
            out.append(z)
    return out
