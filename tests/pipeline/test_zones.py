"""Zone membership at the class's anchor, active hours, overlap share."""

from __future__ import annotations

import math
from datetime import time

import pytest

from citypatrol.pipeline.config.models import ZoneKind
from citypatrol.pipeline.zones import (
    Anchor,
    anchor_for,
    box_in_zone,
    is_active,
    overlap_share,
    seconds_active,
    zones_at,
    zones_of_kind,
)
from tests.fixtures_logic import rect, zone

# lower half of the frame is the zone
LOWER = zone("lower", ZoneKind.no_parking, rect(0.0, 0.5, 1.0, 1.0))


@pytest.mark.parametrize(
    "cls, box, inside",
    [
        # a car whose body is mostly above the line but whose wheels are in the zone: inside
        ("car", (0.1, 0.2, 0.3, 0.55), True),
        # a car whose body reaches into the zone but whose wheels stand above it: outside
        ("car", (0.1, 0.0, 0.3, 0.45), False),
        ("person", (0.4, 0.3, 0.45, 0.6), True),
        ("garbage_bin", (0.4, 0.3, 0.45, 0.49), False),
        # billboards are placed by their centre: bottom edge in the zone is not enough
        ("billboard", (0.1, 0.2, 0.3, 0.6), False),
        ("billboard", (0.1, 0.4, 0.3, 0.7), True),
        # on the edge counts as inside
        ("car", (0.1, 0.3, 0.3, 0.5), True),
    ],
)
def test_membership_at_class_anchor(cls: str, box, inside: bool) -> None:
    assert box_in_zone(LOWER, box, cls) is inside


def test_anchor_per_class_and_override() -> None:
    assert anchor_for("car") is Anchor.bottom_center
    assert anchor_for("stall") is Anchor.bottom_center
    assert anchor_for("billboard") is Anchor.center
    # explicit anchor overrides the class default
    assert box_in_zone(LOWER, (0.1, 0.2, 0.3, 0.6), "billboard", Anchor.bottom_center)


def test_non_rectangular_and_self_crossing_polygons() -> None:
    tri = zone("tri", ZoneKind.no_parking, [(0.0, 1.0), (1.0, 1.0), (0.0, 0.0)])  # below the diagonal
    assert box_in_zone(tri, (0.1, 0.5, 0.2, 0.8), "car")  # wheels at (0.15, 0.8): below y=x
    assert not box_in_zone(tri, (0.7, 0.1, 0.9, 0.4), "car")  # wheels at (0.8, 0.4): above
    bow = zone("bow", ZoneKind.no_parking, [(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])  # crosses itself
    # lobes left and right of the crossing at (0.5, 0.5)
    assert box_in_zone(bow, (0.75, 0.3, 0.85, 0.5), "car")  # (0.8, 0.5): right lobe
    assert box_in_zone(bow, (0.15, 0.3, 0.25, 0.5), "car")  # (0.2, 0.5): left lobe
    assert not box_in_zone(bow, (0.45, 0.0, 0.55, 0.1), "car")  # (0.5, 0.1): between them


@pytest.mark.parametrize(
    "box, share",
    [
        ((0.0, 0.0, 0.2, 0.4), 0.0),
        ((0.0, 0.6, 0.2, 0.9), 1.0),
        ((0.0, 0.4, 0.2, 0.6), 0.5),
        ((0.0, 0.25, 0.2, 0.75), 0.5),
        ((0.3, 0.3, 0.3, 0.9), 0.0),  # degenerate
    ],
)
def test_overlap_share(box, share: float) -> None:
    assert overlap_share(box, LOWER) == pytest.approx(share)


@pytest.mark.parametrize(
    "hours, now, active, secs",
    [
        ([], time(3, 0), True, math.inf),
        (["07:00-22:00"], time(6, 59), False, None),
        (["07:00-22:00"], time(7, 0), True, 0.0),
        (["07:00-22:00"], time(7, 5, 30), True, 330.0),
        (["07:00-22:00"], time(22, 0), True, 15 * 3600.0),
        (["07:00-22:00"], time(22, 1), False, None),
        (["22:00-06:00"], time(23, 0), True, 3600.0),  # wraps past midnight
        (["22:00-06:00"], time(1, 0), True, 3 * 3600.0),
        (["22:00-06:00"], time(12, 0), False, None),
        (["07:00-09:00", "17:00-19:00"], time(18, 0), True, 3600.0),
        (["07:00-09:00", "17:00-19:00"], time(12, 0), False, None),
        (["00:00-24:00"], time(23, 59, 30), True, 86370.0),
    ],
)
def test_hours(hours, now: time, active: bool, secs) -> None:
    z = zone("z", ZoneKind.no_parking, hours=hours)
    assert is_active(z, now) is active
    assert seconds_active(z, now) == secs


def test_zones_at_filters_kind_and_hours() -> None:
    a = zone("a", ZoneKind.no_parking)
    b = zone("b", ZoneKind.no_vending)
    c = zone("c", ZoneKind.no_parking, hours=["07:00-09:00"])
    box = (0.1, 0.6, 0.2, 0.8)
    assert [z.id for z in zones_at([a, b, c], box, "car")] == ["a", "b", "c"]
    assert [z.id for z in zones_at([a, b, c], box, "car", kinds=[ZoneKind.no_parking])] == ["a", "c"]
    assert [z.id for z in zones_at([a, b, c], box, "car", kinds=[ZoneKind.no_parking], local_time=time(12))] == ["a"]
    assert [z.id for z in zones_of_kind([a, b, c], ZoneKind.no_vending)] == ["b"]
