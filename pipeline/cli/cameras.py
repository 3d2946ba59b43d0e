"""`citypatrol cameras import`: a GB/T 28181 platform's channel catalog → camera configs through an RTSP gateway."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from citypatrol.pipeline.cli.markup import esc

cameras_app = typer.Typer(no_args_is_help=True, help="Camera lists: import a video platform's channel catalog.")
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


@cameras_app.command("import")
def import_cmd(
    catalog: Path = typer.Argument(..., help="Channel catalog: CSV (通道编号, 名称, 经度, 纬度, 地址, 网格 …) or wvp-GB28181-pro channel-list JSON."),
    gateway: str = typer.Option(
        ..., "--gateway", "-g",
        help="RTSP URL template of the gateway re-publishing each channel, with {channel_id} (and optionally {device_id}); "
        "credentials only as ${VAR}, e.g. rtsp://${GATEWAY_USER}:${GATEWAY_PASSWORD}@gateway:554/rtp/{channel_id}.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the cameras (YAML config document); '-' = standard output."),
    fmt: str = typer.Option("auto", "--format", help="csv, json or auto (by file name, else by content)."),
    all_types: bool = typer.Option(False, "--all-types", help="Also import channels whose GB/T 28181 type is not a camera (131/132)."),
    cadence_s: float | None = typer.Option(None, "--cadence-s", help="Seconds between analysed frames (default: the camera default)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Write camera configs for the channels of a GB/T 28181 platform, watched through an RTSP gateway."""
    from citypatrol.pipeline.config.catalog_import import CatalogError, cameras_yaml, import_catalog

    try:
        data = catalog.read_bytes()
    except OSError as exc:
        console.print(f"[red]cannot read {esc(catalog)}:[/red] {esc(exc.strerror or exc)}", highlight=False)
        raise typer.Exit(2) from None
    if str(out) != "-" and out.exists() and not force:
        console.print(f"[red]{esc(out)} exists[/red]: choose another --out or add --force", highlight=False)
        raise typer.Exit(2)
    try:
        result = import_catalog(data, str(catalog), gateway, fmt=fmt, all_types=all_types, cadence_s=cadence_s)
    except CatalogError as exc:
        console.print(esc(exc), highlight=False)
        raise typer.Exit(1) from None
    except ValueError as exc:  # a bad --format, or a whole-config check
        console.print(f"[red]{esc(exc)}[/red]", highlight=False)
        raise typer.Exit(1) from None
    header = (f"{len(result.cameras)} camera(s) imported from {catalog.name} ({result.fmt}) on "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `citypatrol cameras import`.\n"
              "Sources go through the gateway; ${VAR}s are resolved from the environment when the config is loaded.\n"
              "Draw each camera's zones (review center, /zones) before its rules can report anything.")
    text = cameras_yaml(result.cameras, header=header)
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {len(result.cameras)} camera(s) to {esc(out)}", highlight=False)
    if result.offline:
        console.print(f"{result.offline} of them listed as offline by the platform (imported all the same)", highlight=False)
    if result.skipped:
        n = len(result.skipped)
        console.print(f"skipped {n} {'entry that is not a camera' if n == 1 else 'entries that are not cameras'} "
                      "(--all-types keeps them):", highlight=False)
        for line in result.skipped[:20]:
            console.print(f"  {esc(line)}", highlight=False)
        if len(result.skipped) > 20:
            console.print(f"  … and {len(result.skipped) - 20} more", highlight=False)
    if result.ignored_columns:
        console.print(f"columns not used: {esc(', '.join(result.ignored_columns))}", highlight=False)
