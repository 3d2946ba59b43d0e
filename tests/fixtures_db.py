"""Databases for tests: SQLite in the test's folder, or a schema of its own on the machine's PostgreSQL.

Every PostgreSQL test gets a fresh schema (`search_path` set in the URL), dropped afterwards, so tests
never see each other's rows and the `test` database stays clean.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from citypatrol.pipeline.store.case_store import Store, open_store
from tests import services

PG_URL = os.environ.get("CITYPATROL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_engine() -> Engine:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def pg_reachable(engine: Engine, purpose: str) -> None:
    """Fail (not skip) with the reason: the tests must run on PostgreSQL too. Skip only where there is no
    PostgreSQL on this machine and none could be started (tests/services.py says why)."""
    services.require("PostgreSQL")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL for {purpose} is not reachable at {make_url(PG_URL).render_as_string(hide_password=True)}: {exc}")


def schema_url(schema: str) -> str:
    return make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@contextmanager
def pg_schema(prefix: str, admin: Engine | None = None, *, drop_wait_s: float = 0.0) -> Iterator[str]:
    """A new schema named `prefix_…`; yields its name and drops it afterwards.

    `drop_wait_s`: keep retrying the drop this long (for tests that restart the server).
    """
    own = admin is None
    admin = admin or pg_engine()
    if own:
        pg_reachable(admin, prefix)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        deadline = time.monotonic() + drop_wait_s
        while True:
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                admin.dispose()
                time.sleep(1)
        if own:
            admin.dispose()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = pg_engine()
    pg_reachable(engine, "the store, API and dispatch tests")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """Each test twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}"
        return
    with pg_schema("cp_test", request.getfixturevalue("pg_admin")) as schema:
        yield schema_url(schema)


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()
