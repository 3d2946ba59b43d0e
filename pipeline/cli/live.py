"""Commands of the live runtime: `run` (watch the configured cameras until stopped) and `status`."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.pipeline.config.loading import load_config
from citypatrol.pipeline.cli.markup import esc
from citypatrol.pipeline.live.status import LiveStatus, read_status

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 160)


def run(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: cameras, models, rules, storage, live."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Also run the review center on api.host:api.port."),
    dispatch: bool = typer.Option(True, "--dispatch/--no-dispatch", help="Also deliver cases when dispatch.enabled."),
) -> None:
    """Watch the configured cameras live until SIGTERM/SIGINT: cases, evidence, /metrics, status file,
    with the review center and the dispatcher in the same process."""
    from citypatrol.pipeline.cli.batch import _detector, _review_check
    from citypatrol.pipeline.live.runner import run_live, stop_on_signals
    from citypatrol.pipeline.store.records import StoreError

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(config)
    cameras = [c for c in cfg.cameras if c.enabled]
    if not cameras:
        console.print(f"[red]nothing to watch:[/red] {esc(config)} has no enabled camera", highlight=False)
        raise typer.Exit(1)
    from citypatrol.pipeline.live.services import start_services
    from citypatrol.pipeline.store.case_store import open_store

    check = _review_check(cfg)
    detector = _detector(cfg)
    stop = threading.Event()
    try:
        store = open_store(cfg.storage.database_url)
    except (OSError, StoreError) as exc:
        console.print(f"[red]cannot run:[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None
    services = start_services(cfg, store, stop, serve=serve, dispatch=dispatch)
    for url in services.urls:
        console.print(esc(url), highlight=False)
    try:
        with stop_on_signals(stop):
            result = run_live(cfg, cameras, detector, stop=stop, store=store, check=check)
    except (OSError, StoreError) as exc:
        console.print(f"[red]cannot run:[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        stop.set()
        services.stop()
        store.close()
    print_status(result.status)
    if not result.analysed_any:
        console.print("[red]no camera delivered a frame[/red] (see the table and the log)")
        raise typer.Exit(1)


def status(
    config: Path | None = typer.Option(None, "--config", "-c", help="Config file whose live.status_file to read."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read this status file instead."),
) -> None:
    """Per-camera figures of the running `citypatrol run`, from the status file it rewrites."""
    from citypatrol.pipeline.config.models import Config

    path = file or (load_config(config) if config else Config()).live.status_file
    try:
        st = read_status(path)
    except FileNotFoundError:
        console.print(f"[red]no status file at {esc(path)}[/red]: is `citypatrol run` running with this config (and from this folder)?", highlight=False)
        raise typer.Exit(1) from None
    except ValueError as exc:
        console.print(f"[red]{esc(exc)}[/red]", highlight=False)
        raise typer.Exit(1) from None
    print_status(st)


def print_status(st: LiveStatus) -> None:
    age = st.age_s()
    stale = st.state != "stopped" and age > max(10.0, 5 * st.interval_s)
    head = f"citypatrol run (pid {st.pid}): [bold]{esc(st.state)}[/bold], updated {age:.0f} s ago, model {esc(st.model)}"
    if st.metrics_url:
        head += f", metrics {esc(st.metrics_url)}"
    out_console.print(head, highlight=False)
    if stale:
        out_console.print("[yellow]the status is stale: the runner may have died[/yellow]")
    table = Table(title="cameras")
    cols = ("camera", "state", "fps", "lag s", "last frame s ago", "analysed", "skips", "reconnects", "decode errors", "cases", "source", "last error")
    for col in cols:
        table.add_column(col, justify="right" if col in cols[2:10] else "left", overflow="fold")

    def num(v: float | None, fmt: str = "{:.1f}") -> str:
        return "–" if v is None else fmt.format(v)

    for c in st.cameras:
        colour = {"running": "green", "offline": "yellow", "failed": "red"}.get(c.state, "white")
        table.add_row(
            esc(f"{c.camera_id} {c.name}".strip()), f"[{colour}]{esc(c.state)}[/{colour}]", num(c.analysed_fps, "{:.2f}"), num(c.lag_s),
            num(c.last_frame_age_s), str(c.frames_analysed), str(c.skips), str(c.reconnects), str(c.decode_errors),
            str(c.cases_opened), esc(c.source), esc(c.last_error[:80]),
        )  # fmt: skip
    out_console.print(table)
    if st.batches:
        out_console.print(
            f"detector: {st.batches} batch(es), {st.batch_images / st.batches:.1f} image(s) per batch, "
            f"{1000 * st.detect_seconds / st.batch_images:.0f} ms per image",
            highlight=False,
        )
