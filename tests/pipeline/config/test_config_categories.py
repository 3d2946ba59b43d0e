"""Configured categories (`categories:`): what a valid one gives, and errors that name the key."""

from __future__ import annotations

import pytest

from citypatrol.pipeline.config.loading import ConfigError, parse_config
from citypatrol.pipeline.config.models import Category, CodeEntry, Config, ConfiguredCategory, ZoneKind, category_of
from citypatrol.pipeline.dispatch.sla import deadline_hours

SHOP_FRONT = """\
categories:
  - name: shop_front_business
    code: "0504"
    title: 店外经营
    major: 街面秩序
    zone_kind: door_front
    rule: scene_change
    min_area: 0.003
"""
ZONE = """\
cameras:
  - id: east
    source: e.mp4
    zones:
      - {id: doors, kind: %s, polygon: [[0, 0.5], [1, 0.5], [1, 1]]}
      - {id: road, kind: no_parking, polygon: [[0, 0], [1, 0], [1, 0.5]]}
"""


def test_a_category_joins_the_codes_and_its_zone_kind_is_usable() -> None:
    cfg = parse_config(SHOP_FRONT + ZONE % "door_front" + "sla: {deadline_hours: {shop_front_business: 3}}\n")
    assert cfg.codes["shop_front_business"] == CodeEntry(code="0504", name="店外经营", major="街面秩序")
    assert cfg.codes[Category.billboard].code == "0202"  # the built-ins keep theirs
    doors, road = cfg.cameras[0].zones
    assert doors.kind == "door_front" and road.kind is ZoneKind.no_parking
    assert cfg.category("shop_front_business").min_area == 0.003 and cfg.category("billboard") is None
    assert deadline_hours(cfg.sla, "shop_front_business") == 3
    assert Config.model_validate(cfg.model_dump()).codes == cfg.codes  # a dumped config reads back


def test_a_configured_category_has_no_deadline_unless_given() -> None:
    cfg = parse_config(SHOP_FRONT)
    assert deadline_hours(cfg.sla, "shop_front_business") is None
    assert deadline_hours(cfg.sla, Category.illegal_parking) == 2


def test_category_of_keeps_built_ins_and_names_the_rest() -> None:
    assert category_of("billboard") is Category.billboard
    c = category_of("shop_front_business")
    assert isinstance(c, ConfiguredCategory) and c == "shop_front_business" and c.value == "shop_front_business"
    assert {c: 1}["shop_front_business"] == 1  # hashes as its name: dict keys and filters work


CATEGORY = "categories:\n  - {name: %s, code: '1', title: t, zone_kind: %s, rule: %s%s}\n"


@pytest.mark.parametrize(
    "text, path, words",
    [
        (CATEGORY % ("piles", "pavement", "piling", ""), "categories[0].rule",
         "'stationary_object', 'cue_cluster', 'scene_change' or 'text_region'"),
        (CATEGORY % ("piles", "pavement", "stationary_object", ""), "categories[0]",
         "classes: a stationary_object category needs the detector classes it watches"),
        (CATEGORY % ("piles", "pavement", "cue_cluster", ", classes: []"), "categories[0]", "classes: a cue_cluster category"),
        (CATEGORY % ("billboard", "pavement", "scene_change", ""), "categories[0]", "'billboard' is a built-in category"),
        (CATEGORY % ("Piles", "pavement", "scene_change", ""), "categories[0].name", "pattern"),
        (CATEGORY % ("piles", "approved_ad", "scene_change", ""), "categories[0]", "zone_kind approved_ad"),
        (CATEGORY % ("piles", "pavement", "text_region", ", min_area: 0.1"), "categories[0]",
         "min_area: applies to rule scene_change, not text_region"),
        (CATEGORY % ("piles", "pavement", "scene_change", ", colour: red"), "categories[0].colour", "unknown key"),
        (SHOP_FRONT + "  - {name: shop_front_business, code: '2', title: t, zone_kind: walls, rule: text_region}\n", "",
         "categories.1.name: 'shop_front_business' appears twice"),
        (SHOP_FRONT + ZONE % "doorway", "cameras[0].zones[0].kind",
         "kind 'doorway' is neither a built-in zone kind (no_parking, no_vending, bin_area, ad_area, approved_ad) "
         "nor the zone_kind of a category"),
        (ZONE % "door_front", "cameras[0].zones[0].kind", "nor the zone_kind of a category"),
        ("sla: {deadline_hours: {shopfront: 2}}\n", "", "sla.deadline_hours: unknown category 'shopfront'"),
        ("review: {overrides: [{category: shopfront, auto_submit: false}]}\n", "", "review.overrides.0.category: unknown category"),
        (SHOP_FRONT + "codes: {shop_front_business: {code: '9', name: x}}\n", "",
         "codes: 'shop_front_business' is a configured category; give its code in its `categories` entry"),
    ],
)
def test_errors_name_the_key(text, path, words) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "city.yaml")
    issues = exc.value.issues
    assert any(i.path == path and words in i.message for i in issues), [(i.path, i.message) for i in issues]
