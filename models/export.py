"""Export a trained `.pt` detector to ONNX or OpenVINO, into a folder of the caller's choosing.

Exports are made with ultralytics' exporter, offline (no hub, no auto-install: ONNX graphs are not
run through onnxslim, which is not a dependency). They are dynamic by default — any batch size and
input size at run time — so a detector can batch images from several cameras.

`openvino-int8` is the OpenVINO export quantized to INT8 by NNCF's post-training quantization,
calibrated on a folder of pictures the caller names (frames from the cameras it will watch: the
quantization ranges come from them). Dynamic like the others, so a 16:9 frame is letterboxed to
640×384 rather than padded to 640×640: on a 2-core CPU the COCO model took 40 ms of CPU per
1280×720 frame this way against 54 ms as the fixed 640×640 INT8 export (benchmarks/RESULTS.md).
Building it takes about a minute on such a CPU.
"""

from __future__ import annotations

import shutil
import tempfile
from enum import StrEnum
from pathlib import Path

import citypatrol.models  # noqa: F401  (sets ultralytics offline before it is imported)


class ExportFormat(StrEnum):
    onnx = "onnx"
    openvino = "openvino"
    openvino_int8 = "openvino-int8"


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MIN_CALIBRATION_IMAGES = 16


class ExportError(RuntimeError):
    """An export failed; the message names the weights and the cause."""


def export_weights(
    weights: Path,
    fmt: ExportFormat | str,
    out_dir: Path,
    imgsz: int = 640,
    dynamic: bool = True,
    calibration: Path | None = None,
) -> Path:
    """Export `weights` (.pt) to `fmt` in `out_dir`; returns the .onnx file or the *_openvino_model folder.
    `calibration`: the folder of pictures INT8 quantization is calibrated on (`openvino-int8` only)."""
    fmt = ExportFormat(fmt)
    weights = Path(weights).expanduser().resolve()
    if not weights.is_file() or weights.suffix != ".pt":
        raise ExportError(f"cannot export {weights}: expected an existing .pt file")
    if imgsz % 32 or imgsz < 32:
        raise ExportError(f"cannot export {weights}: imgsz {imgsz} must be a positive multiple of 32")
    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # ultralytics writes the export beside the checkpoint, so export from a link to it placed in out_dir.
    staged = out_dir / weights.name
    made_link = False
    if staged != weights:
        if staged.exists() or staged.is_symlink():
            raise ExportError(f"cannot export into {out_dir}: {staged.name} already exists there")
        try:
            staged.symlink_to(weights)
        except OSError:
            shutil.copy2(weights, staged)
        made_link = True
    try:
        from ultralytics import YOLO

        model = YOLO(str(staged), task="detect")
        kwargs: dict = {"simplify": False} if fmt is ExportFormat.onnx else {}
        if fmt is ExportFormat.openvino_int8:
            kwargs = {"int8": True, "data": str(_calibration_dataset(weights, calibration, out_dir, dict(model.names)))}
        result = model.export(format=fmt.value.removesuffix("-int8"), imgsz=imgsz, dynamic=dynamic, batch=1, device="cpu", **kwargs)
    except ExportError:
        raise
    except Exception as exc:  # the exporter raises many kinds; name the file and the cause
        raise ExportError(f"export of {weights} to {fmt} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if made_link:
            staged.unlink(missing_ok=True)
    return Path(str(result))


def _calibration_dataset(weights: Path, calibration: Path | None, out_dir: Path, names: dict[int, str]) -> Path:
    """The dataset file ultralytics' INT8 export reads: the calibration pictures as its validation set."""
    where = f"cannot quantize {weights.name} to INT8"
    if calibration is None:
        raise ExportError(f"{where}: name a folder of pictures from your cameras to calibrate on (detector calibration)")
    folder = Path(calibration).expanduser().resolve()
    if not folder.is_dir():
        raise ExportError(f"{where}: calibration folder {folder} does not exist")
    pictures = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if len(pictures) < MIN_CALIBRATION_IMAGES:
        raise ExportError(f"{where}: {folder} holds {len(pictures)} pictures (.jpg/.png); at least "
                          f"{MIN_CALIBRATION_IMAGES} are needed, 100–300 are better")
    try:
        import nncf  # noqa: F401
    except ImportError:
        raise ExportError(f"{where}: NNCF is not installed (pip install nncf)") from None
    import yaml

    # linked into the export's own folder: the exporter writes its label cache beside the pictures
    staged = out_dir / "calibration" / "images"
    staged.mkdir(parents=True)
    for f in pictures:
        (staged / f.name).symlink_to(f)
    data = out_dir / "calibration.yaml"
    data.write_text(yaml.safe_dump({"path": str(staged.parent), "train": "images", "val": "images", "names": names}, allow_unicode=True))
    return data


def calibration_key(calibration: Path | None) -> str:
    """What identifies a calibration set: its pictures' names and sizes (a new set, a new export)."""
    import hashlib

    if calibration is None or not Path(calibration).is_dir():
        return "none"
    files = sorted(f for f in Path(calibration).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    listing = "\n".join(f"{f.name}:{f.stat().st_size}" for f in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:8]


def cached_export(weights: Path, fmt: ExportFormat | str, imgsz: int, calibration: Path | None = None) -> Path:
    """The dynamic `fmt` export of `weights`, built on first use into the user cache and reused after.

    Keyed by the weights' sha256 (and, for INT8, the calibration set), so a new release gets a new
    export; built in a temporary folder and renamed into place, so two processes starting at once
    never load a half-written export.
    """
    from citypatrol.models.assets import cache_dir, sha256_file

    fmt = ExportFormat(fmt)
    weights = Path(weights).expanduser().resolve()
    key = f"{weights.stem}-{sha256_file(weights)[:16]}-{fmt.value}"
    if fmt is ExportFormat.openvino_int8:
        key += f"-{calibration_key(calibration)}"
    home = cache_dir() / "exports" / key
    done = home / "ready"
    if done.is_file():
        return home / done.read_text().strip()
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
    try:
        made = export_weights(weights, fmt, tmp, imgsz=imgsz, dynamic=True, calibration=calibration)
        (tmp / "ready").write_text(made.relative_to(tmp).as_posix())
        try:
            tmp.rename(home)
        except OSError:  # another process got there first: use its export
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return home / done.read_text().strip()
