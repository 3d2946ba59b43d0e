"""Redis, PostgreSQL and Mosquitto for a test run, on any machine.

Where the machine runs one on its usual loopback port (6379, 5432, 1883), the tests use it. Where
none answers, a private instance is started for this run on a free loopback port, with its data in
a temporary folder, and stopped when the run ends. Tests find them through the environment:

    CITYPATROL_TEST_POSTGRES  postgresql+psycopg://postgres@127.0.0.1:PORT/test
    CITYPATROL_TEST_REDIS     redis://127.0.0.1:PORT/0
    CITYPATROL_TEST_MQTT      127.0.0.1:PORT

(set one yourself to point the tests at another server). A service whose programs are missing or
that does not come up is listed in `UNAVAILABLE` with the reason, and its tests skip saying it;
`make test` installs the programs (Debian's redis-server, postgresql, mosquitto) beforehand.
`CITYPATROL_TEST_SERVICES=private` starts private instances even where the machine has its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from glob import glob
from pathlib import Path

UNAVAILABLE: dict[str, str] = {}  # service -> why there is none for this run
_running: list[subprocess.Popen] = []
_folders: list[Path] = []


class ServiceError(RuntimeError):
    """A private instance could not be started; the message says why."""


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name: str, *extra_dirs: str) -> str:
    for folder in extra_dirs:
        for found in sorted(glob(os.path.join(folder, name)), reverse=True):
            return found
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise ServiceError(f"{name} is not installed (Debian: `make system-deps` installs it)")
    return found


def _wait(port: int, proc: subprocess.Popen, what: str, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers(port):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
    raise ServiceError(f"{what} did not start on 127.0.0.1:{port}: {tail.strip() or 'no output'}")


def _spawn(cmd: list[str], folder: Path, name: str, port: int, **kw) -> None:
    log = folder / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    _running.append(proc)
    _wait(port, proc, name, log)


def _redis(folder: Path) -> str:
    port = _free_port()
    _spawn([_program("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(folder)], folder, "redis", port)
    return f"redis://127.0.0.1:{port}/0"


def _mosquitto(folder: Path) -> str:
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    conf.chmod(0o644)
    _spawn([_program("mosquitto"), "-c", str(conf)], folder, "mosquitto", port)
    return f"127.0.0.1:{port}"


def _postgres(folder: Path) -> str:
    bins = "/usr/lib/postgresql/*/bin"
    initdb, postgres = _program("initdb", bins), _program("postgres", bins)
    data, port = folder / "pg", _free_port()
    as_user: Callable[[], None] | None = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres (or nobody) account
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = pwd.getpwnam("nobody")
        os.chown(folder, account.pw_uid, account.pw_gid)

        def as_user() -> None:
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    log = folder / "initdb.log"
    with log.open("wb") as out:
        done = subprocess.run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                              stdout=out, stderr=subprocess.STDOUT, preexec_fn=as_user, timeout=120)
    if done.returncode != 0:
        raise ServiceError(f"initdb failed: {log.read_text(errors='replace')[-800:].strip()}")
    _spawn([postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(folder), "-c", "fsync=off",
            "-c", "max_connections=200"], folder, "postgres", port, preexec_fn=as_user)
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE DATABASE test")
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"


# service, variable, usual port, value for the machine's own instance, starter of a private one
SERVICES: list[tuple[str, str, int, str, Callable[[Path], str]]] = [
    ("PostgreSQL", "CITYPATROL_TEST_POSTGRES", 5432, "postgresql+psycopg://postgres@127.0.0.1:5432/test", _postgres),
    ("Redis", "CITYPATROL_TEST_REDIS", 6379, "redis://127.0.0.1:6379/0", _redis),
    ("Mosquitto", "CITYPATROL_TEST_MQTT", 1883, "127.0.0.1:1883", _mosquitto),
]


def start() -> None:
    """Point every service variable at a running instance, starting private ones where needed."""
    private = os.environ.get("CITYPATROL_TEST_SERVICES") == "private"
    for name, variable, port, usual, starter in SERVICES:
        if os.environ.get(variable):
            continue
        if not private and answers(port):
            os.environ[variable] = usual
            continue
        folder = Path(tempfile.mkdtemp(prefix=f"citypatrol-test-{name.lower()}-"))
        _folders.append(folder)
        try:
            os.environ[variable] = starter(folder)
        except (ServiceError, OSError, subprocess.SubprocessError) as exc:
            UNAVAILABLE[name] = f"{name}: no instance on 127.0.0.1:{port} and none could be started: {exc}"


def stop() -> None:
    for proc in reversed(_running):
        proc.terminate()
    for proc in reversed(_running):
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    _running.clear()
    for folder in _folders:
        shutil.rmtree(folder, ignore_errors=True)
    _folders.clear()


def mqtt_address() -> tuple[str, int]:
    host, _, port = os.environ.get("CITYPATROL_TEST_MQTT", "127.0.0.1:1883").rpartition(":")
    return host, int(port)


def require(name: str) -> None:
    """Skip the calling test, with the reason, when `name` could not be had for this run."""
    if name in UNAVAILABLE:
        import pytest

        pytest.skip(UNAVAILABLE[name])
