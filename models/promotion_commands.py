"""`citypatrol models register|promote|rollback|versions|shadow`: model versions of this deployment."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.models.promotion import ModelState, PromotionError, parse_ref
from citypatrol.pipeline.cli.markup import esc

console = Console()
err = Console(stderr=True)
STATE_HELP = "Model state file (default: $CITYPATROL_MODEL_STATE or .citypatrol-cache/models/state.json)."


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a container: still say it came from the command line
        return "cli"


def _fail(exc: Exception) -> None:
    err.print(f"[red]✗[/red] {esc(exc)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def register(
    weights: Path = typer.Argument(..., help="Candidate weights (.pt / .onnx)."),
    name: str = typer.Option(..., "--name", help="The detector it is for (models.detectors[].name, e.g. coco)."),
    metrics: Optional[Path] = typer.Option(None, help="A comparison.json or train_summary.json to record with it."),
    manifest: Optional[Path] = typer.Option(None, help="The export manifest.json it was trained from."),
    state: Optional[Path] = typer.Option(None, help=STATE_HELP),
) -> None:
    """Record a trained model as a candidate version (weights copied beside the state file)."""
    try:
        v = ModelState(state).register(name, weights, metrics=json.loads(metrics.read_text()) if metrics else None,
                                       manifest=manifest, by=_who())
    except (PromotionError, OSError) as exc:
        _fail(exc)
    console.print(esc(f"{v['name']}@{v['version']} {v['status']} {v['path']}"), highlight=False)


def promote(
    ref: str = typer.Argument(..., help="NAME@VERSION (see `citypatrol models versions`) or a weights path (with --name)."),
    name: Optional[str] = typer.Option(None, "--name", help="With a path: the detector it is for."),
    force: bool = typer.Option(False, help="Promote without a recorded evaluation (recorded as forced)."),
    state: Optional[Path] = typer.Option(None, help=STATE_HELP),
) -> None:
    """Make a version the one its detector runs (new cases carry NAME@VERSION)."""
    st = ModelState(state)
    try:
        parsed = parse_ref(ref)
        if parsed is None:
            if not name:
                raise PromotionError("promoting a path needs --name (the detector it replaces)")
            entry = st.register(name, Path(ref), by=_who())
            parsed = (name, entry["version"])
        v = st.promote(*parsed, by=_who(), force=force)
    except (PromotionError, OSError) as exc:
        _fail(exc)
    console.print(f"promoted {esc(v['name'])}@{esc(v['version'])} ({esc(v['path'])})", highlight=False)


def rollback(
    name: str = typer.Argument(..., help="The detector whose promoted version is taken back."),
    state: Optional[Path] = typer.Option(None, help=STATE_HELP),
) -> None:
    """Go back to the version promoted before (or the config's own weights)."""
    try:
        back = ModelState(state).rollback(name, by=_who())
    except PromotionError as exc:
        _fail(exc)
    console.print(esc(f"{name}: now {back['name'] + '@' + back['version'] if back else 'the config’s own weights'}"), highlight=False)


def versions(
    name: Optional[str] = typer.Argument(None, help="Only this detector's versions."),
    state: Optional[Path] = typer.Option(None, help=STATE_HELP),
) -> None:
    """Every registered version with its status, metrics and data."""
    models = ModelState(state).models()
    table = Table("model", "status", "registered", "sha256", "event P / R", "mAP50", "data (train/val images)")
    for n, m in models.items():
        if name and n != name:
            continue
        for v in m["versions"].values():
            cand = (v.get("metrics") or {}).get("candidate", {})
            ev, det = cand.get("events") or {}, cand.get("detection") or {}
            counts = (v.get("data_manifest") or {}).get("counts") or {}
            data = f"{counts.get('train', {}).get('images', '–')}/{counts.get('val', {}).get('images', '–')}" if counts else "–"
            table.add_row(*(esc(cell) for cell in (f"{n}@{v['version']}", v["status"], v["registered_at"], v["sha256"][:12],
                                                   f"{ev.get('precision', '–')} / {ev.get('recall', '–')}", det.get("mAP50", "–"), data)))
    console.print(table)
    for n, m in models.items():
        if not name or n == name:
            console.print(esc(f"{n}: current {m['current'] or '(the config’s own weights)'}"), highlight=False)


def shadow(
    footage: list[str] = typer.Argument(..., help="Video files, folders or stream URLs."),
    candidate: str = typer.Option(..., "--candidate", help="Weights path or NAME@VERSION."),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    detector: Optional[str] = typer.Option(None, "--detector", help="The detector slot it would replace (default: the first)."),
    every: int = typer.Option(1, min=1, help="Compare every n-th analysed frame."),
    min_score: float = typer.Option(0.5, help="Detections below this score are not disagreements."),
    out: Path = typer.Option(Path("out/shadow"), "--out", "-o"),
    state: Optional[Path] = typer.Option(None, help=STATE_HELP),
) -> None:
    """Run a candidate beside the current model and list where they disagree."""
    from citypatrol.models.detector import load_detectors
    from citypatrol.models.promotion import promoted_config, stamp, with_weights
    from citypatrol.models.shadow import run_shadow
    from citypatrol.pipeline.config.models import Config
    from citypatrol.pipeline.config.loading import load_config

    cfg = load_config(config) if config else Config()
    st = ModelState(state)
    try:
        weights = candidate
        if (parsed := parse_ref(candidate)) is not None:
            weights = st.get(*parsed)["path"]
        models, versions_ = promoted_config(cfg.models, st)
        current = stamp(load_detectors(models), versions_)
        cand = load_detectors(with_weights(models, detector, weights))
    except (PromotionError, OSError) as exc:
        _fail(exc)
    summary = run_shadow(cfg, current, cand, footage, out, every=every, min_score=min_score)
    table = Table("kind: class", "count", title=f"shadow: {summary['frames_compared']} frames, "
                                                 f"{summary['frames_agreeing']} agree")
    for k, n in sorted(summary["disagreements"].items()):
        table.add_row(esc(k), str(n))
    console.print(table)
    console.print(f"details {esc(summary['disagreements_file'])}; pictures in {esc(out / 'frames')}", highlight=False)


def add_commands(app: typer.Typer) -> None:
    for fn in (register, promote, rollback, versions, shadow):
        app.command(fn.__name__)(fn)
