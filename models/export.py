"""Export a trained `.pt` detector to ONNX or OpenVINO, into a folder of the caller's choosing.

Exports are made with ultralytics' exporter, offline (no hub, no auto-install: ONNX graphs are not
run through onnxslim, which is not a dependency). They are dynamic by default — any batch size and
input size at run time — so a detector can batch images from several cameras. INT8 quantization
(which needs NNCF and calibration images) is not offered here.
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


class ExportError(RuntimeError):
    """An export failed; the message names the weights and the cause."""


def export_weights(
    weights: Path,
    fmt: ExportFormat | str,
    out_dir: Path,
    imgsz: int = 640,
    dynamic: bool = True,
) -> Path:
    """Export `weights` (.pt) to `fmt` in `out_dir`; returns the .onnx file or the *_openvino_model folder."""
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
        kwargs = {"simplify": False} if fmt is ExportFormat.onnx else {}
        result = model.export(format=fmt.value, imgsz=imgsz, dynamic=dynamic, batch=1, device="cpu", **kwargs)
    except Exception as exc:  # the exporter raises many kinds; name the file and the cause
        raise ExportError(f"export of {weights} to {fmt} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if made_link:
            staged.unlink(missing_ok=True)
    return Path(str(result))


def cached_export(weights: Path, fmt: ExportFormat | str, imgsz: int) -> Path:
    """The dynamic `fmt` export of `weights`, built on first use into the user cache and reused after.

    Keyed by the weights' sha256, so a new release gets a new export; built in a temporary folder
    and renamed into place, so two processes starting at once never load a half-written export.
    """
    from citypatrol.models.assets import cache_dir, sha256_file

    fmt = ExportFormat(fmt)
    weights = Path(weights).expanduser().resolve()
    home = cache_dir() / "exports" / f"{weights.stem}-{sha256_file(weights)[:16]}-{fmt.value}"
    done = home / "ready"
    if done.is_file():
        return home / done.read_text().strip()
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
    try:
        made = export_weights(weights, fmt, tmp, imgsz=imgsz, dynamic=True)
        (tmp / "ready").write_text(made.relative_to(tmp).as_posix())
        try:
            tmp.rename(home)
        except OSError:  # another process got there first: use its export
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return home / done.read_text().strip()
