"""The model registry: the detectors citypatrol knows, read from `registry.yaml` beside this file.

Each entry is an asset (path, sha256 per file, source, licence — resolved by `assets.resolve_asset`)
plus what a detector needs to use it: format, version, input size, label map and the canonical
classes it can emit. Entries with `in_repo: true` are small models of our own kept under
`models/weights/`; their `path` is relative to this package folder instead of the asset mirror.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from citypatrol.models.assets import AssetEntry

if TYPE_CHECKING:
    from citypatrol.pipeline.config.models import DetectorConfig

PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = PACKAGE_DIR / "registry.yaml"


class WeightsFormat(StrEnum):
    """How a weights file is run: it decides the backend."""

    pt = "pt"  # ultralytics PyTorch checkpoint
    onnx = "onnx"  # ONNX Runtime
    openvino = "openvino"  # an *_openvino_model/ folder (xml + bin + metadata.yaml)
    engine = "engine"  # TensorRT engine, GPU only


def format_of(path: Path) -> WeightsFormat:
    """The format of a weights path, from its name (as ultralytics decides it)."""
    name = path.name.lower()
    if name.endswith(".pt"):
        return WeightsFormat.pt
    if name.endswith(".onnx"):
        return WeightsFormat.onnx
    if name.endswith(".engine"):
        return WeightsFormat.engine
    if name.endswith("_openvino_model") or name.endswith(".xml") or (path.is_dir() and any(path.glob("*.xml"))):
        return WeightsFormat.openvino
    raise ValueError(f"{path}: unknown weights format (expected .pt, .onnx, .engine or an *_openvino_model folder)")


class RegistryError(ValueError):
    """registry.yaml is invalid or a name is not in it."""


class ModelEntry(AssetEntry):
    """One known model: an asset plus how to run it."""

    version: str = Field(min_length=1, description="Model version, recorded with every detection.")
    format: WeightsFormat
    imgsz: int = Field(640, ge=32, le=4096, multiple_of=32, description="Size it was trained/exported at.")
    dynamic: bool = Field(True, description="False for fixed-shape exports, which always run at imgsz and batch 1.")
    label_map: str = Field(min_length=1, description="Name of its label map in labelmaps.py.")
    classes: list[str] = Field(min_length=1, description="Canonical classes it can emit through that map.")
    source: str = Field("", description="Where it comes from, in words.")
    in_repo: bool = Field(False, description="Shipped in the repository under models/ (path relative to the package).")

    @model_validator(mode="after")
    def _format_matches_path(self) -> "ModelEntry":
        if format_of(Path(self.path)) is not self.format:
            raise ValueError(f"model {self.name!r}: path {self.path!r} does not look like format {self.format}")
        return self

    @property
    def ref(self) -> str:
        """name@version, the provenance string put on detections."""
        return f"{self.name}@{self.version}"


class Registry:
    """Registry entries by name."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries: dict[str, ModelEntry] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise RegistryError(f"model {entry.name!r} is listed twice")
            self._entries[entry.name] = entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> ModelEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(f"unknown model {name!r}; known: {', '.join(self._entries) or '(none)'}") from None


def detector_classes(detectors: Iterable[DetectorConfig], registry: Registry | None = None) -> frozenset[str] | None:
    """The canonical classes the configured detectors can emit, as the registry lists them (before a
    model is loaded), narrowed by each detector's `classes`; None if a detector's weights are not a
    registry name (its classes are known only once it is loaded)."""
    registry = registry or load_registry()
    out: set[str] = set()
    for d in detectors:
        if d.weights not in registry:
            return None
        emits = set(registry.get(d.weights).classes)
        out |= emits & set(d.classes) if d.classes else emits
    return frozenset(out)


def parse_registry(text: str, source: str = "registry.yaml") -> Registry:
    """Build a Registry from YAML text; errors name the entry and the key."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise RegistryError(f"{source}: expected a mapping with a 'models' list")
    entries = []
    for i, raw in enumerate(data.get("models", [])):
        where = f"{source}: models[{i}]" + (f" ({raw.get('name')})" if isinstance(raw, dict) and raw.get("name") else "")
        if not isinstance(raw, dict):
            raise RegistryError(f"{where}: expected a mapping")
        try:
            entry = ModelEntry.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(entry)'}: {e['msg']}" for e in exc.errors())
            raise RegistryError(f"{where}: {problems}") from None
        if entry.in_repo:
            entry = entry.model_copy(update={"local_root": PACKAGE_DIR})
        entries.append(entry)
    return Registry(entries)


@lru_cache(maxsize=1)
def load_registry() -> Registry:
    """The registry shipped with citypatrol (read once per process)."""
    return parse_registry(REGISTRY_FILE.read_text(encoding="utf-8"), source=str(REGISTRY_FILE))
