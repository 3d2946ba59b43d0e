"""Fine-tune a YOLO detector for citypatrol's city classes, offline, on whatever device is given.

Nothing here reaches the network: `YOLO_OFFLINE` is set before ultralytics is imported (no
analytics, no hub), AMP is off (its check downloads a model), plots are off (they fetch a font),
and the starting weights come from the asset mirror. Ultralytics writes `labels/*.cache` next to
the dataset's labels; the dataset lives in the git-ignored cache folder, so nothing lands in git.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from .dataset import asset_mirror, build_city_dataset, default_cache_dir  # noqa: E402

log = logging.getLogger(__name__)

BASE_WEIGHTS = "models/yolo11n_coco_recovered.pt"  # relative to the asset mirror


@dataclass
class TrainSettings:
    data: str = "city"  # 'city' (build from the mirror) or a dataset.yaml path
    epochs: int = 10
    imgsz: int = 352
    batch: int = 16
    out: Path = Path("runs/city")
    base: str | None = None  # starting weights; default: the mirror's COCO yolo11n
    device: str = "auto"  # 'auto' = the first CUDA GPU when there is one, else the CPU
    workers: int = 0
    max_train: int | None = None  # only for data='city': cap on training images (time budget)
    max_val: int | None = None  # only for data='city', smoke tests only: cap on validation images
    fraction: float = 1.0  # ultralytics' own dataset fraction (any data)
    seed: int = 0
    patience: int = 100
    lr0: float = 0.01
    val_each_epoch: bool = False  # validating every epoch costs ~15 % of a CPU epoch; the final val always runs
    cache: bool | str = "ram"  # decoded images in RAM (~0.7 GB for the city set at 384 px)
    time_h: float | None = None  # wall-clock budget in hours: ultralytics fits the epochs (and LR schedule) to it
    close_mosaic: int = 3  # last epochs without mosaic; ultralytics' default 10 is most of a short CPU run
    warmup_epochs: float = 3.0  # 1 is enough when starting from a citypatrol city model rather than COCO
    resume: bool = False  # go on from <out>/weights/last.pt (an interrupted or time-limited run)
    threads: int | None = None  # CPU threads for training; default: every core


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' when torch sees a GPU, else 'cpu'; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def resolve_data(data: str, dataset_dir: Path, *, max_train: int | None = None, max_val: int | None = None,
                 seed: int = 0) -> Path:
    """A dataset.yaml: `data` itself, or for 'city' the merged set built (symlinks) into `dataset_dir`."""
    if data == "city":
        return build_city_dataset(dataset_dir, max_train=max_train, max_val=max_val, seed=seed)
    p = Path(data)
    if not p.exists():
        raise FileNotFoundError(f"dataset yaml not found: {p} (or pass --data city to build the city set from the mirror)")
    return p


def resolve_base(base: str | None) -> Path:
    p = Path(base) if base else asset_mirror() / BASE_WEIGHTS
    if not p.exists():
        raise FileNotFoundError(f"starting weights not found: {p}; set CITYPATROL_ASSET_MIRROR or pass --base")
    return p


def use_cpu_threads(threads: int | None) -> int:
    """Let CPU training use every core (or `threads`).

    ultralytics sets torch to `cpu_count - 1` threads when it picks the CPU, which on a 2-core
    machine is one thread: half the machine idles while the data loading also runs in the trainer
    (ultralytics uses no loader workers on the CPU). Its select_device reads this module constant.
    """
    import ultralytics.utils.torch_utils as torch_utils

    n = threads or os.cpu_count() or 1
    torch_utils.NUM_THREADS = n
    return n


def train(s: TrainSettings) -> dict:
    """Train, validate on the held-out split, and write `<out>/best.pt` plus `<out>/train_summary.json`."""
    from ultralytics import YOLO

    log.info("training with %d CPU threads (when on the CPU)", use_cpu_threads(s.threads))

    out = Path(s.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(s.device)
    base = resolve_base(s.base)
    t0 = time.time()
    if s.resume:
        last = out / "weights" / "last.pt"
        if not last.exists():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist (start a run with the same --out first)")
        data_yaml = out / "dataset" / "data.yaml" if s.data == "city" else Path(s.data)
        log.info("resuming %s", last)
        YOLO(str(last)).train(resume=True, device=device)
    else:
        data_yaml = resolve_data(s.data, out / "dataset", max_train=s.max_train, max_val=s.max_val, seed=s.seed)
        YOLO(str(base)).train(
            data=str(data_yaml), epochs=s.epochs, imgsz=s.imgsz, batch=s.batch, device=device,
            workers=s.workers, project=str(out.parent), name=out.name, exist_ok=True,
            amp=False, plots=False, val=s.val_each_epoch, seed=s.seed, deterministic=True,
            patience=s.patience, lr0=s.lr0, fraction=s.fraction, cache=s.cache, verbose=False,
            pretrained=True, close_mosaic=s.close_mosaic, warmup_epochs=s.warmup_epochs,
            **({"time": s.time_h} if s.time_h else {}),
        )
    train_s = time.time() - t0
    weights = out / "weights" / "best.pt"
    if not weights.exists():
        weights = out / "weights" / "last.pt"
    best = out / "best.pt"
    shutil.copy2(weights, best)

    trained = YOLO(str(best))
    metrics = trained.val(data=str(data_yaml), imgsz=s.imgsz, batch=s.batch, device=device, workers=s.workers,
                          plots=False, split="val", project=str(out), name="val", exist_ok=True, verbose=False)
    names = trained.names
    per_class = {}
    for i, c in enumerate(metrics.box.ap_class_index):
        p, r, ap50, ap = metrics.box.class_result(i)
        per_class[names[int(c)]] = {"precision": round(float(p), 4), "recall": round(float(r), 4),
                                    "mAP50": round(float(ap50), 4), "mAP50-95": round(float(ap), 4)}
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "data_yaml": str(data_yaml), "base": str(base),
        "base_sha256": hashlib.sha256(base.read_bytes()).hexdigest(),
        "train_wall_s": round(train_s, 1),
        "metrics": {"precision": round(float(metrics.box.mp), 4), "recall": round(float(metrics.box.mr), 4),
                    "mAP50": round(float(metrics.box.map50), 4), "mAP50-95": round(float(metrics.box.map), 4)},
        "per_class": per_class, "names": names, "weights": str(best),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    log.info("trained %s in %.0f s: mAP50 %.3f", best, train_s, summary["metrics"]["mAP50"])
    return summary


def export_release(weights: Path, dest: Path) -> Path:
    """Strip the optimizer and store fp16 weights (what ultralytics' strip_optimizer does), for git."""
    from ultralytics.utils.torch_utils import strip_optimizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(weights, dest)
    strip_optimizer(str(dest))
    return dest


def default_out() -> Path:
    return default_cache_dir() / "runs" / "city"
