"""Commands of distributed mode: `worker`, `casekeeper`, `batch-queue` and `cluster status` (see `distributed/protocol.py`)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citypatrol.pipeline.config.loading import load_config
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.cli.markup import esc

cluster_app = typer.Typer(no_args_is_help=True, help="Inspect a distributed deployment (workers, casekeepers, cameras, shards) in Redis.")
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out_console = Console(width=None if sys.stdout.isatty() else 160)


# options shared by `worker` and `casekeeper`
METRICS_PORT = typer.Option(0, "--metrics-port", help="Serve this process's Prometheus /metrics on this port (0 = none).")
METRICS_HOST = typer.Option("127.0.0.1", "--metrics-host", help="Address of the /metrics endpoint ('0.0.0.0' = every interface).")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Debug logging.")


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _start(config: Path, verbose: bool) -> tuple[Config, threading.Event]:
    """A worker's or casekeeper's first steps: logging, its config, the event that stops it."""
    _logging(verbose)
    return load_config(config), threading.Event()


def _serve(process, collector, metrics_host: str, metrics_port: int, stop: threading.Event):  # noqa: ANN001, ANN202
    """Run a worker or casekeeper until SIGTERM/SIGINT, with its /metrics when a port is given."""
    from citypatrol.pipeline.live.runner import stop_on_signals

    with _metrics(metrics_host, metrics_port, collector), stop_on_signals(stop):
        return process.run()


def worker(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: cameras, models, rules, distributed."),
    worker_id: str = typer.Option("", "--id", help="This worker's name in leases and logs (default: host-pid); unique per process."),
    metrics_port: int = METRICS_PORT,
    metrics_host: str = METRICS_HOST,
    verbose: bool = VERBOSE,
) -> None:
    """Claim cameras (and footage segments) through Redis leases, analyse them, publish events, until SIGTERM/SIGINT."""
    from citypatrol.pipeline.cli.batch import _detector
    from citypatrol.pipeline.distributed.process_metrics import WorkerCollector
    from citypatrol.pipeline.distributed.worker import Worker

    cfg, stop = _start(config, verbose)
    w = Worker(cfg, _detector(cfg), worker_id=worker_id or None, stop=stop)
    result = _serve(w, WorkerCollector(w), metrics_host, metrics_port, stop)
    console.print(f"worker stopped: {result.frames_analysed} frame(s) analysed, {result.messages} message(s), "
                  f"{result.segments} segment(s), {result.errors} error(s)", highlight=False)  # fmt: skip


def casekeeper(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: storage (PostgreSQL), cases, codes, distributed."),
    keeper_id: str = typer.Option("", "--id", help="This casekeeper's consumer name (default: host-pid); unique per process."),
    replay: bool = typer.Option(False, "--replay", help="Re-read every retained event (idempotent: nothing is counted twice)."),
    metrics_port: int = METRICS_PORT,
    metrics_host: str = METRICS_HOST,
    verbose: bool = VERBOSE,
) -> None:
    """Build cases from the workers' events into the store, one shard at a time, until SIGTERM/SIGINT."""
    from citypatrol.pipeline.cli.batch import _review_check
    from citypatrol.pipeline.distributed.casekeeper import Casekeeper
    from citypatrol.pipeline.distributed.process_metrics import CasekeeperCollector

    cfg, stop = _start(config, verbose)
    keeper = Casekeeper(cfg, keeper_id=keeper_id or None, stop=stop, replay=replay, check=_review_check(cfg))
    stats = _serve(keeper, CasekeeperCollector(keeper), metrics_host, metrics_port, stop)
    console.print(f"casekeeper stopped: {stats.applied} message(s) applied, {stats.skipped} already applied, "
                  f"{stats.segments} segment(s), {stats.dead} set aside", highlight=False)  # fmt: skip


@contextmanager
def _metrics(host: str, port: int, collector) -> Iterator[None]:  # noqa: ANN001 (a prometheus Collector)
    """This process's /metrics while the block runs; nothing when `port` is 0."""
    from citypatrol.pipeline.live.metrics import serve_collector

    if not port:
        yield
        return
    try:
        server = serve_collector(host, port, collector)
    except OSError as exc:
        console.print(f"[red]cannot start:[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None
    logging.getLogger("citypatrol").info("metrics on http://%s:%d/metrics", host, server.server_port)
    try:
        yield
    finally:
        server.shutdown()


def batch_queue(
    files: list[Path] = typer.Argument(..., help="Video files or folders of them; one camera per file, named by its stem."),
    config: Path = typer.Option(..., "--config", "-c", help="Config file: distributed (Redis, segment length), camera settings by id."),
    wait: bool = typer.Option(False, "--wait", help="Wait until casekeepers have applied every segment, showing progress."),
    timeout_s: float = typer.Option(0, "--timeout", help="With --wait: give up after this many seconds (0 = never)."),
) -> None:
    """Split recorded footage into segments on the Redis work queue; every worker takes segments beside its cameras."""
    from redis.exceptions import RedisError

    from citypatrol.pipeline.batch.runner import cameras_for_paths
    from citypatrol.pipeline.distributed.protocol import Keys
    from citypatrol.pipeline.distributed.redis_client import connect, redact_redis_url
    from citypatrol.pipeline.distributed.segments import enqueue_files, job_progress
    from citypatrol.streams.probe import duration_s

    _logging(False)
    cfg = load_config(config)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        console.print(f"[red]no such file or folder:[/red] {esc(', '.join(missing))}", highlight=False)
        raise typer.Exit(2)
    cameras = [c.model_copy(update={"source": str(Path(c.source).resolve())}) for c in cameras_for_paths(files, cfg)]
    if not cameras:
        console.print("[red]no video files found[/red]")
        raise typer.Exit(2)
    r = connect(cfg.distributed.redis_url)
    try:
        job, tasks = enqueue_files(r, cfg, cameras, [duration_s(c.source) for c in cameras])
    except RedisError as exc:
        console.print(f"[red]cannot queue the footage:[/red] Redis at {esc(redact_redis_url(cfg.distributed.redis_url))}: {esc(exc)}",
                      highlight=False)
        raise typer.Exit(2) from None
    out_console.print(f"job {esc(job)}: {len(tasks)} segment(s) of {len(cameras)} file(s) queued", highlight=False)
    out_console.print(f"JOB {esc(job)}", highlight=False)
    if not wait:
        return
    keys = Keys.of(cfg.distributed)
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    last = None
    while True:
        try:
            progress = job_progress(r, keys, job)
        except RedisError as exc:
            console.print(f"[yellow]Redis unreachable ({esc(exc)}); still waiting[/yellow]", highlight=False)
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
    table = Table(title=f"job {esc(job)}")
    for col in ("camera", "segments applied"):
        table.add_column(col)
    for cam, (a, t) in sorted(last.items()):
        table.add_row(esc(cam), f"{a}/{t}")
    out_console.print(table)


@cluster_app.command("status")
def cluster_status(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: distributed (Redis, prefix, shards) and the cameras."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON (for scripts and monitoring)."),
) -> None:
    """Who runs what: live workers and casekeepers, each camera's worker and cost, how far its events are
    applied, each shard's backlog, dead letters. Exit 0 when all is well, 1 when something needs a person,
    2 when Redis cannot be read."""
    from redis.exceptions import RedisError

    from citypatrol.pipeline.distributed.cluster_status import read_cluster
    from citypatrol.pipeline.distributed.redis_client import connect, redact_redis_url

    cfg = load_config(config)
    try:
        st = read_cluster(connect(cfg.distributed.redis_url, socket_timeout_s=5.0), cfg)
    except RedisError as exc:
        console.print(f"[red]cannot read the cluster:[/red] Redis at {esc(redact_redis_url(cfg.distributed.redis_url))}: {esc(exc)}",
                      highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(st.to_dict(), default=str, ensure_ascii=False, indent=2))
    else:
        print_cluster(st)
    raise typer.Exit(0 if st.healthy else 1)


@cluster_app.command("exporter")
def cluster_exporter(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: distributed (Redis, prefix, shards) and the cameras."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on ('0.0.0.0' = every interface)."),
    port: int = typer.Option(9109, "--port", help="Port of the /metrics endpoint."),
) -> None:
    """Serve the deployment's state (as `cluster status` reads it) as Prometheus metrics, until SIGTERM/SIGINT.
    One exporter per deployment is enough: it only reads Redis, at each scrape."""
    from citypatrol.pipeline.distributed.cluster_metrics import ClusterCollector
    from citypatrol.pipeline.distributed.cluster_status import read_cluster
    from citypatrol.pipeline.distributed.redis_client import connect
    from citypatrol.pipeline.live.runner import stop_on_signals
    from citypatrol.pipeline.live.metrics import serve_collector

    _logging(False)
    cfg = load_config(config)
    r = connect(cfg.distributed.redis_url, socket_timeout_s=5.0)
    try:
        server = serve_collector(host, port, ClusterCollector(lambda: read_cluster(r, cfg)))
    except OSError as exc:
        console.print(f"[red]cannot start the exporter:[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None
    url = f"http://{host}:{server.server_port}/metrics"
    out_console.print(f"cluster metrics of {esc(cfg.distributed.prefix)} on {esc(url)}", highlight=False)
    stop = threading.Event()
    with stop_on_signals(stop):
        while not stop.wait(1.0):
            pass
    server.shutdown()


def print_cluster(st) -> None:  # noqa: ANN001 (ClusterStatus; imported lazily)
    from datetime import UTC, datetime

    now = datetime.now(UTC)

    def num(v: float | None, fmt: str = "{:.1f}") -> str:
        return "–" if v is None else fmt.format(v)

    def ago(t: datetime | None) -> str:
        return "–" if t is None else f"{max(0.0, (now - t).total_seconds()):.0f}"

    out_console.print(f"deployment [bold]{esc(st.prefix)}[/bold]: {len(st.workers)} worker(s), {len(st.casekeepers)} casekeeper(s), "
                      f"{len(st.cameras)} camera(s), {len(st.shards)} shard(s)", highlight=False)  # fmt: skip
    workers = Table(title="workers")
    for col in ("worker", "cameras", "cores (measured)", "lease s"):
        workers.add_column(col, justify="left" if col == "worker" else "right")
    for w in st.workers:
        held = [c for c in st.cameras if c.owner == w.id]
        cores = [c.cores for c in held if c.cores is not None]
        workers.add_row(esc(w.id), str(len(held)), num(sum(cores), "{:.2f}") if cores else "–", num(w.expires_in_s))
    out_console.print(workers)
    cameras = Table(title="cameras")
    for col in ("camera", "shard", "worker", "cores", "analysed s ago", "applied behind s"):
        cameras.add_column(col, justify="right" if col in ("shard", "cores", "analysed s ago", "applied behind s") else "left")
    for c in st.cameras:
        owner = esc(c.owner) if c.owner else "[red]none[/red]"
        cameras.add_row(esc(c.camera_id), str(c.shard), owner, num(c.cores, "{:.3f}"), ago(c.clock), num(c.behind_s))
    out_console.print(cameras)
    shards = Table(title="event shards")
    for col in ("shard", "casekeeper", "retained", "pending", "unread"):
        shards.add_column(col, justify="left" if col == "casekeeper" else "right")
    for s in st.shards:
        shards.add_row(str(s.shard), esc(s.owner or "–"), str(s.length), str(s.pending), "–" if s.unread is None else str(s.unread))
    out_console.print(shards)
    out_console.print(f"dead letters: {st.dead}; footage segments waiting for a worker: {st.segments_queued}", highlight=False)
    for reason in st.dead_recent:
        out_console.print(f"  newest dead letter: {esc(reason)}", highlight=False, soft_wrap=True)
    for line in st.findings:
        out_console.print(f"[yellow]! {esc(line)}[/yellow]", highlight=False)
    if st.healthy:
        out_console.print("[green]all cameras are held and their events are being applied[/green]")
