"""Label maps: COCO labels to canonical classes, overrides, and what is dropped."""

from __future__ import annotations

import pytest

from citypatrol.models.labelmaps import (
    COCO,
    COCO_NAMES,
    LabelMapError,
    build_label_map,
    get_label_map,
    map_labels,
)


@pytest.mark.parametrize(
    ("label", "canonical"),
    [
        ("car", "car"),
        ("truck", "truck"),
        ("bus", "bus"),
        ("motorcycle", "motorcycle"),
        ("bicycle", "bicycle"),
        ("person", "person"),
        ("umbrella", "umbrella"),
        ("dining table", "table"),
        ("chair", "chair"),
        ("bench", "bench"),
        ("suitcase", "goods"),
        ("handbag", ""),  # carried by passers-by: not a vending cue
        ("backpack", ""),
        ("giraffe", ""),
        ("toothbrush", ""),
        ("billboard", ""),  # not a COCO label at all
    ],
)
def test_coco_map(label: str, canonical: str) -> None:
    names, keep = map_labels([label], get_label_map("coco"))
    assert names[0] == canonical
    assert keep[0] == bool(canonical)


def test_every_coco_map_key_is_a_coco_label() -> None:
    assert set(COCO) <= set(COCO_NAMES) and len(COCO_NAMES) == 80


@pytest.mark.parametrize(
    ("overrides", "label", "canonical"),
    [
        ({"handbag": "goods"}, "handbag", "goods"),  # a deployment that wants bags as goods
        ({"dining table": "stall"}, "dining table", "stall"),  # remap
        ({"bench": ""}, "bench", ""),  # '' drops a label the base keeps
        ({}, "bench", "bench"),
    ],
)
def test_overrides(overrides: dict[str, str], label: str, canonical: str) -> None:
    label_map = build_label_map(get_label_map("coco"), overrides)
    names, keep = map_labels([label, "car"], label_map)
    assert list(names) == [canonical, "car"] and list(keep) == [bool(canonical), True]


def test_get_label_map_returns_a_copy_and_names_unknown_maps() -> None:
    m = get_label_map("coco")
    m["car"] = "boat"
    assert get_label_map("coco")["car"] == "car"
    with pytest.raises(LabelMapError, match="coco"):
        get_label_map("city-v9")
