"""Configured categories' rules (`categories:` in the config): built per rule kind, and each kind
finding its problem in the category's own zones, classes and dwell, on synthetic frames at 2 s cadence."""

from __future__ import annotations

import pytest

from citypatrol.pipeline.config.models import CategoryDef, ConfiguredCategory
from citypatrol.pipeline.rules import Rule, build_rules
from citypatrol.pipeline.rules.configured import (
    ConfiguredClusterRule,
    ConfiguredSceneRule,
    ConfiguredStationaryRule,
    ConfiguredTextRule,
    configured_rule,
)
from tests.fixtures_logic import cadence, camera, dets, rect, simulate, zone

PILING = CategoryDef(name="material_piling", code="0507", title="乱堆物料", zone_kind="pavement",
                     rule="stationary_object", classes=["garbage_pile", "goods"], dwell_s=120)
DISPLAY = CategoryDef(name="goods_display", code="0504", title="店外经营", zone_kind="door_front",
                      rule="cue_cluster", classes=["goods", "table"], min_cues=2, min_people=1, dwell_s=60)
SHOP_FRONT = CategoryDef(name="shop_front_business", code="0504", title="店外经营", zone_kind="door_front", rule="scene_change")
POSTERS = CategoryDef(name="wall_posters", code="0201", title="非法小广告", zone_kind="wall", rule="text_region")
CAM = camera(zone("pave", "pavement", rect(0.0, 0.5, 0.5, 1.0), name="西侧人行道"),
             zone("door", "door_front", rect(0.5, 0.5, 1.0, 1.0)), zone("np", "no_parking", rect(0.0, 0.0, 1.0, 0.5)))


@pytest.mark.parametrize("category, cls", [(PILING, ConfiguredStationaryRule), (DISPLAY, ConfiguredClusterRule),
                                           (SHOP_FRONT, ConfiguredSceneRule), (POSTERS, ConfiguredTextRule)])
def test_one_rule_per_kind(category, cls) -> None:
    rule = configured_rule(category)
    assert isinstance(rule, cls) and isinstance(rule, Rule)
    assert rule.name == category.name and rule.categories == (category.name,)
    assert isinstance(rule.category, ConfiguredCategory) and rule.category.value == category.name


@pytest.mark.parametrize(
    "classes, off",
    [
        ({"person", "goods", "table", "garbage_pile"}, {}),
        ({"person"}, {"material_piling": "the model offers none of the classes ['garbage_pile', 'goods']",
                      "goods_display": "the model offers none of the classes ['goods', 'table']"}),
        ({"goods", "table"}, {"goods_display": "no 'person' class", "shop_front_business": "no 'person' class"}),
    ],
)
def test_a_category_no_model_can_see_is_off_with_a_reason(classes, off) -> None:
    configured = {c.name for c in (PILING, DISPLAY, SHOP_FRONT, POSTERS)}
    on, disabled = build_rules(classes, categories=[PILING, DISPLAY, SHOP_FRONT, POSTERS])
    reasons = {r.name: why for r, why in disabled if r.name in configured}
    assert set(reasons) == set(off)
    for name, words in off.items():
        assert reasons[name].startswith(f"{name}: ") and words in reasons[name]
    assert {r.name for r in on} & configured == configured - set(off)


def test_a_disabled_category_is_off() -> None:
    _, disabled = build_rules({"garbage_pile"}, categories=[PILING.model_copy(update={"enabled": False})])
    assert [why for r, why in disabled if r.name == "material_piling"] == ["material_piling: turned off (categories: material_piling: enabled: false)"]


def test_pile_at_rest_in_its_zone_is_one_case_of_the_category() -> None:
    frames = [(t, dets(("garbage_pile", (100, 600, 300, 800)))) for t in cadence(0, 300)]
    run = simulate(CAM, frames, [configured_rule(PILING)])
    assert run.events and run.events[0].pts == 120.0 and run.events[0].since_pts == 0.0
    assert {e.category for e in run.events} == {"material_piling"} and {e.zone_id for e in run.events} == {"pave"}
    assert run.events[0].detail == "garbage_pile stationary 120 s in pavement zone 西侧人行道"
    assert run.kinds()[0] == "opened" and len({c.case.case_id for c in run.changes}) == 1


@pytest.mark.parametrize(
    "item, why",
    [
        (("garbage_pile", (100, 100, 300, 300)), "in a zone of another kind"),
        (("car", (100, 600, 300, 800)), "a class the category does not watch"),
        (("garbage_pile", (100, 600, 300, 800), 0.2), "below min_score"),
    ],
)
def test_no_case_outside_the_category(item, why) -> None:
    run = simulate(CAM, [(t, dets(item)) for t in cadence(0, 300)], [configured_rule(PILING)])
    assert run.events == [], why


def test_a_moving_pile_never_dwells() -> None:
    frames = [(t, dets(("goods", (50 + 2 * i * 10, 600, 150 + 2 * i * 10, 700)))) for i, t in enumerate(cadence(0, 40))]
    assert simulate(CAM, frames, [configured_rule(PILING)]).events == []


@pytest.mark.parametrize("people, expected", [(1, True), (0, False)])
def test_cue_cluster_needs_its_people(people, expected) -> None:
    items = [("goods", (600, 700, 680, 780)), ("table", (690, 700, 780, 790))]
    items += [("person", (700, 600, 760, 800))] * people
    run = simulate(CAM, [(t, dets(*items)) for t in cadence(0, 120)], [configured_rule(DISPLAY)])
    assert bool(run.events) is expected
    if expected:
        e = run.events[0]
        assert e.category == "goods_display" and e.zone_id == "door" and e.pts == 60.0 and set(e.classes) == {"goods", "table"}
