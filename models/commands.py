"""`citypatrol models …`: list the registry, export weights, verify model files by sha256, collect
frames to calibrate an INT8 export on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.models.assets import AssetError, locate_asset, mirror_dir, resolve_asset
from citypatrol.models.export import ExportError, ExportFormat, export_weights
from citypatrol.models.registry import RegistryError, load_registry
from citypatrol.pipeline.cli.markup import esc

models_app = typer.Typer(no_args_is_help=True, help="Detection models: registry, export, verification.")
console = Console()
err = Console(stderr=True)


@models_app.command("list")
def list_models() -> None:
    """The registry with where each model resolves (no download, no hashing; `verify` hashes)."""
    table = Table("name", "version", "format", "imgsz", "status")
    for entry in load_registry():
        try:
            found = locate_asset(entry)
        except AssetError as exc:
            found, status = None, f"[red]{esc(exc)}[/red]"
        if found:
            status = f"[green]{esc(found[1])}[/green] {esc(found[0])}"
        else:
            status = "[yellow]not found[/yellow]" + (" (downloadable)" if entry.source_url else "")
        table.add_row(esc(entry.name), esc(entry.version), entry.format.value, str(entry.imgsz), status)
    console.print(table)
    if mirror_dir() is None:
        err.print("CITYPATROL_ASSET_MIRROR is not set: only the cache and the repository are searched.")


@models_app.command("verify")
def verify(
    names: list[str] = typer.Argument(None, help="Models to check (default: all)."),
    download: bool = typer.Option(False, help="Download models that are missing."),
) -> None:
    """Check each model's files against the registry's sha256; exit 1 if any is missing or differs."""
    registry = load_registry()
    try:
        entries = [registry.get(n) for n in names] if names else list(registry)
    except RegistryError as exc:
        err.print(f"[red]✗[/red] {esc(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    bad = 0
    for entry in entries:
        try:
            path = resolve_asset(entry, download=download)
        except AssetError as exc:
            bad += 1
            err.print(f"[red]✗[/red] {esc(exc)}", highlight=False, soft_wrap=True)
            continue
        console.print(f"[green]✓[/green] {esc(entry.name)}: {esc(path)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if bad else 0)


@models_app.command("export")
def export(
    weights: str = typer.Argument(..., help="A .pt file or a registry name of a .pt model."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="Target format."),
    imgsz: int = typer.Option(640, help="Export input size (a multiple of 32)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the export into."),
    dynamic: bool = typer.Option(True, help="Dynamic batch and input size (needed to batch cameras)."),
    calibration: Path = typer.Option(None, help="openvino-int8: folder of frames from your cameras to calibrate on "
                                               "(`citypatrol models calibration-frames`)."),
) -> None:
    """Export a .pt detector to ONNX, OpenVINO, or OpenVINO quantized to INT8."""
    registry = load_registry()
    try:
        path = resolve_asset(registry.get(weights)) if weights in registry else Path(weights)
        result = export_weights(path, format, out, imgsz=imgsz, dynamic=dynamic, calibration=calibration)
    except (AssetError, ExportError) as exc:
        err.print(f"[red]✗[/red] {esc(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"wrote {esc(result)}", highlight=False)


@models_app.command("calibration-frames")
def calibration_frames(
    config: Path = typer.Option(..., "--config", "-c", help="Config whose cameras to take frames from."),
    out: Path = typer.Option(..., "--out", help="Folder to write the frames into."),
    per_camera: int = typer.Option(20, min=1, max=1000, help="Frames per camera."),
    every_s: float = typer.Option(10.0, min=0.1, help="Stream seconds between two frames of a camera."),
) -> None:
    """Frames of your cameras to calibrate an INT8 export on (a detector's `calibration:` folder)."""
    from rich.progress import Progress

    from citypatrol.models.calibration import collect_frames
    from citypatrol.pipeline.config.loading import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        err.print(f"[red]✗[/red] {esc(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    cameras = [c for c in cfg.cameras if c.enabled]
    if not cameras:
        err.print(f"[red]✗[/red] {esc(config)} has no enabled camera", highlight=False)
        raise typer.Exit(2)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("frames", total=len(cameras) * per_camera)
        got = collect_frames(cameras, out, per_camera=per_camera, every_s=every_s, on_frame=lambda _: progress.advance(task))
    for cam_id, why in got.failed.items():
        err.print(f"[yellow]![/yellow] camera {esc(cam_id)}: {esc(why)} ({got.written.get(cam_id, 0)} frames taken)",
                  highlight=False, soft_wrap=True)
    console.print(f"wrote {got.total} frames of {sum(1 for n in got.written.values() if n)} camera(s) to {esc(out)}; "
                  f"name it as a detector's `calibration:` with `export: openvino-int8`", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if got.total else 1)


from citypatrol.models.promotion_commands import add_commands  # noqa: E402  (register, promote, rollback, versions, shadow)

add_commands(models_app)
