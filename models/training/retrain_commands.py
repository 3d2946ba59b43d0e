"""`citypatrol dataset export` and `citypatrol verifier train|measure`: the retraining loop's data side."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.pipeline.cli.markup import esc

dataset_app = typer.Typer(no_args_is_help=True, help="Training data from reviewer decisions.")
verifier_app = typer.Typer(no_args_is_help=True, help="The second-stage check on case crops ('not a problem' classes).")
console = Console()
err = Console(stderr=True)


def _when(value: str | None, what: str) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{what}: expected an ISO date or time (2026-11-18 or 2026-11-18T08:00+08:00), got {value!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


@dataset_app.command("export")
def export_cmd(
    db: str = typer.Option(..., "--db", help="Case store URL (sqlite:///… or postgresql+psycopg://…)."),
    evidence: Path = typer.Option(..., "--evidence", help="The evidence folder the store's paths are relative to."),
    out: Path = typer.Option(..., "--out", help="Export folder (its images/labels/crops are rebuilt)."),
    since: Optional[str] = typer.Option(None, help="Decisions at or after this time (ISO; UTC if no zone)."),
    until: Optional[str] = typer.Option(None, help="Decisions before this time."),
    classes: Optional[str] = typer.Option(None, help="coco (the 80 COCO labels: fine-tune the COCO model keeping its head), city, or a comma-separated list in id order (default: the positives' classes)."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.9),
    seed: int = typer.Option(0),
    window_s: float = typer.Option(60.0, help="Cases of one camera closer than this share a split group."),
    pseudo_labels: bool = typer.Option(True, "--pseudo-labels/--no-pseudo-labels",
                                       help="Label the objects no reviewer judged in each exported frame with the detectors in use."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config whose models make the pseudo-labels (default: the built-in models)."),
) -> None:
    """Confirmed cases → positives, rejected → hard negatives and 'not a problem' crops; YOLO + COCO + manifest."""
    from citypatrol.models.training.export import ExportOptions, export_from_store

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not evidence.is_dir():
        err.print(f"[red]✗[/red] evidence folder {esc(evidence)} not found", highlight=False)
        raise typer.Exit(2)
    detector = None
    if pseudo_labels:
        from citypatrol.models.promotion import load_promoted
        from citypatrol.pipeline.config.models import Config
        from citypatrol.pipeline.config.loading import load_config

        detector = load_promoted((load_config(config) if config else Config()).models)
    options = ExportOptions(since=_when(since, "--since"), until=_when(until, "--until"),
                            classes=[c.strip() for c in classes.split(",")] if classes else None,
                            val_fraction=val_fraction, seed=seed, window_s=window_s, pseudo_detector=detector)
    res = export_from_store(db, evidence, out, options)
    manifest = json.loads(res.manifest.read_text())
    table = Table("split", "images", "boxes", "hard negatives", "verifier crops")
    for part, c in res.counts.items():
        table.add_row(esc(part), str(c["images"]), esc(json.dumps(c["boxes"], ensure_ascii=False)), str(c["hard_negative_images"]),
                      esc(json.dumps(c["verifier_crops"], ensure_ascii=False)))
    console.print(table)
    console.print(f"decisions {esc(json.dumps(manifest['decisions'], ensure_ascii=False))}", highlight=False, soft_wrap=True)
    console.print(f"data.yaml {esc(res.data_yaml)}\nmanifest  {esc(res.manifest)}", highlight=False)


@verifier_app.command("train")
def verifier_train(
    out: Path = typer.Option(..., "--out", help="Where to write the verifier (.npz)."),
    export: list[Path] = typer.Option(None, "--export", help="Export folder(s) whose crops/train it learns from."),
    garbage_cn: bool = typer.Option(False, "--garbage-cn", help="Also learn bin_not_full / garbage_overflow from the mirror's garbage set (its train split)."),
    features: str = typer.Option("hog-colour+backbone", help="hog-colour | hog-colour+backbone"),
    max_loss: float = typer.Option(0.05, help="Operating point: the threshold that loses at most this share of true cases."),
) -> None:
    """Train the verifier, then measure it on the held-out crops (exports' val, garbage set's val)."""
    from citypatrol.models.training.verifier_data import export_crops, garbage_cn_crops
    from citypatrol.models.verifier import measure, train_verifier

    crops, labels, held_c, held_l = [], [], [], []
    for e in export or []:
        c, lab, _ = export_crops(e, "train")
        crops += c
        labels += lab
        c, lab, _ = export_crops(e, "val")
        held_c += c
        held_l += lab
    if garbage_cn:
        c, lab, _ = garbage_cn_crops("train")
        crops += c
        labels += lab
        c, lab, _ = garbage_cn_crops("val")
        held_c += c
        held_l += lab
    if not crops:
        err.print("[red]✗[/red] no training crops: give --export and/or --garbage-cn")
        raise typer.Exit(2)
    v = train_verifier(crops, labels, feature_kind=features,
                       meta={"sources": [str(e) for e in export or []] + (["garbage_cn"] if garbage_cn else [])})
    if held_c:
        results = measure(v, held_c, held_l, (0.5,), max_loss=max_loss)
        v.meta["held_out"] = [r.as_dict() for r in results]
        _print_results(results)
    v.save(out)
    console.print(f"wrote {esc(out)} ({out.stat().st_size} bytes); labels {esc(v.labels)}", highlight=False)


@verifier_app.command("measure")
def verifier_measure(
    model: Path = typer.Argument(..., help="A verifier .npz."),
    export: list[Path] = typer.Option(None, "--export", help="Export folder(s): their crops/val."),
    garbage_cn: bool = typer.Option(False, "--garbage-cn", help="The garbage set's held-out (val) crops."),
    threshold: list[float] = typer.Option([0.5], "--threshold"),
    max_loss: float = typer.Option(0.05),
) -> None:
    """False cases removed and true cases lost on held-out crops."""
    from citypatrol.models.training.verifier_data import export_crops, garbage_cn_crops
    from citypatrol.models.verifier import CropVerifier, measure

    v = CropVerifier.load(model)
    crops, labels = [], []
    for e in export or []:
        c, lab, _ = export_crops(e, "val")
        crops += c
        labels += lab
    if garbage_cn:
        c, lab, _ = garbage_cn_crops("val")
        crops += c
        labels += lab
    if not crops:
        err.print("[red]✗[/red] no held-out crops: give --export and/or --garbage-cn")
        raise typer.Exit(2)
    _print_results(measure(v, crops, labels, threshold, max_loss=max_loss))


def _print_results(results) -> None:  # noqa: ANN001
    table = Table("category", "threshold", "false cases", "removed", "true cases", "lost", title="held-out: what the check holds back")
    for r in results:
        pct = lambda v: "–" if v is None else f"{100 * v:.0f} %"  # noqa: E731
        table.add_row(esc(r.category), f"{r.threshold:.3f}", str(r.false_cases), f"{r.false_removed} ({pct(r.removed_share)})",
                      str(r.true_cases), f"{r.true_lost} ({pct(r.lost_share)})")
    console.print(table)
