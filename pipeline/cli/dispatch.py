"""Commands of the closed loop: `dispatch run|retry|verify|simulate` and `report`.

Thin: each parses options, opens the store named by the config (or `--db`), and calls one module
(`dispatch`, `verify`, `dispatch_sim`, `annotate.period_report`). Secrets come from the config's
`${VAR}` interpolation or the environment, never from the command line.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.config.loading import load_config
from citypatrol.pipeline.cli.markup import esc

if TYPE_CHECKING:
    from citypatrol.pipeline.store.case_store import Store

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 140)
log = logging.getLogger("citypatrol.cli")
dispatch_app = typer.Typer(no_args_is_help=True, help="Deliver cases to the dispatch system (数字城管) and follow them back.")

CONFIG = typer.Option(None, "--config", "-c", help="Config file (dispatch, review, verify, sla, storage).")
DB = typer.Option(None, "--db", help="Database URL; default: storage.database_url of the config.")


def _setup(config: Path | None, db: str | None, verbose: bool = False) -> tuple[Config, Store]:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from citypatrol.pipeline.store.case_store import open_store
    from citypatrol.pipeline.store.records import StoreError

    cfg = load_config(config) if config else Config()
    try:
        store = open_store(db or cfg.storage.database_url)
    except StoreError as exc:
        console.print(f"[red]{esc(exc)}[/red]", highlight=False)
        raise typer.Exit(2) from None
    return cfg, store


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@dispatch_app.command("run")
def run(
    config: Path | None = CONFIG,
    db: str | None = DB,
    once: bool = typer.Option(False, "--once", help="Deliver what is due now, then exit."),
    evidence_dir: Path | None = typer.Option(None, "--evidence-dir", help="Evidence folder (default: storage.evidence_dir)."),
    callbacks: bool = typer.Option(False, "--callbacks", help="Also serve POST /api/v1/dispatch/callback on api.host:api.port."),
    verify: bool = typer.Option(False, "--verify", help="Also re-check handled cases on camera (loads the detector)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Deliver the outbox to the dispatch system until stopped (Ctrl-C / SIGTERM)."""
    from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter

    cfg, store = _setup(config, db, verbose)
    if not cfg.dispatch.enabled:
        console.print("dispatch.enabled is false in the config: nothing to deliver to", highlight=False)
        raise typer.Exit(2)
    stop = _stop_on_signals()
    dispatcher = Dispatcher(store, cfg, make_adapter(cfg), evidence_dir=evidence_dir)
    threads = []
    if callbacks:
        threads.append(_serve_callbacks(store, cfg, stop))
    if verify:
        threads.append(_verify_loop(store, cfg, evidence_dir or cfg.storage.evidence_dir, stop))
    try:
        total = dispatcher.run(stop, once=once)
    finally:
        stop.set()
        dispatcher.close()
        for t in threads:
            t.join(10)
        store.close()
    out.print(f"claimed {total.claimed}, sent {total.sent} ({total.duplicates} already received), "
              f"retrying {total.retried}, dead-letter {total.dead}, waiting for evidence {total.postponed}")


def _serve_callbacks(store: Store, cfg: Config, stop: threading.Event) -> threading.Thread:
    import uvicorn

    from citypatrol.api.app import proxy_options
    from citypatrol.api.routes_dispatch import FULL_PATH, create_callback_app

    server = uvicorn.Server(uvicorn.Config(create_callback_app(store, cfg), host=cfg.api.host, port=cfg.api.port, log_level="warning",
                                           **proxy_options(cfg)))
    server.install_signal_handlers = lambda: None  # the dispatcher owns SIGINT/SIGTERM

    def serve() -> None:
        server.run()

    def watch() -> None:
        stop.wait()
        server.should_exit = True

    t = threading.Thread(target=serve, name="callbacks", daemon=True)
    t.start()
    threading.Thread(target=watch, daemon=True).start()
    log.info("status callbacks at http://%s:%d%s", cfg.api.host, cfg.api.port, FULL_PATH)
    return t


def _verify_loop(store: Store, cfg: Config, evidence_dir: Path, stop: threading.Event) -> threading.Thread:
    from citypatrol.models.detector import load_detectors
    from citypatrol.pipeline.verify.recheck import Verifier

    verifier = Verifier(store, cfg, load_detectors(cfg.models), evidence_dir)

    def loop() -> None:
        while not stop.is_set():
            try:
                verifier.run_pending(retry_verifying=False)
            except Exception:  # keep verifying other cases later; the dispatcher keeps running
                log.exception("verification round failed")
            stop.wait(cfg.dispatch.poll_s)

    t = threading.Thread(target=loop, name="verify", daemon=True)
    t.start()
    return t


@dispatch_app.command("retry")
def retry(case_id: str = typer.Argument(..., help="The dead-lettered case."), config: Path | None = CONFIG, db: str | None = DB,
          actor: str = typer.Option(f"cli:{os.environ.get('USER', 'operator')}", help="Who retries (audit trail).")) -> None:
    """Queue a dead-lettered case's messages again; the dispatcher then delivers it."""
    from citypatrol.pipeline.dispatch.dispatcher import retry_dead_letter
    from citypatrol.pipeline.store.records import CaseNotFound

    _, store = _setup(config, db)
    try:
        n = retry_dead_letter(store, case_id, actor=actor)
    except (CaseNotFound, ValueError) as exc:
        console.print(f"[red]{esc(exc)}[/red]", highlight=False)
        raise typer.Exit(1) from None
    finally:
        store.close()
    out.print(f"case {esc(case_id)}: {n} message(s) queued again", highlight=False)


@dispatch_app.command("verify")
def verify_cmd(config: Path | None = CONFIG, db: str | None = DB,
               evidence_dir: Path | None = typer.Option(None, "--evidence-dir"),
               source: list[str] = typer.Option([], "--source", help="CAMERA=PATH: take this camera's frames from a file or folder."),
               case_id: str | None = typer.Option(None, "--case", help="Verify only this case.")) -> None:
    """Re-check handled cases on camera once: close the ones whose problem is gone, reopen the others."""
    from citypatrol.models.detector import load_detectors
    from citypatrol.pipeline.verify.recheck import Verifier

    cfg, store = _setup(config, db)
    overrides = dict(s.split("=", 1) for s in source if "=" in s)
    verifier = Verifier(store, cfg, load_detectors(cfg.models), evidence_dir or cfg.storage.evidence_dir, sources=overrides.get)
    try:
        results = [verifier.verify_case(case_id)] if case_id else verifier.run_pending()
    finally:
        store.close()
    for r in results:
        out.print(f"{esc(r.case_id)}: {r.status.value} — {esc(r.reason)}", highlight=False)
    if not results:
        out.print("no handled cases to verify")


@dispatch_app.command("simulate")
def simulate(
    port: int = typer.Option(8765, help="Port to listen on (loopback)."),
    host: str = typer.Option("127.0.0.1"),
    secret_env: str = typer.Option("DISPATCH_SECRET", help="Environment variable holding the shared HMAC key."),
    callback_url: str = typer.Option("", help="citypatrol's callback endpoint, e.g. http://127.0.0.1:8080/api/v1/dispatch/callback."),
    dispatched_after: float = typer.Option(1.0, help="Seconds after accepting a case to call back 'dispatched' (<0: never)."),
    handled_after: float = typer.Option(5.0, help="Seconds after accepting a case to call back 'handled' (<0: never)."),
    delay: float = typer.Option(0.0, help="Seconds to wait before answering each message."),
    fail_first: int = typer.Option(0, help="Answer the first N messages with HTTP 500."),
) -> None:
    """Run a dispatch-system simulator for demos: verifies signatures, dedupes, calls back."""
    from citypatrol.pipeline.dispatch.simulator import DispatchSimulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get(secret_env, "")
    if not secret:
        console.print(f"set {esc(secret_env)} to the key citypatrol signs with (dispatch.secret)", highlight=False)
        raise typer.Exit(2)
    auto = [(s, t) for s, t in (("dispatched", dispatched_after), ("handled", handled_after)) if t >= 0]
    sim = DispatchSimulator(secret, host=host, port=port, callback_url=callback_url, auto=auto if callback_url else ())
    sim.delay_s = delay
    if fail_first:
        sim.fail_next(fail_first)
    stop = _stop_on_signals()
    with sim:
        out.print(f"dispatch simulator at {esc(sim.url)}" + (f", calling back {esc(callback_url)}" if callback_url else ""), highlight=False)
        shown = 0
        while not stop.wait(0.5):
            keys = sim.accepted_keys()
            for k in keys[shown:]:
                m = sim.state.accepted[k]
                out.print(f"received {esc(m.kind)} {esc(k)}: {esc(m.body.get('category_name', ''))} {esc(m.body.get('address', ''))}", highlight=False)
            shown = len(keys)
    out.print(f"accepted {len(sim.state.accepted)}, duplicates {sim.state.duplicates}, bad signatures {sim.state.bad_signatures}")


def _when(text: str, tz: ZoneInfo, *, end: bool) -> datetime:
    """A date (whole day; `end` = the day after) or an ISO date-time, in the site's zone when naive."""
    try:
        d = date.fromisoformat(text)
        return datetime.combine(d + timedelta(days=1) if end else d, datetime.min.time(), tzinfo=tz)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD or an ISO date-time, got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=tz)


def report(
    start: str = typer.Option(..., "--from", help="First day (YYYY-MM-DD) or time (ISO), site time zone."),
    end: str = typer.Option(..., "--to", help="Last day, inclusive (YYYY-MM-DD), or an ISO time (exclusive)."),
    config: Path | None = CONFIG,
    db: str | None = DB,
    out_dir: Path = typer.Option(Path("report"), "--out", "-o", help="Output folder."),
) -> None:
    """综合评价: the period's cases through the closed loop, as HTML (with plots) and CSV."""
    from citypatrol.annotate.period_report import period_cases, render_period_report
    from citypatrol.pipeline.store.outbox import deadlines

    cfg, store = _setup(config, db)
    tz = ZoneInfo(cfg.site.timezone)
    since, until = _when(start, tz, end=False), _when(end, tz, end=True)
    if until <= since:
        console.print(f"--to ({until}) must be after --from ({since})", highlight=False)
        raise typer.Exit(2)
    try:
        records = store.list_cases(since=since, until=until, limit=10_000_000)
        overdue = {cid for cid, d in deadlines(store).items() if d.overdue_at is not None}
    finally:
        store.close()
    names = {c.id: c.name or c.id for c in cfg.cameras}
    path = render_period_report(period_cases(records, overdue, names), out_dir, site=cfg.site.name, start=since, end=until,
                                timezone=cfg.site.timezone, generated_at=datetime.now(UTC))
    out.print(f"{len(records)} case(s) · report {esc(path)} · {esc(out_dir / 'summary.csv')} · {esc(out_dir / 'cases.csv')}", highlight=False)
