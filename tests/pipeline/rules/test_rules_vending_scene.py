"""Street vending without a vendor class: a new object at rest in a no-vending zone with people at it.

The logic on a textured pavement with a pitch set up on it (tables of small synthetic inputs);
the negatives on real footage with the real detector: the pedestrian street's walkers (a crowd,
nothing new under them) and the parking lot's parked cars with nobody at them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.config.models import Category, Config, Rules, VendingSettings, ZoneKind
from citypatrol.pipeline.rules import VendingSceneRule
from citypatrol.pipeline.rules.vending_scene import new_objects
from tests.fixtures_logic import camera, ctx, dets, rect, zone
from tests.footage import PARKED_CARS, PARKING, frame_at

H, W = 240, 320
PAVEMENT = zone("pavement", ZoneKind.no_vending, rect(0.0, 0.3, 1.0, 1.0), name="人行道")
SETTINGS = Rules(street_vending=VendingSettings(dwell_s=60, people_share=0.5))
STALL = (0.3, 0.5, 0.5, 0.75)  # normalised box of the pitch in the synthetic frames


def pavement() -> np.ndarray:
    rng = np.random.default_rng(7)
    base = rng.integers(90, 160, size=(H // 8, W // 8), dtype=np.uint8)
    img = np.kron(base, np.ones((8, 8), dtype=np.uint8))
    return np.dstack([img, img, img]).astype(np.uint8)


def with_stall(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    x0, y0, x1, y1 = int(STALL[0] * W), int(STALL[1] * H), int(STALL[2] * W), int(STALL[3] * H)
    out[y0:y1, x0:x1] = (30, 60, 200)  # a red cart
    return out


def person(x: float, y: float = 0.8):
    """A person box (pixels of a 1000×1000 detection frame) standing with feet at (x, y)."""
    return ("person", (x * 1000 - 20, y * 1000 - 150, x * 1000 + 20, y * 1000))


def run(images, people, *, settings=SETTINGS, cam=None, step=10.0):
    cam = cam or camera(PAVEMENT)
    rule = VendingSceneRule(settings, refresh_s=600)
    events = []
    for i, (img, ppl) in enumerate(zip(images, people)):
        c = ctx(cam, [], dets(*ppl), pts=i * step, rules=settings, image=img, reference=pavement())
        events += rule.evaluate(c)
    return events


@pytest.mark.parametrize(
    "stall, people, expected",
    [
        (True, lambda i: [person(0.55)], 1),  # a cart appears and a seller stands at it: a pitch
        (True, lambda i: [], 0),  # a parked cart without anybody at it
        (True, lambda i: [person(0.55)] if i % 4 == 0 else [], 0),  # people at it in 25 % of frames only
        (False, lambda i: [person(0.2), person(0.45), person(0.6), person(0.8)], 0),  # a crowd, nothing new
        (True, lambda i: [person(0.95, 0.5)], 0),  # somebody far from it
    ],
)
def test_new_object_with_people_at_it(stall, people, expected) -> None:
    base = pavement()
    images = [with_stall(base) if stall else base for _ in range(8)]
    events = run(images, [people(i) for i in range(8)])
    assert len(events) == expected
    for e in events:
        assert e.category is Category.street_vending and e.zone_id == "pavement" and e.classes == ("scene_change",)
        assert e.pts == 60.0 and e.box[0] == pytest.approx(STALL[0], abs=0.03) and e.box[3] == pytest.approx(STALL[3], abs=0.03)


def test_furniture_in_the_reference_is_not_new() -> None:
    """Café tables and benches are in the reference picture: people sitting at them are not vending."""
    furnished = with_stall(pavement())
    rule = VendingSceneRule(SETTINGS, refresh_s=600)
    evs = []
    for i in range(8):
        evs += rule.evaluate(ctx(camera(PAVEMENT), [], dets(person(0.55)), pts=i * 10.0, rules=SETTINGS,
                                 image=furnished, reference=furnished))
    assert evs == []


def test_no_reference_or_switched_off_is_nothing() -> None:
    img = with_stall(pavement())
    rule = VendingSceneRule(SETTINGS)
    assert rule.evaluate(ctx(camera(PAVEMENT), [], dets(person(0.55)), pts=0.0, rules=SETTINGS, image=img)) == []
    off = Rules(street_vending=VendingSettings(dwell_s=0, scene_change=False))
    assert run([img] * 3, [[person(0.55)]] * 3, settings=off) == []


# -- real footage -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


def test_walkers_on_the_pedestrian_street_are_not_vending(detector, sample_video) -> None:
    """A crowd: the street's reference is the median of its frames (the walkers gone), the frames have walkers."""
    path = sample_video("pedestrian")
    frames = [frame_at(path, t) for t in np.arange(0.0, 3.8, 0.25)]
    reference = np.median(np.stack(frames), axis=0).astype(np.uint8)
    street = zone("street", ZoneKind.no_vending, [[0.0, 0.35], [0.55, 0.08], [0.95, 0.08], [0.95, 1.0], [0.0, 1.0]])
    # the whole clip as the dwell: a pram pushed slowly past is "at rest" over a second or two
    settings = Rules(street_vending=VendingSettings(dwell_s=3.0))
    rule = VendingSceneRule(settings, refresh_s=600)
    evs = []
    for i, img in enumerate(frames[::2]):
        d = detector.detect([img])[0]
        assert (d.class_name == "person").sum() >= 5  # there are people
        evs += rule.evaluate(ctx(camera(street), [], d, pts=i * 0.5, rules=settings, image=img, reference=reference))
    assert evs == []


def test_parked_cars_with_nobody_at_them_are_not_vending(detector, assets) -> None:
    """The parking lot's empty frame as reference, the frame with cars in the bays held for the dwell."""
    empty, parked = frame_at(assets / PARKING, 0.0), frame_at(assets / PARKING, 4.0)
    bays = zone("bays", ZoneKind.no_vending, rect(0.5, 0.5, 0.8, 0.8))
    found = new_objects(parked, empty, bays, [])
    assert any(b[0] <= PARKED_CARS[0][0] + 0.02 and b[2] >= PARKED_CARS[0][2] - 0.02 for b in found)  # the cars are new
    d = detector.detect([parked])[0]
    rule = VendingSceneRule(SETTINGS, refresh_s=600)
    evs = []
    for i in range(8):
        evs += rule.evaluate(replace(ctx(camera(bays), [], d, pts=i * 10.0, rules=SETTINGS), image=parked, reference=empty))
    assert evs == []
