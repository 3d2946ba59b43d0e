"""The model registry: the shipped file loads, each entry resolves to files matching its sha256."""

from __future__ import annotations

from pathlib import Path

import pytest

from citypatrol.models.assets import AssetError, resolve_asset
from citypatrol.models.labelmaps import build_label_map, get_label_map
from citypatrol.models.registry import PACKAGE_DIR, RegistryError, WeightsFormat, format_of, load_registry, parse_registry


def test_registry_has_the_default_and_the_trainable_model() -> None:
    registry = load_registry()
    assert "yolo11n-coco-openvino-int8" in registry and "yolo11n-coco" in registry
    assert registry.get("yolo11n-coco-openvino-int8").format is WeightsFormat.openvino
    assert registry.get("yolo11n-coco").format is WeightsFormat.pt


def test_default_detector_weights_name_a_registry_entry() -> None:
    from citypatrol.pipeline.config.models import ModelsConfig

    for det in ModelsConfig().detectors:
        assert det.weights in load_registry()


@pytest.mark.parametrize("entry", list(load_registry()), ids=lambda e: e.name)
def test_each_entry_resolves_and_its_classes_match_its_label_map(entry, assets: Path) -> None:
    path = resolve_asset(entry)
    assert path.exists() and format_of(path) is entry.format
    assert set(entry.classes) == set(build_label_map(get_label_map(entry.label_map)).values())
    assert entry.licence and entry.source


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(RegistryError, match="yolo11n-coco"):
        load_registry().get("yolo99")
    with pytest.raises(AssetError, match="yolo99"):  # through the resolver it is an asset error
        resolve_asset("yolo99")


ENTRY = """
models:
  - name: city-v1
    version: "1"
    format: pt
    path: weights/city_v1.pt
    sha256: %s
    label_map: coco
    classes: [car]
    in_repo: true
"""


def test_in_repo_entries_resolve_relative_to_the_package() -> None:
    entry = parse_registry(ENTRY % ("a" * 64)).get("city-v1")
    assert entry.local_root == PACKAGE_DIR
    with pytest.raises(AssetError, match="weights/city_v1.pt"):
        resolve_asset(entry, download=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ENTRY % "xyz", "models\\[0\\] \\(city-v1\\): sha256"),
        (ENTRY.replace("format: pt", "format: onnx") % ("a" * 64), "does not look like format onnx"),
        (ENTRY.replace("version: \"1\"", "versoin: \"1\"") % ("a" * 64), "versoin"),
        ((ENTRY % ("a" * 64)) + (ENTRY % ("a" * 64)).replace("models:\n", ""), "listed twice"),
    ],
)
def test_bad_registry_text_names_entry_and_key(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_registry(text)
