"""CaseBuilder: dedup by place, cross-camera sites, expiry after grace, reopen within the window."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from citypatrol.pipeline.cases.builder import CaseBuilder, ChangeKind, case_id_for
from citypatrol.pipeline.cases.states import transition
from citypatrol.pipeline.config.models import CasesConfig, Category, ZoneKind
from citypatrol.pipeline.rules import IllegalParkingRule
from citypatrol.pipeline.types import CaseStatus, Event
from tests.fixtures_logic import T0, cadence, camera, dets, rect, simulate, zone

CFG = CasesConfig(match_iou=0.3, grace_s=600, reopen_window_s=3600)
BOX = (0.1, 0.6, 0.3, 0.75)


def ev(pts: float, box=BOX, cam="cam1", cat=Category.illegal_parking, zone_id="z1", since=None) -> Event:
    return Event(
        camera_id=cam, category=cat, box=box, zone_id=zone_id, pts=pts, wall=T0 + timedelta(seconds=pts),
        since_pts=pts - 180 if since is None else since, score=0.8, track_ids=(1,), classes=("car",), detail=f"at {pts}",
    )


def builder(**sites) -> CaseBuilder:
    return CaseBuilder(CFG, sites or {"cam1": "", "cam2": ""})


def tick(b: CaseBuilder, pts: float, cam: str = "cam1"):
    return b.tick(cam, pts, T0 + timedelta(seconds=pts))


@pytest.mark.parametrize(
    "second, attaches",
    [
        (dict(box=(0.11, 0.61, 0.31, 0.76)), True),  # jittered box: IoU ≈ 0.8
        (dict(box=(0.22, 0.6, 0.42, 0.75)), True),  # same zone, boxes overlap (IoU 0.25 < match_iou)
        (dict(box=(0.22, 0.6, 0.42, 0.75), zone_id="z2"), False),  # other zone, low IoU
        (dict(box=(0.5, 0.6, 0.7, 0.75)), False),  # same zone, a different car elsewhere
        (dict(cat=Category.nonmotor_parking), False),  # same place, another category
        (dict(cam="cam2"), False),  # another camera, no shared site
    ],
)
def test_attach_by_place(second, attaches: bool) -> None:
    b = builder()
    first = b.add(ev(180.0))
    assert first.kind is ChangeKind.opened and first.case.status is CaseStatus.detected
    change = b.add(ev(240.0, **second))
    assert (change.kind is ChangeKind.attached) is attaches
    assert (change.case.case_id == first.case.case_id) is attaches
    assert len(b.open_cases) == (1 if attaches else 2)


def test_attach_updates_case() -> None:
    b = builder()
    b.add(ev(180.0))
    c = b.add(dataclasses.replace(ev(240.0, box=(0.11, 0.6, 0.31, 0.75)), score=0.95)).case
    assert (c.events, c.last_seen_pts, c.score, c.detail, c.opened_pts) == (2, 240.0, 0.95, "at 240.0", 180.0)
    assert c.box == (0.11, 0.6, 0.31, 0.75) and c.last_seen_at == T0 + timedelta(seconds=240)
    assert len(c.history) == 1 and c.history[0].to_status is CaseStatus.detected and c.history[0].actor == "casebuilder"


def test_expiry_after_grace() -> None:
    b = builder()
    b.add(ev(180.0))
    assert tick(b, 779.0) == []
    (change,) = tick(b, 780.0)
    assert change.kind is ChangeKind.expired and change.event is None
    assert change.case.status is CaseStatus.expired
    row = change.case.history[-1]
    assert (row.from_status, row.to_status, row.actor, row.reason) == (CaseStatus.detected, CaseStatus.expired, "casebuilder", "not seen for 600 s")
    assert b.open_cases == [] and [c.case_id for c in b.expired_cases] == [change.case.case_id]
    assert tick(b, 800.0) == []  # expires once


@pytest.mark.parametrize(
    "back_at, kind",
    [
        (1000.0, ChangeKind.reopened),  # expired at 780, back 220 s later
        (780.0 + 3600.0, ChangeKind.reopened),  # at the end of the window
        (780.0 + 3602.0, ChangeKind.opened),  # after the window: a new case
    ],
)
def test_reopen_within_window_else_new_case(back_at: float, kind: ChangeKind) -> None:
    b = builder()
    first = b.add(ev(180.0)).case
    tick(b, 780.0)
    change = b.add(ev(back_at))
    assert change.kind is kind
    if kind is ChangeKind.reopened:
        assert change.case.case_id == first.case_id and change.case.status is CaseStatus.reopened
        assert [r.to_status for r in change.case.history] == [CaseStatus.detected, CaseStatus.expired, CaseStatus.reopened]
        assert change.case.events == 2 and change.case.last_seen_pts == back_at
        assert b.expired_cases == [] and len(b.open_cases) == 1
        assert tick(b, back_at + 599.0) == [] and tick(b, back_at + 600.0)[0].kind is ChangeKind.expired  # can expire again
    else:
        assert change.case.case_id != first.case_id
        assert [c.case_id for c in b.expired_cases] == [first.case_id]
        tick(b, back_at)  # its window has passed: forgotten
        assert b.expired_cases == []


def test_reopen_elsewhere_is_a_new_case() -> None:
    b = builder()
    b.add(ev(180.0))
    tick(b, 780.0)
    assert b.add(ev(900.0, box=(0.6, 0.6, 0.8, 0.75))).kind is ChangeKind.opened


def test_other_camera_same_site_attaches() -> None:
    b = CaseBuilder(CFG, {"cam1": "gate", "cam2": "gate", "cam3": "market"})
    first = b.add(ev(180.0)).case
    assert first.site == "gate"
    other_view = ev(50.0, cam="cam2", box=(0.7, 0.1, 0.9, 0.3), zone_id="zz")  # its own clock and coordinates
    change = b.add(other_view)
    assert change.kind is ChangeKind.attached and change.case.case_id == first.case_id
    # the case keeps its own camera's place and clock
    assert change.case.box == BOX and change.case.last_seen_pts == 180.0 and change.case.events == 2
    assert b.add(ev(50.0, cam="cam3")).kind is ChangeKind.opened  # another site
    # cam2 has seen this case at its own place now: elsewhere in cam2's view is another problem
    assert b.add(ev(60.0, cam="cam2", box=(0.1, 0.7, 0.2, 0.8), zone_id="zz")).kind is ChangeKind.opened


def test_case_lives_while_any_camera_still_sees_it() -> None:
    b = CaseBuilder(CFG, {"cam1": "gate", "cam2": "gate"})
    b.add(ev(180.0))
    b.add(ev(1000.0, cam="cam2"))  # cam2's stream time runs ahead of cam1's
    assert tick(b, 800.0, "cam1") == []  # cam1 lost it 620 s ago, cam2 saw it just now
    assert tick(b, 1500.0, "cam2") == []
    assert tick(b, 1600.0, "cam2")[0].kind is ChangeKind.expired  # both have not seen it for ≥ 600 s


def test_case_ids_are_deterministic_and_distinct() -> None:
    events = [ev(180.0), ev(180.0, box=(0.5, 0.6, 0.7, 0.75)), ev(400.0, cat=Category.nonmotor_parking)]
    ids1 = [builder().add(e).case.case_id for e in events]
    b1, b2 = builder(), builder()
    assert [b1.add(e).case.case_id for e in events] == [b2.add(e).case.case_id for e in events]
    assert len(set(ids1)) == 3
    assert ids1[0] == case_id_for("cam1", Category.illegal_parking, 180.0, BOX) and len(ids1[0]) == 16


def test_id_clash_gets_a_suffix() -> None:
    # same camera, category, pts and box to 3 decimals, yet not the same place (match_iou 1.0)
    b = CaseBuilder(CasesConfig(match_iou=1.0), {"cam1": ""})
    first = b.add(ev(180.0, zone_id=None)).case.case_id
    second = b.add(ev(180.0, box=(0.1, 0.6, 0.3, 0.7501), zone_id=None))
    assert second.kind is ChangeKind.opened and second.case.case_id == f"{first}-2"


def test_dispatched_case_is_forgotten_not_expired() -> None:
    b = builder()
    c = b.add(ev(180.0)).case
    c = transition(transition(c, CaseStatus.approved, T0, "user:a"), CaseStatus.dispatched, T0, "dispatch")
    b.sync(c)
    assert b.get(c.case_id).status is CaseStatus.dispatched
    assert b.add(ev(240.0)).kind is ChangeKind.attached  # still there: keeps it fresh
    assert tick(b, 840.0) == []  # no expiry of a case the dispatch system owns
    assert b.get(c.case_id) is None
    assert b.add(ev(900.0)).kind is ChangeKind.opened


def test_closed_case_is_forgotten_on_sync() -> None:
    b = builder()
    c = b.add(ev(180.0)).case
    for s, who in [(CaseStatus.approved, "u"), (CaseStatus.dispatched, "d"), (CaseStatus.handled, "d"), (CaseStatus.closed, "v")]:
        c = transition(c, s, T0, who)
    b.sync(c)
    assert b.open_cases == [] and b.add(ev(300.0)).kind is ChangeKind.opened


def test_restore_from_store() -> None:
    b = builder()
    live = b.add(ev(180.0)).case
    gone = b.add(ev(180.0, box=(0.6, 0.6, 0.8, 0.75))).case
    gone = transition(gone, CaseStatus.expired, T0, "casebuilder")
    b2 = builder()
    b2.restore([live, gone])
    assert b2.add(ev(200.0)).kind is ChangeKind.attached
    assert b2.add(ev(300.0, box=(0.6, 0.6, 0.8, 0.75))).kind is ChangeKind.reopened


# -- end to end with the tracker and the parking rule -------------------------------------------

CAM = camera(zone("z1", ZoneKind.no_parking, rect(0.0, 0.5, 1.0, 1.0)))
CAR = ("car", (100, 600, 300, 750))


def test_car_parked_ten_minutes_one_case_then_expires_after_it_leaves() -> None:
    frames = [(t, dets(CAR)) for t in cadence(0, 600)]  # parked 0..598 s
    frames += [(t, dets()) for t in cadence(600, 1400)]  # gone
    run = simulate(CAM, frames, [IllegalParkingRule()], cases=CFG)
    assert run.kinds() == ["opened"] + ["attached"] * 6 + ["expired"]
    expired = run.changes[-1].case
    assert expired.last_seen_pts == 540.0 and expired.events == 7
    assert expired.history[-1].at == T0 + timedelta(seconds=1140)  # last event 540 s + grace 600 s


def test_car_parked_an_hour_never_expires() -> None:
    run = simulate(CAM, [(t, dets(CAR)) for t in cadence(0, 3600)], [IllegalParkingRule()], cases=CFG)
    assert run.kinds().count("opened") == 1 and "expired" not in run.kinds()


def test_car_returns_after_expiry_reopens_case() -> None:
    frames = [(t, dets(CAR)) for t in cadence(0, 300)]  # event at 180, 240
    frames += [(t, dets()) for t in cadence(300, 1000)]  # expires at 840
    frames += [(t, dets(CAR)) for t in cadence(1000, 1200)]  # back: new track, event at 1180
    run = simulate(CAM, frames, [IllegalParkingRule()], cases=CFG)
    assert run.kinds() == ["opened", "attached", "expired", "reopened"]
    assert len({c.case.case_id for c in run.changes}) == 1


def test_neighbours_in_one_big_zone_are_separate_cases() -> None:
    """Two cars side by side in one zone, boxes touching by a sliver (PKLot spaces 6 and 16)."""
    from citypatrol.pipeline.cases.builder import CaseBuilder, ChangeKind
    from citypatrol.pipeline.config.models import CasesConfig
    from datetime import UTC, datetime, timedelta

    from citypatrol.pipeline.config.models import Category
    from citypatrol.pipeline.types import Event

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def ev(box, pts):
        return Event(camera_id="lot", category=Category.illegal_parking, box=box, zone_id="lot", pts=pts,
                     wall=t0 + timedelta(seconds=pts), since_pts=pts - 600, score=0.7)

    b = CaseBuilder(CasesConfig(match_iou=0.3, grace_s=3600))
    first = b.add(ev((0.295, 0.286, 0.373, 0.360), 2401))
    second = b.add(ev((0.363, 0.242, 0.439, 0.309), 3001))
    assert first.kind is ChangeKind.opened and second.kind is ChangeKind.opened
    assert first.case.case_id != second.case.case_id
    shuffled = b.add(ev((0.300, 0.290, 0.380, 0.366), 3002))  # the first car, box a little off
    assert shuffled.kind is ChangeKind.attached and shuffled.case.case_id == first.case.case_id


# Three cars parked side by side, seen at an angle (real boxes from the car-park footage): each
# neighbour's box covers over 30 % of the next one's, though IoU stays under match_iou.
CARS = [(0.603, 0.605, 0.680, 0.706), (0.652, 0.590, 0.729, 0.698), (0.559, 0.620, 0.628, 0.720)]


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 1, 0), (1, 2, 0)])
def test_cars_seen_together_are_separate_cases_in_any_order(order) -> None:
    b = builder()
    first = b.add_all([ev(180.0, box=CARS[i]) for i in order])
    assert [c.kind for c in first] == [ChangeKind.opened] * 3
    case_of = {i: c.case.case_id for i, c in zip(order, first)}
    # frame after frame, in changing orders, each car keeps to its own case and nothing new opens
    for k, pts in enumerate(range(182, 260, 2)):
        perm = [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)][k % 4]
        changes = b.add_all([ev(float(pts), box=CARS[i]) for i in perm])
        assert [c.kind for c in changes] == [ChangeKind.attached] * 3
        assert {i: c.case.case_id for i, c in zip(perm, changes)} == case_of
    assert len(b.open_cases) == 3


def test_one_car_detected_twice_in_a_frame_stays_one_case() -> None:
    b = builder()
    b.add(ev(180.0))
    twice = b.add_all([ev(182.0), ev(182.0, box=(0.105, 0.605, 0.305, 0.755))])  # a duplicate box, IoU ≈ 0.9
    assert [c.kind for c in twice] == [ChangeKind.attached] * 2 and len(b.open_cases) == 1
