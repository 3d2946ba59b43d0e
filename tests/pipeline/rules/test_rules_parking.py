"""Illegal / non-motor parking: tracker → rule → case builder on synthetic frames at 2 s cadence."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta

import pytest

from citypatrol.pipeline.config.models import Category, ParkingSettings, Rules, ZoneKind
from citypatrol.pipeline.rules import IllegalParkingRule
from tests.fixtures_logic import cadence, camera, ctx, dets, rect, simulate, track, zone

# no-parking zone: the lower half of the frame; cars below are parked in it, cars above are not
NO_PARKING = zone("east_gate", ZoneKind.no_parking, rect(0.0, 0.5, 1.0, 1.0), name="东门人行道")
CAM = camera(NO_PARKING)
IN_ZONE = (100, 600, 300, 750)
OUT_OF_ZONE = (100, 200, 300, 350)


def parked(box=IN_ZONE, stop=600.0, cls="car", score=0.9, missing=frozenset()):
    return [(t, dets() if i in missing else dets((cls, box, score))) for i, t in enumerate(cadence(0, stop))]


def test_car_parked_ten_minutes_is_one_case_refreshed_every_minute() -> None:
    run = simulate(CAM, parked(stop=600.0), [IllegalParkingRule()])
    assert [e.pts for e in run.events] == [180.0, 240.0, 300.0, 360.0, 420.0, 480.0, 540.0]
    assert run.kinds() == ["opened"] + ["attached"] * 6
    first = run.events[0]
    assert first.category is Category.illegal_parking and first.zone_id == "east_gate"
    assert first.since_pts == 0.0 and first.track_ids == (1,) and first.classes == ("car",)
    assert first.box == pytest.approx((0.1, 0.6, 0.3, 0.75))
    assert first.detail == "car stationary 180 s in no-parking zone 东门人行道"
    case = run.changes[-1].case
    assert case.events == 7 and case.last_seen_pts == 540.0 and case.opened_pts == 180.0


@pytest.mark.parametrize(
    "missing",
    [
        frozenset(i for i in range(300) if i % 10 in (2, 5, 7)),  # flicker: 3 of every 10 frames missing
        frozenset(range(100, 115)),  # a bus in front for 30 s, around the dwell crossing
        frozenset(range(95, 100)) | frozenset(range(140, 160)),
    ],
)
def test_flicker_and_occlusion_do_not_split_track_or_case(missing) -> None:
    run = simulate(CAM, parked(missing=missing), [IllegalParkingRule()])
    assert run.events, "no event"
    assert {e.track_ids for e in run.events} == {(1,)}
    assert {e.since_pts for e in run.events} == {0.0}
    assert run.kinds().count("opened") == 1 and "expired" not in run.kinds()
    assert len({c.case.case_id for c in run.changes}) == 1


def test_vehicle_driving_through_zone_is_no_event() -> None:
    frames = [(t, dets(("car", (20 + 25 * i, 600, 220 + 25 * i, 750)))) for i, t in enumerate(cadence(0, 60))]
    frames += [(t, dets()) for t in cadence(60, 400)]
    # even with a 10 s dwell: a car crawling through (25 px per 2 s) never rests that long
    run = simulate(CAM, frames, [IllegalParkingRule()], settings=Rules(illegal_parking=ParkingSettings(dwell_s=10)))
    assert run.events == []


@pytest.mark.parametrize("per_frame", [1, 2])
def test_stream_of_passing_cars_is_no_event(per_frame: int) -> None:
    # busy road: every frame catches one or two cars somewhere along the lane
    rng = random.Random(7)
    frames = []
    for t in cadence(0, 900):
        xs = [rng.uniform(0, 800) for _ in range(per_frame)]
        frames.append((t, dets(*(("car", (x, 600, x + 200, 750)) for x in xs))))
    run = simulate(CAM, frames, [IllegalParkingRule()])
    assert run.events == []


def test_car_outside_zone_is_no_event() -> None:
    run = simulate(CAM, parked(box=OUT_OF_ZONE), [IllegalParkingRule()])
    assert run.events == []


@pytest.mark.parametrize(
    "stop, expected",
    [(180.0, []), (182.0, [180.0])],  # last frame at 178 s: just under the dwell; at 180 s: fires
)
def test_dwell_boundary(stop: float, expected: list[float]) -> None:
    run = simulate(CAM, parked(stop=stop), [IllegalParkingRule()])
    assert [e.pts for e in run.events] == expected


def test_zone_dwell_overrides_rule_dwell() -> None:
    cam = camera(zone("short", ZoneKind.no_parking, rect(0.0, 0.5, 1.0, 1.0), dwell_s=30))
    run = simulate(cam, parked(stop=40.0), [IllegalParkingRule()])
    assert [e.pts for e in run.events] == [30.0]


def test_per_camera_settings_are_used() -> None:
    settings = Rules(illegal_parking=ParkingSettings(dwell_s=20, min_score=0.95))
    assert simulate(CAM, parked(stop=60.0, score=0.9), [IllegalParkingRule()], settings=settings).events == []
    settings = Rules(illegal_parking=ParkingSettings(dwell_s=20, min_score=0.5))
    assert [e.pts for e in simulate(CAM, parked(stop=60.0), [IllegalParkingRule()], settings=settings).events] == [20.0]
    settings = Rules(illegal_parking=ParkingSettings(enabled=False))
    assert simulate(CAM, parked(), [IllegalParkingRule()], settings=settings).events == []


@pytest.mark.parametrize(
    "hours, clock, expected",
    [
        (["07:00-09:00"], lambda pts: time(12, 0), []),  # outside the hours all along
        (["07:00-22:00"], lambda pts: time(12, 0), [180.0]),
        # parked from 06:55; the zone starts at 07:00 (pts 300): dwell counts from there
        (["07:00-22:00"], lambda pts: (datetime(2024, 5, 6, 6, 55) + timedelta(seconds=pts)).time(), [480.0]),
    ],
)
def test_zone_hours(hours, clock, expected) -> None:
    cam = camera(zone("z", ZoneKind.no_parking, rect(0.0, 0.5, 1.0, 1.0), hours=hours))
    run = simulate(cam, parked(stop=482.0), [IllegalParkingRule(refresh_s=600)], local_time=clock)
    assert [e.pts for e in run.events] == expected


def test_low_score_vehicle_is_ignored() -> None:
    assert simulate(CAM, parked(score=0.2), [IllegalParkingRule()]).events == []


@pytest.mark.parametrize(
    "nonmotor, expected",
    [([], []), (["bicycle", "motorcycle"], [Category.nonmotor_parking])],
)
def test_bicycles_are_nonmotor_parking_where_configured(nonmotor, expected) -> None:
    settings = Rules(illegal_parking=ParkingSettings(nonmotor_classes=nonmotor))
    run = simulate(CAM, parked(cls="bicycle", box=(100, 650, 140, 700), stop=200.0), [IllegalParkingRule(refresh_s=600)],
                   settings=settings)
    assert [e.category for e in run.events] == expected


def test_moved_and_parked_again_is_a_new_crossing() -> None:
    frames = parked(stop=200.0) + [(t, dets(("car", (500, 600, 700, 750)))) for t in cadence(200, 420)]
    run = simulate(CAM, frames, [IllegalParkingRule(refresh_s=600)])
    assert [(e.pts, e.since_pts) for e in run.events] == [(180.0, 0.0), (380.0, 200.0)]
    # far from the first place: its own case
    assert run.kinds() == ["opened", "opened"]


def test_track_in_occlusion_gap_does_not_fire_until_seen() -> None:
    rule = IllegalParkingRule()
    seen = track(1, "car", (0.1, 0.6, 0.3, 0.75), since=0.0, last=200.0)
    assert rule.evaluate(ctx(CAM, [seen], pts=202.0)) == []  # not matched in this frame
    assert len(rule.evaluate(ctx(CAM, [seen], pts=200.0))) == 1


def test_first_qualifying_zone_wins_when_zones_overlap() -> None:
    cam = camera(zone("a", ZoneKind.no_parking, rect(0.0, 0.5, 1.0, 1.0)), zone("b", ZoneKind.no_parking, rect(0.0, 0.0, 1.0, 1.0)))
    evs = IllegalParkingRule().evaluate(ctx(cam, [track(1, "car", (0.1, 0.6, 0.3, 0.75), last=300.0)], pts=300.0))
    assert [e.zone_id for e in evs] == ["a"]
