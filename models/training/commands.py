"""`citypatrol train …`: build the city dataset and fine-tune a detector, offline."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

def train_cmd(
    data: str = typer.Option("city", help="'city' = build the merged set from the asset mirror; or a dataset.yaml."),
    epochs: int = typer.Option(10, min=1, help="Epochs (an upper bound when --time-h is given)."),
    imgsz: int = typer.Option(384, min=32, help="Training image size in pixels (multiple of 32)."),
    out: Optional[Path] = typer.Option(None, help="Run folder; with --data city the dataset is built into <out>/dataset (default: runs/city in the user cache, ~/.cache/citypatrol on Linux)."),
    batch: int = typer.Option(16, min=1),
    base: Optional[str] = typer.Option(None, help="Starting weights (default: the mirror's COCO yolo11n)."),
    device: str = typer.Option("auto", help="'auto' (a CUDA GPU when present, else the CPU), 'cpu' or 'cuda:0' …"),
    workers: int = typer.Option(0, min=0, help="Dataloader worker processes (0 on a shared 2-core machine)."),
    max_train: Optional[int] = typer.Option(None, help="With --data city: cap on training images (time budget)."),
    max_val: Optional[int] = typer.Option(None, help="With --data city: cap on validation images (smoke tests only)."),
    fraction: float = typer.Option(1.0, min=0.0, max=1.0, help="Fraction of the training images ultralytics uses."),
    time_h: Optional[float] = typer.Option(None, help="Wall-clock budget in hours; ultralytics fits epochs to it."),
    cache: str = typer.Option("ram", help="'ram', 'disk' or 'none': where decoded images are cached."),
    seed: int = typer.Option(0),
    build_only: bool = typer.Option(False, help="Only build the dataset (with --data city) and print its data.yaml."),
    warmup_epochs: float = typer.Option(3.0, min=0.0, help="Warm-up epochs (1 is enough when --base is a city model)."),
    resume: bool = typer.Option(False, help="Go on from <out>/weights/last.pt: a run stopped by --time-h or killed continues where it was."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for training (default: every core)."),
) -> None:
    """Fine-tune the city-problem detector (garbage_bin, garbage_overflow, garbage_pile, billboard, street_vendor).

    Trains on the CPU or a GPU, offline; writes <out>/best.pt and <out>/train_summary.json (held-out metrics).
    """
    from .train import TrainSettings, default_out, resolve_data, train

    out = out or default_out()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if build_only:
        typer.echo(str(resolve_data(data, out / "dataset", max_train=max_train, max_val=max_val, seed=seed)))
        return
    settings = TrainSettings(
        data=data, epochs=epochs, imgsz=imgsz, batch=batch, out=out, base=base, device=device,
        workers=workers, max_train=max_train, max_val=max_val, fraction=fraction, seed=seed, time_h=time_h,
        cache=False if cache == "none" else cache, warmup_epochs=warmup_epochs, resume=resume,
        threads=threads,
    )
    summary = train(settings)
    typer.echo(json.dumps({k: summary[k] for k in ("weights", "train_wall_s", "metrics", "per_class")}, indent=1))


if __name__ == "__main__":  # python -m citypatrol.models.training.commands --help
    typer.run(train_cmd)
