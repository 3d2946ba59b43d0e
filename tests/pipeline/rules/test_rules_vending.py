"""Street vending: a stall, or a stationary cluster of stall cues with people, in a no-vending zone."""

from __future__ import annotations

import pytest

from citypatrol.pipeline.config.models import Category, Rules, VendingSettings, ZoneKind
from citypatrol.pipeline.rules import StreetVendingRule
from citypatrol.pipeline.rules.vending import clusters
from tests.fixtures_logic import cadence, camera, ctx, dets, rect, simulate, track, zone

CAM = camera(zone("square", ZoneKind.no_vending, rect(0.0, 0.5, 1.0, 1.0), name="广场北侧"))
UMBRELLA = ("umbrella", (400, 560, 500, 700))
TABLE = ("table", (470, 640, 570, 720))
CART = ("cart", (560, 630, 640, 730))
FAR_TABLE = ("table", (850, 640, 950, 720))  # 400 px away: beyond 0.12 × diagonal (≈170 px)


def person(i: int) -> tuple:
    # the vendor moves about next to the stall
    x = 520 + 30 * (i % 4)
    return ("person", (x, 560, x + 40, 740))


def frames(*items, stop: float = 320.0, people: bool = True, far_person: bool = False):
    out = []
    for i, t in enumerate(cadence(0, stop)):
        extra = []
        if people:
            extra.append(person(i))
        if far_person:
            extra.append(("person", (100, 560, 140, 740)))
        out.append((t, dets(*items, *extra)))
    return out


def events(fr, settings=None):
    return simulate(CAM, fr, [StreetVendingRule(refresh_s=600)], settings=settings).events


def test_stall_alone_is_vending_after_dwell() -> None:
    evs = events(frames(("stall", (400, 560, 560, 720)), people=False))
    assert [(e.pts, e.category, e.zone_id) for e in evs] == [(300.0, Category.street_vending, "square")]
    assert evs[0].detail == "stall stationary 300 s in no-vending zone 广场北侧"


def test_one_stall_boxed_twice_is_one_event_two_stalls_side_by_side_are_two() -> None:
    """A parasol seen from above is sometimes boxed twice, once shifted onto its shadow (a real
    Bogotá plaza chip): one event boxed around both. Two parasols that touch are two stalls."""
    stall = ("stall", (400, 560, 500, 660))
    shifted = ("stall", (430, 590, 520, 680))  # 60 % of it inside the first box
    twice = events([(t, dets(stall, shifted)) for t in cadence(0, 320)])
    assert len(twice) == 1 and twice[0].box == pytest.approx((0.4, 0.56, 0.52, 0.68)) and len(twice[0].track_ids) == 2
    neighbour = ("stall", (500, 560, 600, 660))  # touching at the edge
    assert len(events([(t, dets(stall, neighbour)) for t in cadence(0, 320)])) == 2
    diagonal = ("stall", (490, 650, 590, 750))  # corners overlapping by 1 %
    assert len(events([(t, dets(stall, diagonal)) for t in cadence(0, 320)])) == 2


def test_stall_outside_zone_is_nothing() -> None:
    assert events(frames(("stall", (400, 200, 560, 400)))) == []


@pytest.mark.parametrize(
    "items, people, far_person, fires",
    [
        ((UMBRELLA, TABLE), True, False, True),  # cues with a vendor
        ((UMBRELLA, TABLE, CART), True, False, True),
        ((UMBRELLA, TABLE), False, False, False),  # cues without people: a café's furniture, not vending
        ((UMBRELLA, TABLE), False, True, False),  # a person, but far from the cues
        ((UMBRELLA,), True, False, False),  # one cue is not enough (min_cues 2)
        ((UMBRELLA, FAR_TABLE), True, False, False),  # two cues, too far apart to be one stall
    ],
)
def test_cue_cluster(items, people: bool, far_person: bool, fires: bool) -> None:
    evs = events(frames(*items, people=people, far_person=far_person))
    assert bool(evs) is fires
    if fires:
        e = evs[0]
        assert e.pts == 300.0 and e.since_pts == 0.0 and len(e.track_ids) == len(items)
        assert set(e.classes) == {i[0] for i in items}
        assert e.box == pytest.approx((0.4, 0.56, max(i[1][2] for i in items) / 1000, 0.73 if len(items) == 3 else 0.72))
        assert "with 1 people" in e.detail


def test_min_people_and_cues_are_configurable() -> None:
    settings = Rules(street_vending=VendingSettings(min_people=0, min_cues=1))
    assert len(events(frames(UMBRELLA, people=False), settings)) == 1
    settings = Rules(street_vending=VendingSettings(min_people=2))
    assert events(frames(UMBRELLA, TABLE), settings) == []


def test_moving_cues_do_not_form_a_stall() -> None:
    c = ctx(CAM, [track(1, "umbrella", (0.4, 0.56, 0.5, 0.7), since=None, last=400.0),
                  track(2, "table", (0.47, 0.64, 0.57, 0.72), since=0.0, last=400.0)],
            dets(person(0)), pts=400.0)
    assert StreetVendingRule().evaluate(c) == []


def test_cluster_dwell_counts_from_second_cue() -> None:
    # the umbrella stands from 0 s, the table joins at 100 s: the stall has stood since 100 s
    c = ctx(CAM, [track(1, "umbrella", (0.4, 0.56, 0.5, 0.7), since=0.0, last=399.0),
                  track(2, "table", (0.47, 0.64, 0.57, 0.72), since=100.0, last=399.0)],
            dets(person(0)), pts=399.0)
    assert StreetVendingRule().evaluate(c) == []
    c = ctx(CAM, [track(1, "umbrella", (0.4, 0.56, 0.5, 0.7), since=0.0, last=400.0),
                  track(2, "table", (0.47, 0.64, 0.57, 0.72), since=100.0, last=400.0)],
            dets(person(0)), pts=400.0)
    assert [e.since_pts for e in StreetVendingRule().evaluate(c)] == [100.0]


def test_cluster_outside_hours_is_nothing() -> None:
    from datetime import time

    cam = camera(zone("z", ZoneKind.no_vending, rect(0.0, 0.5, 1.0, 1.0), hours=["07:00-09:00"]))
    c = ctx(cam, [track(1, "umbrella", (0.4, 0.56, 0.5, 0.7), last=400.0),
                  track(2, "table", (0.47, 0.64, 0.57, 0.72), last=400.0)],
            dets(person(0)), pts=400.0, local_time=time(12, 0))
    assert StreetVendingRule().evaluate(c) == []


def test_single_linkage_clusters() -> None:
    import numpy as np

    pts = np.array([[0, 0], [10, 0], [20, 0], [100, 0], [105, 0]], dtype=float)
    assert clusters(pts, 10.0) == [[0, 1, 2], [3, 4]]
    assert clusters(pts, 5.0) == [[0], [1], [2], [3, 4]]
    assert clusters(np.zeros((0, 2)), 5.0) == []
