"""Commands of distributed mode: `worker`, `casekeeper` and `batch-queue` (see `distributed.py`)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.pipeline.configfile import load_config

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 160)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def worker(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: cameras, models, rules, distributed."),
    worker_id: str = typer.Option("", "--id", help="This worker's name in leases and logs (default: host-pid); unique per process."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Claim cameras (and footage segments) through Redis leases, analyse them, publish events, until SIGTERM/SIGINT."""
    from citypatrol.pipeline.commands_batch import _detector
    from citypatrol.pipeline.live import stop_on_signals
    from citypatrol.pipeline.worker import Worker

    _logging(verbose)
    cfg = load_config(config)
    detector = _detector(cfg)
    stop = threading.Event()
    with stop_on_signals(stop):
        result = Worker(cfg, detector, worker_id=worker_id or None, stop=stop).run()
    console.print(f"worker stopped: {result.frames_analysed} frame(s) analysed, {result.messages} message(s), "
                  f"{result.segments} segment(s), {result.errors} error(s)", highlight=False)  # fmt: skip


def casekeeper(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: storage (PostgreSQL), cases, codes, distributed."),
    keeper_id: str = typer.Option("", "--id", help="This casekeeper's consumer name (default: host-pid); unique per process."),
    replay: bool = typer.Option(False, "--replay", help="Re-read every retained event (idempotent: nothing is counted twice)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Build cases from the workers' events into the store, one shard at a time, until SIGTERM/SIGINT."""
    from citypatrol.pipeline.casekeeper import Casekeeper
    from citypatrol.pipeline.live import stop_on_signals

    _logging(verbose)
    cfg = load_config(config)
    stop = threading.Event()
    with stop_on_signals(stop):
        stats = Casekeeper(cfg, keeper_id=keeper_id or None, stop=stop, replay=replay).run()
    console.print(f"casekeeper stopped: {stats.applied} message(s) applied, {stats.skipped} already applied, "
                  f"{stats.segments} segment(s), {stats.dead} set aside", highlight=False)  # fmt: skip


def batch_queue(
    files: list[Path] = typer.Argument(..., help="Video files or folders of them; one camera per file, named by its stem."),
    config: Path = typer.Option(..., "--config", "-c", help="Config file: distributed (Redis, segment length), camera settings by id."),
    wait: bool = typer.Option(False, "--wait", help="Wait until casekeepers have applied every segment, showing progress."),
    timeout_s: float = typer.Option(0, "--timeout", help="With --wait: give up after this many seconds (0 = never)."),
) -> None:
    """Split recorded footage into segments on the Redis work queue; every worker takes segments beside its cameras."""
    from redis.exceptions import RedisError

    from citypatrol.pipeline.batch import cameras_for_paths
    from citypatrol.pipeline.distributed import Keys
    from citypatrol.pipeline.distributed_redis import connect, redact_redis_url
    from citypatrol.pipeline.distributed_segments import enqueue_files, job_progress
    from citypatrol.streams.probe import duration_s

    _logging(False)
    cfg = load_config(config)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        console.print(f"[red]no such file or folder:[/red] {', '.join(missing)}", highlight=False)
        raise typer.Exit(2)
    cameras = [c.model_copy(update={"source": str(Path(c.source).resolve())}) for c in cameras_for_paths(files, cfg)]
    if not cameras:
        console.print("[red]no video files found[/red]")
        raise typer.Exit(2)
    r = connect(cfg.distributed.redis_url)
    try:
        job, tasks = enqueue_files(r, cfg, cameras, [duration_s(c.source) for c in cameras])
    except RedisError as exc:
        console.print(f"[red]cannot queue the footage:[/red] Redis at {redact_redis_url(cfg.distributed.redis_url)}: {exc}", highlight=False)
        raise typer.Exit(2) from None
    out_console.print(f"job {job}: {len(tasks)} segment(s) of {len(cameras)} file(s) queued", highlight=False)
    out_console.print(f"JOB {job}", highlight=False)
    if not wait:
        return
    keys = Keys.of(cfg.distributed)
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    last = None
    while True:
        try:
            progress = job_progress(r, keys, job)
        except RedisError as exc:
            console.print(f"[yellow]Redis unreachable ({exc}); still waiting[/yellow]", highlight=False)
            progress = last
        if progress is None and last is not None:
            console.print("[red]Redis no longer knows this job (restarted without persistence?)[/red]")
            raise typer.Exit(1)
        if progress is not None and progress != last:
            done = sum(a for a, _ in progress.values())
            console.print(f"{done}/{sum(t for _, t in progress.values())} segment(s) applied", highlight=False)
            last = progress
        if progress is not None and all(a >= t for a, t in progress.values()):
            break
        if deadline is not None and time.monotonic() > deadline:
            console.print("[red]timed out waiting for the segments[/red]")
            raise typer.Exit(1)
        time.sleep(0.5)
    table = Table(title=f"job {job}")
    for col in ("camera", "segments applied"):
        table.add_column(col)
    for cam, (a, t) in sorted(last.items()):
        table.add_row(cam, f"{a}/{t}")
    out_console.print(table)
