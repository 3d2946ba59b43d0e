"""build_rules: which rules can run with the model's classes, and why the others cannot."""

from __future__ import annotations

import pytest

from citypatrol.pipeline.config.models import BillboardSettings, ParkingSettings, Rules
from citypatrol.pipeline.rules import Rule, build_rules

COCO = {"person", "car", "truck", "bus", "bicycle", "motorcycle", "umbrella", "dining table", "chair"}
CITY = {"stall", "garbage_bin", "garbage_overflow", "garbage_pile", "billboard", "vehicle"}


def names(rules) -> list[str]:
    return [r.name for r in rules]


@pytest.mark.parametrize(
    "classes, active, off",
    [
        (COCO, ["illegal_parking", "street_vending", "vending_scene", "scene_change", "text_region", "panel_region"], ["garbage", "billboard"]),
        (CITY, ["illegal_parking", "street_vending", "garbage", "billboard", "scene_change", "text_region", "panel_region"], ["vending_scene"]),
        (COCO | CITY, ["illegal_parking", "street_vending", "vending_scene", "garbage", "billboard", "scene_change", "text_region", "panel_region"], []),
        ({"person"}, ["vending_scene", "scene_change", "text_region", "panel_region"], ["illegal_parking", "street_vending", "garbage", "billboard"]),
        ({"umbrella", "chair"}, ["scene_change", "text_region", "panel_region"], ["illegal_parking", "street_vending", "vending_scene", "garbage", "billboard"]),  # cues but no people
        (set(), ["scene_change", "text_region", "panel_region"], ["illegal_parking", "street_vending", "vending_scene", "garbage", "billboard"]),
    ],
)
def test_rules_split_by_model_classes(classes, active, off) -> None:
    on, disabled = build_rules(classes)
    assert names(on) == active
    assert names(r for r, _ in disabled) == off
    assert all(isinstance(r, Rule) for r in on)
    for rule, reason in disabled:
        assert reason.startswith(rule.name + ":") and "class" in reason


def test_reason_names_the_missing_classes() -> None:
    _, disabled = build_rules(COCO)
    reasons = dict((r.name, why) for r, why in disabled)
    assert "garbage_overflow" in reasons["garbage"] and "garbage_pile" in reasons["garbage"]
    assert "'billboard'" in reasons["billboard"]


def test_configured_classes_decide() -> None:
    only_nonmotor = Rules(illegal_parking=ParkingSettings(classes=[], nonmotor_classes=["bicycle"]))
    on, _ = build_rules({"bicycle"}, only_nonmotor)
    assert "illegal_parking" in names(on)
    no_scene = Rules(billboard=BillboardSettings(scene_change=False))
    _, disabled = build_rules(COCO, no_scene)
    assert "scene_change" in names(r for r, _ in disabled)
    _, disabled = build_rules(COCO, Rules(billboard=BillboardSettings(text_cue=False)))
    assert "text_region" in names(r for r, _ in disabled)


def test_rules_declare_categories_and_classes() -> None:
    on, _ = build_rules(COCO | CITY)
    by = {r.name: r for r in on}
    assert [c.value for c in by["illegal_parking"].categories] == ["illegal_parking", "nonmotor_parking"]
    assert [c.value for c in by["garbage"].categories] == ["garbage_overflow", "exposed_garbage"]
    assert "car" in by["illegal_parking"].required_classes
    assert by["scene_change"].required_classes == frozenset()
