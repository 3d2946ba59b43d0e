"""`citypatrol serve` and `citypatrol users …`: start the review center, manage who may use it.

Passwords never come from the command line (they would land in shell history and `ps`): they are
read from the environment variable named by `--password-env`, from stdin with `--password-stdin`,
or typed at a hidden prompt. API token secrets are printed once and never stored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.config.loading import load_config
from citypatrol.pipeline.cli.markup import esc

if TYPE_CHECKING:
    from citypatrol.pipeline.store.users import UserStore

console = Console(stderr=True)
users_app = typer.Typer(no_args_is_help=True, help="Users and API tokens of the review center.")


@contextmanager
def _users(config: Path | None, db: str | None) -> Iterator[UserStore]:
    """The review center's users in the configured store, closed afterwards; a refusal (UserError)
    ends the command with its message and exit code 1."""
    from citypatrol.pipeline.store.users import UserError, UserStore

    _, store = _open(config, db)
    try:
        yield UserStore(store.engine)
    except UserError as exc:
        console.print(f"[red]✗[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        store.close()


def _open(config: Path | None, db: str | None):
    from citypatrol.pipeline.store.case_store import open_store
    from citypatrol.pipeline.store.records import StoreError

    cfg = load_config(config) if config else Config()
    try:
        return cfg, open_store(db or cfg.storage.database_url)
    except StoreError as exc:
        console.print(f"[red]✗[/red] {esc(exc)}", highlight=False)
        raise typer.Exit(2) from None


def serve(
    config: Path | None = typer.Option(None, "--config", "-c", help="Config file (site, cameras, codes, api)."),
    db: str | None = typer.Option(None, "--db", help="Database URL; default: the config's storage.database_url."),
    evidence: Path | None = typer.Option(None, "--evidence", help="Evidence folder; default: the config's storage.evidence_dir."),
    host: str | None = typer.Option(None, help="Address to listen on; default: the config's api.host."),
    port: int | None = typer.Option(None, help="Port; default: the config's api.port."),
) -> None:
    """Start the review center (REST API and web UI)."""
    import uvicorn

    from citypatrol.api.app import create_app, proxy_options
    from citypatrol.api.health import StatusFileHealth
    from citypatrol.pipeline.store.users import UserStore

    cfg, store = _open(config, db)
    evidence_dir = evidence or cfg.storage.evidence_dir
    if not evidence_dir.is_dir():
        console.print(f"[yellow]evidence folder {esc(evidence_dir)} does not exist (yet): pictures will be missing[/yellow]", highlight=False)
    if not UserStore(store.engine).users():
        console.print("[yellow]no users yet: add one with[/yellow] citypatrol users add NAME --role admin"
                      + (f" --db {esc(store.url)}" if db else ""), highlight=False)
    app = create_app(cfg, store, evidence_dir, health=StatusFileHealth(cfg.live.status_file))
    h, p = host or cfg.api.host, port or cfg.api.port
    console.print(f"citypatrol review center on http://{esc(h)}:{p}/  (database {esc(store.url)}, evidence {esc(evidence_dir)})", highlight=False)
    try:
        # open live streams (SSE) would hold a stop for ever: give them 3 s
        uvicorn.run(app, host=h, port=p, log_level="info", server_header=False, timeout_graceful_shutdown=3, **proxy_options(cfg))
    finally:
        store.close()


def _password(env: str | None, from_stdin: bool) -> str:
    if env:
        value = os.environ.get(env)
        if not value:
            console.print(f"[red]✗[/red] environment variable {esc(env)} is not set or empty", highlight=False)
            raise typer.Exit(2)
        return value
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (letters, digits, _ . @ -)."),
    role: str = typer.Option(..., "--role", "-r", help="reviewer, analyst or admin."),
    config: Path | None = typer.Option(None, "--config", "-c"),
    db: str | None = typer.Option(None, "--db", help="Database URL; default: the config's."),
    password_env: str | None = typer.Option(None, "--password-env", help="Read the password from this environment variable."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin."),
) -> None:
    """Add a user; the password is prompted for (or taken from an env var / stdin), never from argv."""
    with _users(config, db) as users:
        user = users.add_user(name, _password(password_env, password_stdin), role, actor="cli")
    console.print(f"✓ user {esc(user.username)} ({user.role.value}) added", highlight=False)


@users_app.command("list")
def users_list(config: Path | None = typer.Option(None, "--config", "-c"), db: str | None = typer.Option(None, "--db")) -> None:
    """List users."""
    with _users(config, db) as users:
        for u in users.users():
            print(f"{u.username}\t{u.role.value}\t{'active' if u.active else 'disabled'}")


@users_app.command("token")
def users_token(
    name: str = typer.Argument(..., help="What the token is for, e.g. 'dispatch-callbacks'."),
    role: str = typer.Option(..., "--role", "-r", help="reviewer, analyst or admin."),
    config: Path | None = typer.Option(None, "--config", "-c"),
    db: str | None = typer.Option(None, "--db"),
) -> None:
    """Create an API token for a machine; the secret is printed once, on stdout."""
    with _users(config, db) as users:
        secret, token = users.create_token(name, role, actor="cli")
    console.print(f"✓ token {token.id} '{esc(token.name)}' ({token.role.value}); it is shown only now:", highlight=False)
    print(secret)


def demo_login(db_url: str, username: str = "demo") -> str:
    """Give the demo's store a reviewer `username` with a fresh random password; returns the password
    (printed once by `citypatrol demo`; run the demo again for a new one)."""
    import secrets

    from citypatrol.pipeline.store.case_store import open_store
    from citypatrol.pipeline.store.users import UserStore

    password = secrets.token_urlsafe(12)
    with open_store(db_url) as store:
        users = UserStore(store.engine)
        if users.user(username) is None:
            users.add_user(username, password, "reviewer", actor="demo")
        else:
            users.set_password(username, password, actor="demo")
    return password
