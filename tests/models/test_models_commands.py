"""`citypatrol models list | verify | export` through the real CLI app."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citypatrol.pipeline.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["models", *args], env={"COLUMNS": "200"})


def test_list_shows_each_model_and_where_it_resolves(assets: Path) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for name in ("yolo11n-coco-openvino-int8", "yolo11n-coco"):
        assert name in result.output
    assert result.output.count("mirror") >= 2


def test_verify_passes_on_the_mirror(assets: Path) -> None:
    result = run("verify")
    assert result.exit_code == 0, result.output
    # every model in the registry: the mirror's COCO models and citypatrol's own city model
    assert result.output.count("✓") == 3
    assert "✓ citypatrol-city:" in result.output and "models/weights/citypatrol-city-v2.pt" in result.output


def test_verify_fails_on_a_corrupt_copy_and_names_both_hashes(assets: Path, tmp_path: Path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(assets / "models" / "yolo11n_int8_openvino_model", mirror / "models" / "yolo11n_int8_openvino_model")
    xml = mirror / "models" / "yolo11n_int8_openvino_model" / "yolo11n.xml"
    xml.chmod(0o644)
    xml.write_text(xml.read_text().replace("<net", "<net tampered='1'", 1))
    monkeypatch.setenv("CITYPATROL_ASSET_MIRROR", str(mirror))
    monkeypatch.setenv("CITYPATROL_CACHE", str(tmp_path / "cache"))
    result = run("verify", "yolo11n-coco-openvino-int8")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "yolo11n.xml" in out and "6cf2d7fccde468c306b4a42e7458f554e11924b03d39e836f0350c7ee9b9c9ff" in out
    assert run("verify", "no-such-model").exit_code == 2


def test_export_to_openvino_then_detect_with_it(assets: Path, tmp_path: Path, sample_video) -> None:
    import av

    from citypatrol.models.detector import Detector
    from citypatrol.pipeline.config.models import DetectorConfig

    result = run("export", "yolo11n-coco", "--format", "openvino", "--imgsz", "320", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "yolo11n_coco_recovered_openvino_model"
    assert sorted(p.suffix for p in folder.iterdir()) == [".bin", ".xml", ".yaml"]
    with av.open(str(sample_video("intersection"))) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    detector = Detector(DetectorConfig(name="ov", weights=str(folder), imgsz=320, batch=2))
    a, b = detector.detect([frame, frame])
    assert "car" in set(a.class_name) and len(a) == len(b)


@pytest.mark.parametrize("weights", ["yolo11n-coco-openvino-int8", "missing.pt"])
def test_export_refuses_what_is_not_a_pt_file(assets: Path, tmp_path: Path, weights: str) -> None:
    result = run("export", weights, "--format", "onnx", "--out", str(tmp_path))
    assert result.exit_code == 1 and ".pt" in result.output


def test_calibration_frames_come_from_each_readable_camera(tmp_path: Path, sample_video) -> None:
    """Frames of the configured cameras for an INT8 calibration: a recording gives its frames, a
    camera whose footage is gone is named and skipped (test_models_detector quantizes on such frames);
    an INT8 export without frames to calibrate on is refused, saying so."""
    config = tmp_path / "city.yaml"
    config.write_text(
        "cameras:\n"
        f"  - {{id: street, source: '{sample_video('intersection')}'}}\n"
        f"  - {{id: gone, source: '{tmp_path / 'nowhere.mp4'}'}}\n"
        f"  - {{id: shops, source: '{sample_video('pedestrian')}'}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "frames"
    result = runner.invoke(app, ["models", "calibration-frames", "--config", str(config), "--out", str(out),
                                 "--per-camera", "10", "--every-s", "0.5"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert len([n for n in names if n.startswith("street_")]) == 10  # 30 s of footage: 10 frames 0.5 s apart
    assert 6 <= len([n for n in names if n.startswith("shops_")]) <= 8  # 3.8 s of footage
    assert not any(n.startswith("gone_") for n in names)
    assert "gone" in result.output and "nowhere.mp4" in result.output
    assert "calibration" in result.output
    thin = run("export", "yolo11n-coco", "--format", "openvino-int8", "--out", str(tmp_path / "int8b"))
    assert thin.exit_code == 1 and "calibrate on" in thin.output
