"""Overflowing bins and exposed garbage."""

from __future__ import annotations

import pytest

from citypatrol.pipeline.config.models import Category, GarbageSettings, Rules, ZoneKind
from citypatrol.pipeline.rules import GarbageRule
from tests.fixtures_logic import cadence, camera, ctx, dets, rect, simulate, track, zone

BIN = ("garbage_bin", (400, 500, 500, 650))  # 100 px wide
PILE_NEXT = ("garbage_pile", (520, 580, 600, 650))  # 20 px from the bin: within 0.5 bin widths
PILE_FAR = ("garbage_pile", (800, 580, 880, 650))  # 300 px away
OVERFLOW = ("garbage_overflow", (400, 480, 500, 650))
SETTINGS = Rules(garbage=GarbageSettings(dwell_s=120))


def run(*items, cam=None, stop=130.0, settings=SETTINGS):
    frames = [(t, dets(*items)) for t in cadence(0, stop)]
    return simulate(cam or camera(), frames, [GarbageRule(refresh_s=600)], settings=settings).events


@pytest.mark.parametrize(
    "items, expected",
    [
        ((OVERFLOW,), [Category.garbage_overflow]),
        ((BIN, PILE_NEXT), [Category.garbage_overflow]),  # garbage next to a bin: the bin overflows
        ((PILE_FAR,), [Category.exposed_garbage]),  # a pile alone
        ((BIN, PILE_FAR), [Category.exposed_garbage]),  # a bin, but too far from the pile
        ((BIN,), []),  # a bin is not a problem
        ((BIN, PILE_NEXT, PILE_FAR), [Category.garbage_overflow, Category.exposed_garbage]),
    ],
)
def test_categories(items, expected) -> None:
    evs = run(*items)
    assert sorted(e.category.value for e in evs) == sorted(c.value for c in expected)
    assert all(e.pts == 120.0 for e in evs)


def test_pile_near_bin_is_boxed_with_the_bin() -> None:
    (e,) = run(BIN, PILE_NEXT)
    assert e.box == pytest.approx((0.4, 0.5, 0.6, 0.65))
    assert e.track_ids == (1, 2) and e.classes == ("garbage_bin", "garbage_pile")
    assert e.detail == "garbage_pile next to garbage_bin persisting 120 s"


def test_an_overflowing_bin_and_the_garbage_beside_it_are_one_problem() -> None:
    """Real photos show a full bin with bags dumped beside it: one bin, one case (not the bin and again bin + pile)."""
    (e,) = run(OVERFLOW, PILE_NEXT)
    assert e.category is Category.garbage_overflow and e.box == pytest.approx((0.4, 0.48, 0.6, 0.65))
    assert e.detail == "garbage_overflow with garbage_pile beside it persisting 120 s"
    pile_left = ("garbage_pile", (300, 580, 385, 650))
    (both,) = run(BIN, PILE_NEXT, pile_left)  # two piles at one bin
    assert both.box == pytest.approx((0.3, 0.5, 0.6, 0.65)) and len(both.track_ids) == 3
    assert both.detail == "garbage_pile next to garbage_bin persisting 120 s"


def test_a_heap_and_a_part_of_it_are_one_problem_two_heaps_are_two() -> None:
    """A detector boxes a heap of bags and also a few bags of it (seen on a real Amsterdam pavement):
    one case for the heap. A second heap beside it, not inside it, is its own case."""
    heap = ("garbage_pile", (600, 400, 850, 650))
    part = ("garbage_pile", (590, 500, 690, 660))  # 84 % of it inside the heap's box
    (e,) = run(heap, part)
    assert e.category is Category.exposed_garbage and e.box == pytest.approx((0.59, 0.4, 0.85, 0.66))
    assert len(e.track_ids) == 2
    other = ("garbage_pile", (870, 500, 990, 650))
    assert sorted(ev.box for ev in run(heap, other)) == [pytest.approx((0.6, 0.4, 0.85, 0.65)), pytest.approx((0.87, 0.5, 0.99, 0.65))]


def test_near_bin_distance_is_configurable() -> None:
    settings = Rules(garbage=GarbageSettings(dwell_s=120, near_bin=3.5))
    assert [e.category for e in run(BIN, PILE_FAR, settings=settings)] == [Category.garbage_overflow]
    settings = Rules(garbage=GarbageSettings(dwell_s=120, near_bin=0.1))
    assert [e.category for e in run(BIN, PILE_NEXT, settings=settings)] == [Category.exposed_garbage]


def test_dwell_boundary() -> None:
    assert run(OVERFLOW, stop=120.0) == []  # last frame at 118 s
    assert [e.pts for e in run(OVERFLOW, stop=122.0)] == [120.0]


def test_bin_area_zones_limit_where_garbage_counts() -> None:
    cam = camera(zone("bins", ZoneKind.bin_area, rect(0.3, 0.4, 0.7, 0.8), name="垃圾桶站"))
    evs = run(BIN, PILE_NEXT, PILE_FAR, cam=cam)  # the far pile lies outside the bin area
    assert [(e.category, e.zone_id) for e in evs] == [(Category.garbage_overflow, "bins")]
    assert evs[0].detail.endswith("in bin area 垃圾桶站")


def test_bin_area_outside_hours_counts_nothing() -> None:
    from datetime import time

    cam = camera(zone("bins", ZoneKind.bin_area, rect(0.0, 0.0, 1.0, 1.0), hours=["06:00-08:00"]))
    c = ctx(cam, [track(1, "garbage_overflow", (0.4, 0.48, 0.5, 0.65), last=700.0)], pts=700.0, local_time=time(12))
    assert GarbageRule().evaluate(c) == []


def test_passing_person_with_bag_is_not_garbage() -> None:
    frames = [(t, dets(("garbage", (100 + 150 * i, 600, 160 + 150 * i, 660)))) for i, t in enumerate(cadence(0, 12))]
    frames += [(t, dets()) for t in cadence(12, 700)]
    assert simulate(camera(), frames, [GarbageRule()]).events == []
