"""Detectors on real frames: OpenVINO INT8, PyTorch and an ONNX export of the .pt; batching; bad weights."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from citypatrol.models.detections import Detections
from citypatrol.models.detector import Detector, DetectorError, MultiDetector, load_detectors
from citypatrol.models.export import ExportError, export_weights
from citypatrol.pipeline.config.models import DetectorConfig, ModelsConfig

pytestmark = pytest.mark.slow


def decode(path: Path, indices: list[int]) -> list[np.ndarray]:
    """The frames at these indices (decode order), as BGR arrays."""
    wanted, out = set(indices), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="bgr24")
            if i >= max(indices):
                break
    return [out[i] for i in indices]


@pytest.fixture(scope="module")
def london(sample_video) -> list[np.ndarray]:
    """Two frames of the London street: parked cars at the kerb, pedestrians on the pavement."""
    return decode(sample_video("london"), [30, 60])


@pytest.fixture(scope="module")
def intersection(sample_video) -> np.ndarray:
    return decode(sample_video("intersection"), [0])[0]


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return np.full((720, 1280, 3), 128, dtype=np.uint8)


@pytest.fixture(scope="module")
def openvino(assets) -> Detector:
    return Detector(DetectorConfig(name="coco", weights="yolo11n-coco-openvino-int8"))


@pytest.fixture(scope="module")
def pytorch(assets) -> Detector:
    return Detector(DetectorConfig(name="coco-pt", weights="yolo11n-coco", batch=2))


def counts(d: Detections) -> dict[str, int]:
    names, n = np.unique(d.class_name.astype(str), return_counts=True)
    return dict(zip(names.tolist(), n.tolist()))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_same(a: Detections, b: Detections, conf: float) -> None:
    """Every box of one has a same-class twin in the other (IoU ≥ 0.9, confidence ± 0.03); only boxes
    right at the confidence threshold may appear in one and not the other."""
    assert a.image_size == b.image_size
    for x, y in ((a, b), (b, a)):
        for box, score, name in zip(x.xyxy, x.confidence, x.class_name):
            twins = [j for j in range(len(y)) if y.class_name[j] == name and iou(box, y.xyxy[j]) >= 0.9]
            if not twins:
                assert score < conf + 0.03, f"{name} {score:.2f} at {box} has no twin"
                continue
            assert min(abs(score - y.confidence[j]) for j in twins) <= 0.03


@pytest.mark.parametrize("backend", ["openvino", "pytorch"])
def test_finds_parked_cars_and_pedestrians_on_a_london_frame(backend: str, request, london) -> None:
    detector: Detector = request.getfixturevalue(backend)
    [d] = detector.detect([london[0]])
    found = counts(d)
    assert found.get("car", 0) >= 3 and found.get("person", 0) >= 3, found
    assert set(found) <= detector.classes
    assert not {"handbag", "traffic light", "dining table"} & set(found)  # raw COCO names never leak
    assert d.image_size == (1920, 1080)
    assert d.model == detector.ref and set(d.data["model"]) == {detector.ref}
    assert (d.xyxy[:, 2] > d.xyxy[:, 0]).all() and (d.xyxy[:, 2] <= 1920).all() and (d.xyxy[:, 3] <= 1080).all()
    assert (d.confidence >= detector.cfg.conf).all()


@pytest.mark.parametrize("backend", ["openvino", "pytorch"])
def test_a_uniform_grey_image_gives_nothing(backend: str, request, grey) -> None:
    detector: Detector = request.getfixturevalue(backend)
    [d] = detector.detect([grey])
    assert len(d) == 0 and d.image_size == (1280, 720)


@pytest.mark.parametrize("backend", ["openvino", "pytorch"])
def test_a_batch_across_cameras_equals_one_by_one(backend: str, request, london, intersection) -> None:
    detector: Detector = request.getfixturevalue(backend)
    images = [london[0], intersection, london[1]]
    batched = detector.detect(images)
    single = [detector.detect([image])[0] for image in images]
    assert [d.image_size for d in batched] == [(1920, 1080), (640, 480), (1920, 1080)]
    for b, s in zip(batched, single):
        assert_same(b, s, detector.cfg.conf)
    assert counts(batched[1]) != counts(batched[0])  # the results are not shuffled between cameras
    assert detector.detect([]) == []


def test_a_camera_input_size_runs_its_frames_at_that_size(assets, pytorch, openvino) -> None:
    """A far PKLot row: at 1280 px the .pt model sees what a detector built for 1280 sees, in a batch
    mixed with frames at its own 640; a fixed-shape OpenVINO export keeps its size."""
    still = assets / "sequences/pklot_ufpr05_polo/labelled/sequence1/frames/2013-02-22_07_05_01.png"
    image = cv2.imread(str(still))
    at_1280 = Detector(DetectorConfig(name="coco-1280", weights="yolo11n-coco", imgsz=1280)).detect([image])[0]
    mixed = pytorch.detect([image, image], [None, 1280])
    assert_same(mixed[1], at_1280, pytorch.cfg.conf)
    assert_same(mixed[0], pytorch.detect([image])[0], pytorch.cfg.conf)
    assert counts(mixed[0]) != counts(mixed[1])  # the sizes are not mixed up
    assert_same(openvino.detect([image], [1280])[0], openvino.detect([image])[0], openvino.cfg.conf)


def test_classes_and_label_map_settings_apply(assets, london) -> None:
    only_cars = Detector(DetectorConfig(name="c", weights="yolo11n-coco", classes=["car", "motorcycle"]))
    assert only_cars.classes == {"car", "motorcycle"}
    [d] = only_cars.detect([london[0]])
    assert set(d.class_name) == {"car", "motorcycle"}
    renamed = Detector(DetectorConfig(name="r", weights="yolo11n-coco", label_map={"car": "vehicle", "person": ""}))
    [d] = renamed.detect([london[0]])
    assert "vehicle" in set(d.class_name) and not {"car", "person"} & set(d.class_name)
    assert set(d.data["label"][d.class_name == "vehicle"]) == {"car"}


def test_bad_class_settings_are_named(assets) -> None:
    with pytest.raises(DetectorError, match="garbage_bin"):
        Detector(DetectorConfig(name="c", weights="yolo11n-coco", classes=["garbage_bin"]))
    with pytest.raises(DetectorError, match="cra"):
        Detector(DetectorConfig(name="c", weights="yolo11n-coco", label_map={"cra": "car"}))


def test_multi_detector_merges_per_image(openvino, pytorch, london, grey) -> None:
    multi = MultiDetector([openvino, pytorch])
    assert multi.classes == openvino.classes | pytorch.classes
    merged, empty = multi.detect([london[0], grey])
    assert len(merged) == len(openvino.detect([london[0]])[0]) + len(pytorch.detect([london[0]])[0])
    assert set(merged.data["model"]) == {openvino.ref, pytorch.ref}
    assert len(empty) == 0
    found = openvino.detect([london[0]])[0]
    one_empty = Detections.merge([found, Detections.empty(found.image_size, pytorch.ref)])  # a model that saw nothing
    assert list(one_empty.data["model"]) == [openvino.ref] * len(found) and len(one_empty.data["label"]) == len(found)
    default = load_detectors(ModelsConfig())
    assert [d.model_name for d in default.detectors] == ["yolo11n-coco-openvino-int8", "citypatrol-city"]  # COCO beside the city model


def test_onnx_export_of_the_pt_detects_cars(assets, tmp_path: Path, london) -> None:
    pt = assets / "models" / "yolo11n_coco_recovered.pt"
    onnx = export_weights(pt, "onnx", tmp_path / "export", imgsz=320)
    assert onnx == tmp_path / "export" / "yolo11n_coco_recovered.onnx" and onnx.is_file()
    assert sorted(p.name for p in onnx.parent.iterdir()) == [onnx.name]  # no leftover link to the .pt
    detector = Detector(DetectorConfig(name="onnx", weights=str(onnx), imgsz=320, batch=2))
    assert detector.format == "onnx" and "car" in detector.classes  # COCO labels → the COCO map
    first, second = detector.detect(london)  # a dynamic export takes a batch of 2
    assert counts(first).get("car", 0) >= 2 and counts(second).get("car", 0) >= 2
    with pytest.raises(ExportError, match="already exists"):
        (tmp_path / "export" / "yolo11n_coco_recovered.pt").write_bytes(b"x")
        export_weights(pt, "onnx", tmp_path / "export", imgsz=320)


def test_class_conf_sets_a_threshold_per_class(assets, london, pytorch) -> None:
    """A stricter threshold for one class drops only that class's weaker boxes; a looser one adds some."""
    (base,) = pytorch.detect([london[0]])
    strict = Detector(DetectorConfig(name="coco-pt", weights="yolo11n-coco", class_conf={"car": 0.8}))
    (got,) = strict.detect([london[0]])
    cars = base.confidence[base.class_name == "car"]
    assert counts(got).get("car", 0) == int((cars >= 0.8).sum()) < len(cars)
    assert {k: v for k, v in counts(got).items() if k != "car"} == {k: v for k, v in counts(base).items() if k != "car"}
    loose = Detector(DetectorConfig(name="coco-pt", weights="yolo11n-coco", class_conf={"person": 0.05}))
    (more,) = loose.detect([london[0]])
    assert counts(more).get("person", 0) > counts(base).get("person", 0) and counts(more).get("car") == counts(base).get("car")
    with pytest.raises(DetectorError, match=r"class_conf names \['giraffe'\]"):
        Detector(DetectorConfig(name="coco-pt", weights="yolo11n-coco", class_conf={"giraffe": 0.5}))


def test_pt_runs_through_its_openvino_export_built_once(assets, tmp_path: Path, london, monkeypatch) -> None:
    """`export: openvino` builds a dynamic export into the cache on first use and reuses it after;
    it finds what the .pt finds, at the detector's size and at a camera's own size."""
    monkeypatch.setenv("CITYPATROL_CACHE", str(tmp_path / "cache"))
    cfg = DetectorConfig(name="coco-pt", weights="yolo11n-coco", imgsz=320, batch=2)
    reference = Detector(cfg)
    exported = Detector(cfg.model_copy(update={"export": "openvino"}))
    assert exported.format == "openvino" and exported.weights.is_relative_to(tmp_path / "cache" / "exports")
    assert exported.ref == reference.ref  # same weights, same provenance
    for size in (None, 480):
        ref = reference.detect(london, [size, size])
        got = exported.detect(london, [size, size])
        for r, g in zip(ref, got):
            assert counts(g) == counts(r)
            assert np.abs(np.sort(g.confidence) - np.sort(r.confidence)).max() < 0.02
    made = sorted((tmp_path / "cache" / "exports").iterdir())
    again = Detector(cfg.model_copy(update={"export": "openvino"}))
    assert again.weights == exported.weights and sorted((tmp_path / "cache" / "exports").iterdir()) == made


def test_pt_runs_quantized_to_int8_calibrated_on_camera_frames(assets, sample_video, tmp_path: Path, london, monkeypatch) -> None:
    """`export: openvino-int8` quantizes the .pt on first use, calibrated on frames of the cameras
    (here 20 of the sample street clips); it finds what the .pt finds on a frame it was not
    calibrated on, and a missing or thin calibration folder is refused, named."""
    monkeypatch.setenv("CITYPATROL_CACHE", str(tmp_path / "cache"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("intersection", "pedestrian"):
        for i, image in enumerate(decode(sample_video(name), list(range(0, 91, 9)))[:10]):
            cv2.imwrite(str(frames / f"{name}_{i}.jpg"), image)
    cfg = DetectorConfig(name="coco-pt", weights="yolo11n-coco", imgsz=320, batch=2)
    reference = Detector(cfg)
    quantized = Detector(cfg.model_copy(update={"export": "openvino-int8", "calibration": str(frames)}))
    assert quantized.format == "openvino" and "int8" in quantized.weights.name
    assert not any(p.suffix == ".cache" for p in frames.parent.iterdir())  # nothing written beside the user's frames
    for r, q in zip(reference.detect(london), quantized.detect(london)):
        assert counts(q).get("car", 0) >= 2
        matched = sum(any(iou(b, c) >= 0.5 for c in q.xyxy) for b in r.xyxy[r.confidence >= 0.4])
        assert matched >= 0.8 * int((r.confidence >= 0.4).sum())  # the confident boxes are found again
    with pytest.raises(DetectorError, match="does not exist"):
        Detector(cfg.model_copy(update={"export": "openvino-int8", "calibration": str(tmp_path / "none")}))
    thin = tmp_path / "thin"
    thin.mkdir()
    cv2.imwrite(str(thin / "one.jpg"), london[0])
    with pytest.raises(DetectorError, match="holds 1 pictures"):
        Detector(cfg.model_copy(update={"export": "openvino-int8", "calibration": str(thin)}))


@pytest.mark.parametrize("name", ["broken.pt", "broken.onnx", "broken_openvino_model"])
def test_corrupt_weights_fail_at_load_naming_the_file(assets, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    real = (assets / "models" / "yolo11n_coco_recovered.pt").read_bytes()
    if name.endswith("_openvino_model"):
        path.mkdir()
        (path / "broken.xml").write_text("<net><layers>")
        (path / "broken.bin").write_bytes(b"\0" * 64)
    else:
        path.write_bytes(real[: len(real) // 3])  # a truncated copy
    with pytest.raises(DetectorError) as exc:
        Detector(DetectorConfig(name="bad", weights=str(path)))
    assert str(path) in str(exc.value)


def test_missing_weights_and_engine_without_gpu_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="not found"):
        Detector(DetectorConfig(name="m", weights=str(tmp_path / "nope.pt")))
    engine = tmp_path / "city.engine"
    engine.write_bytes(b"\0" * 16)
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the engine load path needs a real engine file")
    with pytest.raises(DetectorError, match="CUDA GPU"):
        Detector(DetectorConfig(name="trt", weights=str(engine)))
