"""Detectors: images from many cameras in, canonical `Detections` out, one per image.

One class over every backend: ultralytics' own loader (`YOLO(path, task="detect")`) picks it from
the weights' format — PyTorch for `.pt`, ONNX Runtime for `.onnx`, OpenVINO for an
`*_openvino_model/` folder, TensorRT for `.engine` (only where a CUDA GPU is present). Its
pre-processing (letterbox) and post-processing (NMS) are the reference ones the models were
trained and exported with, and on CPU they cost little next to the forward pass.

Batching: `detect` groups the images by shape and runs groups in calls of at most `cfg.batch`
images. Same-shape groups keep ultralytics' tight (rectangular) letterbox, so a frame gives the
same detections whatever other cameras share its batch; fixed-shape exports (batch 1) are split
by ultralytics itself. Calls are serialised by a lock: one detector is shared by all reader threads.

`load_detectors` builds one detector per configured model and merges their detections per image.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from citypatrol.models.assets import AssetError, resolve_asset, sha256_file
from citypatrol.models.detections import Detections
from citypatrol.models.labelmaps import COCO_NAMES, build_label_map, get_label_map, identity_map
from citypatrol.models.registry import ModelEntry, WeightsFormat, format_of, load_registry
from citypatrol.pipeline.config.models import DetectorConfig, ModelsConfig

log = logging.getLogger(__name__)


class DetectorError(RuntimeError):
    """A detector cannot be built: weights missing, corrupt, unsupported here, or a bad class setting."""


def _short_hash(path: Path) -> str:
    """A version for weights given by path: the start of the sha256 of the file (or the folder's graph)."""
    main = next(iter(sorted(path.glob("*.xml"))), None) if path.is_dir() else path
    return sha256_file(main)[:12] if main is not None and main.is_file() else "unknown"


class Detector:
    """One model. `detect(images)` → one `Detections` per image, in canonical class names."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        entry = self._registry_entry(cfg.weights)
        try:
            self.weights = resolve_asset(entry) if entry else Path(cfg.weights).expanduser()
        except AssetError as exc:
            raise DetectorError(f"detector {cfg.name!r}: {exc}") from None
        if not self.weights.exists():
            raise DetectorError(
                f"detector {cfg.name!r}: weights {self.weights} not found (and {cfg.weights!r} is not a registry "
                "name; see `citypatrol models list`)"
            )
        try:
            self.format = entry.format if entry else format_of(self.weights)
        except ValueError as exc:
            raise DetectorError(f"detector {cfg.name!r}: {exc}") from None
        self.version = entry.version if entry else _short_hash(self.weights)
        self.model_name = entry.name if entry else self.weights.name
        if cfg.export != "none" and self.format is WeightsFormat.pt:
            self.weights, self.format = self._exported(cfg.export)
        self.imgsz = entry.imgsz if entry and not entry.dynamic else cfg.imgsz
        self.fixed_size = bool(entry and not entry.dynamic)  # an export whose input size cannot change
        self._size_warned: set[int] = set()
        if entry and not entry.dynamic and cfg.imgsz != entry.imgsz:
            log.warning("detector %r: %s is a fixed-shape export; it runs at %d, not imgsz %d",
                        cfg.name, entry.name, entry.imgsz, cfg.imgsz)
        self._lock = threading.Lock()
        self._model = self._load()
        labels: dict[int, str] = dict(self._model.names)
        self._labels = labels
        self._label_map = self._build_label_map(entry, labels)
        self._keep_ids = [i for i, label in labels.items() if self._label_map.get(label)]
        if not self._keep_ids:
            raise DetectorError(f"detector {cfg.name!r}: no label of {self.model_name} is kept (classes {cfg.classes})")
        self.classes: frozenset[str] = frozenset(self._label_map[labels[i]] for i in self._keep_ids)
        unknown = sorted(set(cfg.class_conf) - self.classes)
        if unknown:
            raise DetectorError(f"detector {cfg.name!r}: class_conf names {unknown}, which {self.model_name} does not "
                                f"emit (it emits {sorted(self.classes)})")

    @property
    def ref(self) -> str:
        """model@version, the provenance string put on detections."""
        return f"{self.model_name}@{self.version}"

    @staticmethod
    def _registry_entry(weights: str) -> ModelEntry | None:
        registry = load_registry()
        return registry.get(weights) if weights in registry else None

    def _exported(self, fmt: str) -> tuple[Path, WeightsFormat]:
        from citypatrol.models.export import ExportError, cached_export

        try:
            calibration = Path(self.cfg.calibration).expanduser() if self.cfg.calibration else None
            path = cached_export(self.weights, fmt, self.cfg.imgsz, calibration)
        except ExportError as exc:
            raise DetectorError(f"detector {self.name!r}: {exc}") from None
        log.info("detector %r: %s runs as its %s export %s", self.name, self.model_name, fmt, path)
        return path, format_of(path)

    def _load(self):
        """Load through ultralytics and run one blank image, so a bad file fails here, named, not mid-stream."""
        if self.format is WeightsFormat.engine:
            import torch

            if not torch.cuda.is_available() or not self.cfg.device.startswith("cuda"):
                raise DetectorError(
                    f"detector {self.name!r}: {self.weights} is a TensorRT engine; it needs a CUDA GPU and "
                    f"device 'cuda' (device is {self.cfg.device!r}, CUDA available: {torch.cuda.is_available()})"
                )
        from ultralytics import YOLO

        try:
            model = YOLO(str(self.weights), task="detect")
            blank = np.full((self.imgsz, self.imgsz, 3), 114, dtype=np.uint8)
            model.predict([blank], **self._predict_args(classes=None))
        except Exception as exc:  # ultralytics raises many kinds; the operator needs the file and the cause
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DetectorError(
                f"detector {self.name!r}: cannot load {self.format} weights {self.weights}: "
                f"{type(exc).__name__}: {cause[:300]} (file corrupt, truncated or not a YOLO detection model?)"
            ) from None
        return model

    def _build_label_map(self, entry: ModelEntry | None, labels: dict[int, str]) -> dict[str, str]:
        if entry:
            base = get_label_map(entry.label_map)
        elif set(labels.values()) == set(COCO_NAMES):
            base = get_label_map("coco")
        else:  # a model of our own: its labels are canonical names
            base = identity_map(list(labels.values()))
        unknown = sorted(set(self.cfg.label_map) - set(labels.values()))
        if unknown:
            raise DetectorError(f"detector {self.name!r}: label_map keys {unknown} are not labels of {self.model_name}")
        label_map = build_label_map(base, self.cfg.label_map)
        if self.cfg.classes:
            emitted = set(label_map.values())
            missing = sorted(set(self.cfg.classes) - emitted)
            if missing:
                raise DetectorError(
                    f"detector {self.name!r}: classes {missing} are never emitted by {self.model_name} "
                    f"(it emits {sorted(emitted)})"
                )
            label_map = {k: v for k, v in label_map.items() if v in self.cfg.classes}
        return label_map

    def _predict_args(self, classes: list[int] | None, imgsz: int | None = None) -> dict:
        return dict(
            imgsz=imgsz or self.imgsz, conf=min([self.cfg.conf, *self.cfg.class_conf.values()]), iou=self.cfg.iou,
            device=self.cfg.device,
            classes=classes, verbose=False,
        )  # fmt: skip

    def detect(self, images: Sequence[np.ndarray], sizes: Sequence[int | None] | None = None) -> list[Detections]:
        """Detections for each BGR uint8 image (H, W, 3), in input order; `sizes`: each image's model
        input size (a camera's `detector.imgsz`; None = this detector's), ignored by fixed-shape exports."""
        for i, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                got = getattr(image, "shape", type(image).__name__), getattr(image, "dtype", "")
                raise ValueError(f"image {i}: expected a BGR uint8 array of shape (H, W, 3), got {got}")
        groups: dict[tuple[tuple[int, ...], int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            size = (sizes[i] if sizes is not None else None) or self.imgsz
            if self.fixed_size and size != self.imgsz:
                if size not in self._size_warned:
                    self._size_warned.add(size)
                    log.warning("detector %r: %s is a fixed-shape export; a camera's imgsz %d is not used (it runs at %d)",
                                self.name, self.model_name, size, self.imgsz)
                size = self.imgsz
            groups[(image.shape, size)].append(i)
        out: list[Detections | None] = [None] * len(images)
        with self._lock:
            for (_, imgsz), indices in groups.items():
                args = self._predict_args(self._keep_ids, imgsz)
                for start in range(0, len(indices), self.cfg.batch):
                    chunk = indices[start : start + self.cfg.batch]
                    results = self._model.predict([images[i] for i in chunk], **args)
                    for i, result in zip(chunk, results, strict=True):
                        out[i] = self._to_detections(result, images[i])
        return out  # type: ignore[return-value]

    def _to_detections(self, result, image: np.ndarray) -> Detections:
        size = (image.shape[1], image.shape[0])
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty(size, self.ref)
        ids = boxes.cls.cpu().numpy().astype(int)
        raw = np.array([self._labels[i] for i in ids], dtype=object)
        canonical = np.array([self._label_map.get(label, "") for label in raw], dtype=object)
        conf = boxes.conf.cpu().numpy().astype(np.float32)
        floor = np.array([self.cfg.class_conf.get(c, self.cfg.conf) for c in canonical], dtype=np.float32)
        keep = (canonical != "") & (conf >= floor)
        return Detections(
            xyxy=boxes.xyxy.cpu().numpy().astype(np.float32)[keep],
            confidence=conf[keep],
            class_name=canonical[keep],
            image_size=size,
            model=self.ref,
            data={"label": raw[keep], "model": np.full(int(keep.sum()), self.ref, dtype=object)},
        )


class MultiDetector:
    """Several detectors run on the same images; their detections are merged per image."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise DetectorError("no detectors configured")
        self.detectors = list(detectors)
        self.name = "+".join(d.name for d in self.detectors)
        self.version = "+".join(d.ref for d in self.detectors)
        self.classes: frozenset[str] = frozenset().union(*(d.classes for d in self.detectors))

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        per_model = [d.detect(images) for d in self.detectors]
        return [Detections.merge(list(parts)) for parts in zip(*per_model, strict=True)]


def load_detectors(models_cfg: ModelsConfig) -> MultiDetector:
    """Build every configured detector (each loads and warms up once)."""
    return MultiDetector([Detector(cfg) for cfg in models_cfg.detectors])
