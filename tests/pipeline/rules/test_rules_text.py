"""The text cue for billboards, on real footage read by the real OCR (RapidOCR in the wheel).

London street: the construction hoarding is an advertising area with nothing approved; the
train poster on it carries printed text → a billboard case there, with the text read. The
lamppost banner (text at x≈0.54) is outside the hoarding → never a case. Pedestrian street: the
shop's "30% off" window poster is a case only when its window is in an ad area and not in the
register. Each real frame is read once per module (about a second of CPU each).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from citypatrol.annotate.evidence import crop_bounds
from citypatrol.models.text import RapidTextReader, TextReading, TextRegion, is_readable
from citypatrol.pipeline.config.models import BillboardSettings, Category, CategoryDef, Rules, ZoneKind
from citypatrol.pipeline.evaluation.scoring import boxes_match
from citypatrol.pipeline.rules import TextRegionRule
from citypatrol.pipeline.rules.configured import configured_rule
from citypatrol.pipeline.rules.register import MIN_AGREEMENT, Register, agreement, decode_look, entry_for_sign, sign_look
from citypatrol.pipeline.detection.text_schedule import TextSchedule
from citypatrol.pipeline.tracker import StationaryTracker
from tests.fixtures_logic import NOON, T0, camera, ctx, dets, rect, zone
from tests.footage import frame_at

SETTINGS = Rules(billboard=BillboardSettings(dwell_s=60, text_every_s=30))
HOARDING = zone("hoarding", ZoneKind.ad_area, rect(0.64, 0.30, 1.0, 0.60), name="施工围挡")
TRAIN_POSTER = (0.89, 0.35, 1.0, 0.56)
LAMPPOST_BANNER_X = (0.50, 0.60)
READ_AREA = (0.45, 0.28, 1.0, 0.62)  # hoarding and lamppost banner

SHOP_FRONT = zone("shop_front", ZoneKind.ad_area, rect(0.0, 0.0, 0.3, 0.45), name="商铺立面")
SHOP_WINDOW_PERMIT = zone("gap_window", ZoneKind.approved_ad, rect(0.0, 0.1, 0.2, 0.4))
STREET = zone("street", ZoneKind.ad_area, rect(0.3, 0.3, 0.95, 0.95))  # walkers, bins, benches
WINDOW_POSTER = (0.064, 0.205, 0.132, 0.281)


@pytest.fixture(scope="module")
def reader() -> RapidTextReader:
    return RapidTextReader()


@pytest.fixture(scope="module")
def london(reader, sample_video) -> list[TextReading]:
    path = sample_video("london")
    return [reader.read(frame_at(path, t), READ_AREA) for t in (0.0, 1.5, 3.0)]


@pytest.fixture(scope="module")
def pedestrian(reader, sample_video) -> list[TextReading]:
    path = sample_video("pedestrian")
    return [reader.read(frame_at(path, t), (0.0, 0.0, 1.0, 1.0)) for t in (0.0, 1.8, 3.6)]


@pytest.fixture(scope="module")
def london_frames(sample_video) -> list:
    path = sample_video("london")
    return [frame_at(path, t) for t in (0.0, 1.5, 3.0)]


def run(cam, readings: list[TextReading], rules: Rules = SETTINGS, step: float = 30.0, images=None):
    """The readings as if taken every `step` seconds of a fixed camera (the scene is static where it matters)."""
    rule = TextRegionRule(rules, refresh_s=600)
    events = []
    for i, reading in enumerate(readings):
        c = ctx(cam, [], dets(size=(1920, 1080)), pts=i * step, rules=rules, local_time=NOON,
                image=images[i] if images is not None else None)
        events += rule.evaluate(replace(c, texts=reading))
    return events


def registered(image, box, permit: str, valid_until: date):
    """The register entry 'approve this sign' makes for the sign at `box` in this frame."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = crop_bounds(box, w, h)
    return entry_for_sign(f"approved-{permit}", box, (w, h), image[y1:y2, x1:x2], (x1, y1), permit, valid_until)


def test_a_registered_sign_is_no_case_until_its_permit_runs_out_or_another_sign_replaces_it(london, london_frames) -> None:
    first = london_frames[0]
    wall_day = T0.date()
    entry = registered(first, TRAIN_POSTER, "SZ-2026-0042", wall_day + timedelta(days=30))
    assert entry.kind is ZoneKind.approved_ad and decode_look(entry.look).shape == (32, 32)
    on_poster = lambda events: [e for e in events if boxes_match(e.box, TRAIN_POSTER)]  # noqa: E731
    assert on_poster(run(camera(HOARDING), london, images=london_frames))  # not registered: a case
    assert not on_poster(run(camera(HOARDING, entry), london, images=london_frames))  # the same poster: approved

    expired = entry.model_copy(update={"valid_until": wall_day - timedelta(days=1)})
    events = on_poster(run(camera(HOARDING, expired), london, images=london_frames))
    assert events and f"permit SZ-2026-0042 ran out on {expired.valid_until.isoformat()}" in events[0].detail

    # the entry of another sign (the station render further left) moved over the train poster: a different sign
    render = registered(first, (0.705, 0.395, 0.76, 0.545), "SZ-2026-0007", wall_day + timedelta(days=30))
    swapped = entry.model_copy(update={"look": render.look, "permit": "SZ-2026-0007"})
    events = on_poster(run(camera(HOARDING, swapped), london, images=london_frames))
    assert events and "not the sign approved under permit SZ-2026-0007" in events[0].detail


def test_looks_tell_one_poster_from_another_and_hold_three_seconds_later(london_frames) -> None:
    boxes = [TRAIN_POSTER, (0.705, 0.395, 0.76, 0.545), (0.655, 0.435, 0.695, 0.56)]
    looks = [[decode_look(sign_look(f, b)) for f in london_frames] for b in boxes]
    for same in looks:  # 0 s against 3 s (at 1.5 s a car passes in front: the register's memory covers that)
        assert agreement(same[0], same[2]) >= MIN_AGREEMENT
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert agreement(looks[i][0], looks[j][0]) < MIN_AGREEMENT


def test_a_sign_hidden_for_a_moment_stays_approved_but_not_for_a_whole_dwell(london_frames) -> None:
    entry = registered(london_frames[0], TRAIN_POSTER, "P-1", date(2099, 1, 1))
    hidden = london_frames[0].copy()
    hidden[:, int(0.85 * hidden.shape[1]):] = 40  # a van parked in front of the poster
    reg = Register()
    today = date(2026, 1, 1)
    assert reg.check("cam", [entry], TRAIN_POSTER, london_frames[0], today, 0.0, 60.0).approved
    assert reg.check("cam", [entry], TRAIN_POSTER, hidden, today, 30.0, 60.0).approved
    late = reg.check("cam", [entry], TRAIN_POSTER, hidden, today, 61.0, 60.0)
    assert not late.approved and "not the sign approved under permit P-1" in late.why


def test_the_ocr_finds_the_hoarding_and_lamppost_text(london) -> None:
    boxes = [r.box for reading in london for r in reading.regions]
    assert any(boxes_match(b, TRAIN_POSTER) for b in boxes)
    assert any(LAMPPOST_BANNER_X[0] <= (b[0] + b[2]) / 2 <= LAMPPOST_BANNER_X[1] for b in boxes)


def test_printed_text_on_the_hoarding_is_a_billboard_with_its_text(london) -> None:
    events = run(camera(HOARDING), london)
    assert events and all(e.category is Category.billboard and e.zone_id == "hoarding" for e in events)
    assert any(boxes_match(e.box, TRAIN_POSTER) for e in events)
    assert all(e.pts == 60.0 and e.since_pts == 0.0 for e in events)  # at rest for the 60 s dwell
    assert all("printed text" in e.detail and e.classes == ("text",) for e in events)
    assert not any(LAMPPOST_BANNER_X[0] <= (e.box[0] + e.box[2]) / 2 <= LAMPPOST_BANNER_X[1] for e in events)


def test_text_not_yet_at_rest_for_the_dwell_is_nothing(london) -> None:
    assert run(camera(HOARDING), london, step=20.0) == []  # last reading at 40 s < 60 s


def test_registered_poster_and_text_outside_ad_areas_are_not_cases(london) -> None:
    permit = zone("rail_permit", ZoneKind.approved_ad, rect(0.88, 0.33, 1.0, 0.58))
    assert not any(boxes_match(e.box, TRAIN_POSTER) for e in run(camera(HOARDING, permit), london))
    assert run(camera(), london) == []  # no advertising area drawn: the text cue judges nothing


def test_shop_window_poster_is_a_case_only_where_not_registered(pedestrian) -> None:
    events = run(camera(SHOP_FRONT), pedestrian)
    assert [e.zone_id for e in events if boxes_match(e.box, WINDOW_POSTER)] == ["shop_front"]
    assert '"30%off"' in next(e.detail for e in events if boxes_match(e.box, WINDOW_POSTER))
    assert not any(boxes_match(e.box, WINDOW_POSTER) for e in run(camera(SHOP_FRONT, SHOP_WINDOW_PERMIT), pedestrian))


def test_walkers_benches_and_bins_are_not_text(pedestrian) -> None:
    assert run(camera(STREET), pedestrian) == []


@pytest.mark.parametrize(
    "text, score, readable",
    [("30%off", 0.95, True), ("广告", 0.8, True), ("?", 0.78, False), ("GAEML", 0.47, False), ("", 0.0, False)],
)
def test_unreadable_text_says_so(text, score, readable) -> None:
    assert is_readable(text, score) is readable
    region = TextRegion((0.1, 0.1, 0.2, 0.2), text, score, readable)
    assert ("not legible as Chinese or English" in region.describe()) is not readable


def test_schedule_reads_ad_areas_at_the_slow_cadence() -> None:
    sched = TextSchedule()
    cam = camera(HOARDING)
    due = [sched.due(cam, SETTINGS, NOON, t) is not None for t in (0.0, 10.0, 29.0, 30.0, 45.0, 60.0)]
    assert due == [True, False, False, True, False, True]
    area = TextSchedule().due(cam, SETTINGS, NOON, 0.0)
    assert area == pytest.approx((0.62, 0.28, 1.0, 0.62))
    assert TextSchedule().due(camera(), SETTINGS, NOON, 0.0) is None  # no ad area: never read
    off = Rules(billboard=BillboardSettings(text_cue=False))
    assert TextSchedule().due(cam, off, NOON, 0.0) is None


def test_a_grey_camera_is_read_too(reader, sample_video) -> None:
    import cv2

    grey = cv2.cvtColor(frame_at(sample_video("london"), 0.0), cv2.COLOR_BGR2GRAY)
    reading = reader.read(grey, READ_AREA)
    assert any(boxes_match(r.box, TRAIN_POSTER) for r in reading.regions)


def test_lines_of_one_sign_are_one_region() -> None:
    from citypatrol.pipeline.rules.text_region import text_blocks

    lines = (
        TextRegion((0.10, 0.33, 0.22, 0.36), "BINNAYA KOMNATA", 0.87, True),
        TextRegion((0.10, 0.36, 0.17, 0.39), "SIGARY", 0.71, True),
        TextRegion((0.23, 0.335, 0.46, 0.395), "MIR VISKI", 0.83, True),
        TextRegion((0.70, 0.34, 0.80, 0.40), "PIROGOF", 0.73, True),  # another board, far to the right
    )
    blocks = text_blocks(lines, (768.0, 559.0))
    assert [b.text for b in blocks] == ["BINNAYA KOMNATA SIGARY MIR VISKI", "PIROGOF"]
    assert blocks[0].box == pytest.approx((0.10, 0.33, 0.46, 0.395))


def test_a_number_plate_is_not_a_billboard(reader, sample_video) -> None:
    """The whole London frame as an ad area, held still: the car (parked, as the frame is held) has its
    plate read as text at rest; on a car at rest, it is not a billboard."""
    from citypatrol.models.detector import load_detectors
    from citypatrol.pipeline.config.models import Config

    image = frame_at(sample_video("london"), 0.0)
    plate = (0.387, 0.562, 0.426, 0.58)
    reading = reader.read(image, (0.3, 0.5, 0.5, 0.65))
    assert any(boxes_match(r.box, plate) for r in reading.regions)  # the OCR does read the plate
    everywhere = camera(zone("all", ZoneKind.ad_area, rect(0.0, 0.0, 1.0, 1.0)))
    rule, with_car, without = TextRegionRule(SETTINGS, refresh_s=600), [], []
    cars, tracker = load_detectors(Config().models).detect([image])[0], StationaryTracker("cam1")
    for i in range(3):
        c = ctx(everywhere, tracker.update(cars, i * 30.0), cars, pts=i * 30.0, rules=SETTINGS)
        with_car += rule.evaluate(replace(c, texts=reading))
    assert not any(boxes_match(e.box, plate) for e in with_car)
    rule = TextRegionRule(SETTINGS, refresh_s=600)
    for i in range(3):
        c = ctx(everywhere, [], dets(size=(1920, 1080)), pts=i * 30.0, rules=SETTINGS)
        without += rule.evaluate(replace(c, texts=reading))
    assert any(boxes_match(e.box, plate) for e in without)  # without the car seen, it would have been one


@pytest.mark.parametrize(
    "text, vehicle, dropped",
    [
        ((0.387, 0.562, 0.426, 0.58), (0.35, 0.42, 0.60, 0.70), True),  # a plate low on a parked car
        ((0.975, 0.366, 0.989, 0.388), (0.70, 0.33, 1.0, 0.55), False),  # poster text high on a "truck" that is the hoarding
        ((0.10, 0.60, 0.12, 0.62), (0.35, 0.42, 0.60, 0.70), False),  # not on the vehicle at all
    ],
)
def test_only_plate_level_text_on_a_vehicle_is_left_out(text, vehicle, dropped) -> None:
    from citypatrol.pipeline.rules.text_region import _on_plate_level

    assert _on_plate_level(text, vehicle) is dropped


POSTED_ADS = CategoryDef(name="posted_ads", code="0201", title="非法小广告", major="宣传广告", zone_kind="hoarding_wall",
                         rule="text_region", dwell_s=60)


def test_a_configured_text_region_category_finds_the_poster_in_its_own_zones(london) -> None:
    """A city's own text category (rule kind text_region) on the real OCR readings of the hoarding."""
    wall = zone("wall", "hoarding_wall", rect(0.64, 0.30, 1.0, 0.60))
    rule = configured_rule(POSTED_ADS, refresh_s=600)
    events = []
    for i, reading in enumerate(london):
        c = ctx(camera(wall, HOARDING), [], dets(size=(1920, 1080)), pts=i * 30.0, rules=SETTINGS, local_time=NOON)
        events += rule.evaluate(replace(c, texts=reading))
    assert events and {(e.category, e.zone_id, e.classes) for e in events} == {("posted_ads", "wall", ("text",))}
    assert any(boxes_match(e.box, TRAIN_POSTER) for e in events) and all(e.pts == 60.0 for e in events)
    assert all("in hoarding_wall zone wall" in e.detail for e in events)
    other = ctx(camera(HOARDING), [], dets(size=(1920, 1080)), pts=60.0, rules=SETTINGS, local_time=NOON)
    assert configured_rule(POSTED_ADS).evaluate(replace(other, texts=london[0])) == []  # no zone of its kind


def test_schedule_reads_a_configured_text_categorys_zones_even_with_the_billboard_text_cue_off() -> None:
    wall = zone("wall", "hoarding_wall", rect(0.64, 0.30, 1.0, 0.60))
    off = Rules(billboard=BillboardSettings(text_cue=False, text_every_s=30))
    assert TextSchedule().due(camera(wall), off, NOON, 0.0) is None
    area = TextSchedule().due(camera(wall), off, NOON, 0.0, ("hoarding_wall",))
    assert area is not None and area[0] < 0.64 < area[2]
