"""Opening the store's database: engine settings per backend, reachability, migrations to head.

- SQLite (the embedded default): WAL journal so the API can read while the pipeline writes,
  foreign keys on, a busy timeout instead of instant "database is locked", and explicit BEGIN
  (pysqlite's own transaction handling breaks SAVEPOINT and transactional DDL). Write
  transactions start with BEGIN IMMEDIATE so a read-then-write never fails on lock upgrade.
- PostgreSQL: pre-ping, short connect timeout so an unreachable server fails fast.
- Migrations run from the Alembic scripts shipped in `migrations/` as package data, inside one
  transaction under a lock (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so
  processes opening the same database at once do not race.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from citypatrol.pipeline.store.records import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
BEGIN_OPTION = "citypatrol_begin"  # execution option: the statement that opens a SQLite transaction

# Alembic keeps its running context in module globals and imports revision scripts under the
# import lock, so two threads of one process must not run it at once (the database lock below
# only serialises processes; a thread blocked on it inside Alembic could deadlock the other).
_MIGRATING = threading.Lock()

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(url: str | URL) -> str:
    """The URL as safe to log or show: any password replaced by ***."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparseable: redact by pattern
        return _PASSWORD_IN_URL.sub(r"\1***@", url)


def create_store_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine configured for the store; raises StoreError for a URL that cannot be used."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {redact(url)!r}: expected e.g. sqlite:///citypatrol.db or postgresql+psycopg://user@host/db") from exc
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, echo)
        if backend == "postgresql":
            connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if parsed.get_driver_name() == "psycopg" else {}
            return create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args=connect_args)
    except NoSuchModuleError as exc:
        raise StoreError(f"no database driver for {redact(parsed)}: {exc}") from exc
    raise StoreError(f"unsupported database {redact(parsed)}: citypatrol supports sqlite:/// and postgresql+psycopg://")


def _sqlite_engine(url: URL, echo: bool) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        engine = create_engine(url, echo=echo, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        if not database.startswith("file:"):
            folder = Path(database).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the folder {folder} for the citypatrol database {redact(url)}: {exc}") from None
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 (DBAPI types)
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        try:
            if not in_memory:
                _switch_to_wal(cur)
                cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL-safe
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql(conn.get_execution_options().get(BEGIN_OPTION, "BEGIN"))

    return engine


def _switch_to_wal(cur) -> None:  # noqa: ANN001 (DBAPI cursor)
    """Turn on WAL, retrying while another connection holds the lock.

    On a new database two connections switching at once can deadlock on the lock upgrade, and
    SQLite then answers "database is locked" at once instead of calling the busy handler.
    """
    locked = retry_if_exception(lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc))
    Retrying(retry=locked, wait=wait_fixed(0.02), stop=stop_after_delay(SQLITE_BUSY_MS / 1000), reraise=True)(
        cur.execute, "PRAGMA journal_mode=WAL")


def unreachable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (down, restarting, locked past
    its busy timeout), as opposed to refusing the data: waiting and retrying can help."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, IntegrityError):
        return False
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(getattr(exc, "connection_invalidated", False))


def check_reachable(engine: Engine) -> None:
    """Connect once; a clear StoreUnavailable naming the (redacted) URL if that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise StoreUnavailable(f"cannot open the citypatrol database at {redact(engine.url)}: {_detail(engine, exc)}") from None


def _detail(engine: Engine, exc: DBAPIError) -> str:
    """The driver's message on one line, with the password scrubbed should a driver echo it."""
    detail = " ".join(str(exc.orig if exc.orig is not None else exc).split())
    password = engine.url.password
    if password:
        detail = detail.replace(str(password), "***")
    return detail


def migrate(engine: Engine) -> str:
    """Upgrade the database to the newest schema shipped with citypatrol; returns the revision."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    head = scripts.get_current_head()
    known = {rev.revision for rev in scripts.walk_revisions()}
    try:
        with _MIGRATING, engine.connect() as conn:
            conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('citypatrol.migrate.' || current_schema()))"))
                current = MigrationContext.configure(conn).get_current_heads()
                unknown = [rev for rev in current if rev not in known]
                if unknown:
                    raise StoreError(
                        f"the database at {redact(engine.url)} is at schema revision {', '.join(unknown)}, "
                        f"which this citypatrol does not know (newest here: {head}); upgrade citypatrol"
                    )
                if tuple(current) != (head,):
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
    except DBAPIError as exc:
        raise StoreError(f"upgrading the citypatrol database at {redact(engine.url)} failed: {_detail(engine, exc)}") from None
    return str(head)
