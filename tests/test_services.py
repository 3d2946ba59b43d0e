"""tests/services.py: a private Redis, PostgreSQL and Mosquitto start on free loopback ports and stop
again; a service that cannot be had is named with the reason, and its tests skip saying so."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis

from tests import services


@pytest.mark.parametrize("name", ["Redis", "PostgreSQL", "Mosquitto"])
def test_a_private_instance_starts_answers_and_stops(name):
    starter = next(s for n, _, _, _, s in services.SERVICES if n == name)
    folder = Path(tempfile.mkdtemp(prefix="citypatrol-test-"))  # not under pytest's folder: PostgreSQL's account must reach it
    before = len(services._running)
    address = starter(folder)
    mine = services._running[before:]
    try:
        port = int(address.rsplit(":", 1)[1].split("/")[0])
        assert port not in (5432, 6379, 1883) and services.answers(port)
        if name == "Redis":
            assert redis.Redis.from_url(address).ping()
        elif name == "PostgreSQL":
            with psycopg.connect(address.replace("+psycopg", ""), connect_timeout=10) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("test",)
    finally:
        for proc in mine:
            proc.terminate()
            proc.wait(15)
            services._running.remove(proc)
        shutil.rmtree(folder, ignore_errors=True)
    assert not services.answers(port)


def test_a_service_that_cannot_be_had_is_named_and_its_tests_skip(monkeypatch):
    with pytest.raises(services.ServiceError, match="no-such-server is not installed"):
        services._program("no-such-server")
    monkeypatch.setattr(services, "UNAVAILABLE", {"Redis": "Redis: no instance on 127.0.0.1:6379 and none could be started"})
    with pytest.raises(pytest.skip.Exception, match="none could be started"):
        services.require("Redis")
    services.require("PostgreSQL")  # one that is there: no skip
