"""Export a trained `.pt` detector to ONNX or OpenVINO, into a folder of the caller's choosing.

Exports are made with ultralytics' exporter, offline (no hub, no auto-install: ONNX graphs are not
run through onnxslim, which is not a dependency). They are dynamic by default — any batch size and
input size at run time — so a detector can batch images from several cameras. INT8 quantization
(which needs NNCF and calibration images) is not offered here.
"""

from __future__ import annotations

import shutil
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
