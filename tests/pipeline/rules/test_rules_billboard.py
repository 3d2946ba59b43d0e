"""Unauthorized billboards: the detector cue and the scene-change cue against a reference image."""

from __future__ import annotations

import numpy as np
import pytest

from citypatrol.pipeline.config.models import BillboardSettings, Category, Rules, ZoneKind
from citypatrol.pipeline.rules import BillboardRule, SceneChangeRule
from citypatrol.pipeline.rules.scene_change import change_mask
from tests.fixtures_logic import cadence, camera, ctx, dets, rect, simulate, zone

SETTINGS = Rules(billboard=BillboardSettings(dwell_s=60))
BOARD = ("billboard", (100, 100, 300, 250))  # centre (0.2, 0.175)
APPROVED = zone("mall_ads", ZoneKind.approved_ad, rect(0.05, 0.05, 0.35, 0.3))
WALL = zone("wall", ZoneKind.ad_area, rect(0.0, 0.0, 0.5, 0.4), name="北墙")
OTHER_WALL = zone("other", ZoneKind.ad_area, rect(0.6, 0.0, 1.0, 0.4))


def run(cam, *items, stop=70.0):
    frames = [(t, dets(*items)) for t in cadence(0, stop)]
    return simulate(cam, frames, [BillboardRule(refresh_s=600)], settings=SETTINGS).events


@pytest.mark.parametrize(
    "zones, expected",
    [
        ((), [None]),  # no register: any persistent billboard is reported
        ((APPROVED,), []),  # inside an approved_ad zone
        ((WALL,), ["wall"]),
        ((OTHER_WALL,), []),  # ad areas exist, but the board is on none of them
        ((APPROVED, WALL), []),
    ],
)
def test_billboard_against_register(zones, expected) -> None:
    evs = run(camera(*zones), BOARD)
    assert [e.zone_id for e in evs] == expected
    assert all(e.category is Category.billboard and e.pts == 60.0 for e in evs)


def test_approved_zone_is_tested_at_box_centre() -> None:
    # bottom edge inside the approved zone, centre above it: still unauthorized
    approved_low = zone("low", ZoneKind.approved_ad, rect(0.0, 0.22, 0.5, 0.4))
    assert [e.zone_id for e in run(camera(approved_low), BOARD)] == [None]


def test_short_lived_billboard_is_nothing() -> None:
    assert run(camera(), BOARD, stop=60.0) == []  # last frame at 58 s


# -- scene change ------------------------------------------------------------------------------

H, W = 240, 320
AD = zone("ad", ZoneKind.ad_area, rect(0.0, 0.0, 0.5, 0.5), name="桥墩")  # x 0..160, y 0..120
SCENE = Rules(billboard=BillboardSettings(dwell_s=60, scene_change_threshold=0.35))


def reference() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.integers(60, 200, size=(H // 8, W // 8), dtype=np.uint8)  # a textured wall
    img = np.kron(base, np.ones((8, 8), dtype=np.uint8))
    return np.dstack([img, img, img]).astype(np.uint8)


def noisy(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + rng.integers(-4, 5, size=img.shape), 0, 255).astype(np.uint8)


def pasted(img: np.ndarray, x0=20, y0=20, x1=130, y1=100, value=(40, 200, 230)) -> np.ndarray:
    out = img.copy()
    out[y0:y1, x0:x1] = value  # a new board covering ~46 % of the ad area
    return out


def relit(img: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def scene_run(images, cam=None, rule=None):
    rule = rule or SceneChangeRule(refresh_s=600)
    ref = reference()
    cam = cam or camera(AD)
    evs = []
    for i, img in enumerate(images):
        pts = 2.0 * i
        evs += rule.evaluate(ctx(cam, [], dets(size=(W, H)), pts=pts, rules=SCENE, image=img, reference=ref))
    return rule, evs


def test_pasted_rectangle_fires_after_dwell() -> None:
    ref = reference()
    rule, evs = scene_run([noisy(pasted(ref), i) for i in range(40)])  # 0..78 s
    assert [(e.pts, e.since_pts, e.zone_id) for e in evs] == [(60.0, 0.0, "ad")]
    e = evs[0]
    assert e.category is Category.billboard and e.classes == ("scene_change",)
    assert 0.35 <= e.score <= 0.7
    # box around the pasted rectangle (x 20..130, y 20..100 of 320×240), within a few pixels
    assert e.box == pytest.approx((20 / W, 20 / H, 130 / W, 100 / H), abs=0.04)
    assert "桥墩" in e.detail
    assert rule.state("cam1", "ad").since == 0.0


@pytest.mark.parametrize("gain, offset", [(0.55, 0.0), (1.3, 10.0), (0.8, -20.0)])
def test_lighting_change_only_is_nothing(gain: float, offset: float) -> None:
    ref = reference()
    rule, evs = scene_run([noisy(relit(ref, gain, offset), i) for i in range(40)])
    assert evs == []
    assert rule.state("cam1", "ad").share < 0.05


def test_flat_board_on_flat_wall_is_seen() -> None:
    wall = np.full((H, W), 120, np.uint8)
    board = wall.copy()
    board[20:100, 20:130] = 180
    mask = np.zeros((H, W), bool)
    mask[:120, :160] = True
    share = change_mask(board, wall, mask).sum() / mask.sum()
    assert share > 0.35
    assert change_mask(noisy(np.dstack([wall] * 3), 1), np.dstack([wall] * 3), mask).sum() == 0


def test_transient_object_does_not_last_the_dwell() -> None:
    ref = reference()
    images = [noisy(pasted(ref), i) if 5 <= i < 15 else noisy(ref, i) for i in range(60)]  # a van for 20 s
    rule, evs = scene_run(images)
    assert evs == []
    assert rule.state("cam1", "ad").since is None


def test_change_outside_ad_area_is_nothing() -> None:
    ref = reference()
    _, evs = scene_run([noisy(pasted(ref, 180, 140, 300, 230), i) for i in range(40)])
    assert evs == []


def test_change_in_approved_part_of_ad_area_is_ignored() -> None:
    ref = reference()
    approved = zone("ok", ZoneKind.approved_ad, rect(0.0, 0.0, 0.5, 0.5))
    _, evs = scene_run([noisy(pasted(ref), i) for i in range(40)], cam=camera(AD, approved))
    assert evs == []


def test_short_dip_keeps_dwell() -> None:
    ref = reference()
    images = [noisy(ref if i in (10, 11) else pasted(ref), i) for i in range(40)]  # 4 s dip at 20..22 s
    _, evs = scene_run(images)
    assert [(e.pts, e.since_pts) for e in evs] == [(60.0, 0.0)]


def test_reference_of_another_size_is_resized() -> None:
    import cv2

    ref = reference()
    big_ref = cv2.resize(ref, (W * 2, H * 2), interpolation=cv2.INTER_NEAREST)
    rule = SceneChangeRule(refresh_s=600)
    evs = []
    for i in range(35):
        evs += rule.evaluate(ctx(camera(AD), [], dets(size=(W, H)), pts=2.0 * i, rules=SCENE,
                                 image=noisy(pasted(ref), i), reference=big_ref))
    assert [e.pts for e in evs] == [60.0]


def test_without_image_or_reference_nothing_happens() -> None:
    rule = SceneChangeRule()
    assert rule.evaluate(ctx(camera(AD), [], pts=100.0, rules=SCENE)) == []
