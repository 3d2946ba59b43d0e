"""Deployment files: docker-compose.yml, Dockerfile, .dockerignore and deploy/citypatrol.yaml.

Docker does not run on the test machines, so these check the files themselves: the compose file
parses; every citypatrol service runs a real `citypatrol` subcommand (looked up in
`citypatrol --help`, options in the subcommand's own help); secrets come from the environment
and are never written into any of the files; the image gets no weights (the asset mirror is
mounted at /assets). Where Docker is installed, `docker compose config` validates the file too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from citypatrol.pipeline.config.loading import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY_CONFIG = REPO / "deploy" / "citypatrol.yaml"
CONFIG_IN_CONTAINER = "/etc/citypatrol/config.yaml"

# The roles the compose stack must run, and the citypatrol command of each (issue 5, item 4).
# worker and casekeeper are the distributed mode's commands: required here, not skipped.
ROLES = {"worker": "worker", "casekeeper": "casekeeper", "api": "serve", "dispatcher": "dispatch run", "cluster-exporter": "cluster exporter"}

SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key|credential|auth)")
# A compose reference to the environment: ${VAR} or ${VAR:?message} (required); a default (${VAR:-x}) would hard-code one.
ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}$")
URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://([^/\s@\"']*)@", re.I)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _citypatrol_services(doc: dict) -> dict[str, dict]:
    return {name: svc for name, svc in doc["services"].items() if "build" in svc or "citypatrol" in str(svc.get("image", ""))}


@cache
def _help(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "citypatrol.pipeline.cli.main", *args, "--help"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"citypatrol {' '.join(args)} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def _listed_commands(help_text: str) -> set[str]:
    """Command names in the 'Commands' panel of a typer/rich --help page."""
    names, inside = set(), False
    for line in help_text.splitlines():
        if "Commands" in line and line.lstrip().startswith("╭"):
            inside = True
            continue
        if inside and line.lstrip().startswith("╰"):
            inside = False
            continue
        m = re.match(r"^\s*│ ([a-z][\w-]*)(?:\s|│|$)", line) if inside else None
        if m:
            names.add(m.group(1))
    return names


def _subcommand(argv: list[str]) -> tuple[list[str], list[str]]:
    """(command path, options) of a `citypatrol` argument list: ["dispatch", "run", "--config", …] → (["dispatch", "run"], ["--config"])."""
    path = argv[:1]
    if len(argv) > 1 and not argv[1].startswith("-") and _listed_commands(_help(argv[0])):
        path = argv[:2]  # a command group and its subcommand
    return path, [a.split("=")[0] for a in argv if a.startswith("--")]


def test_compose_parses_and_has_every_role() -> None:
    doc = _compose()
    services = doc["services"]
    assert {"redis", "postgres", *ROLES} <= set(services), sorted(services)
    assert services["redis"]["image"].startswith("redis:") and services["postgres"]["image"].startswith("postgres:")
    for name in ROLES:
        assert name in _citypatrol_services(doc), f"{name} does not run the citypatrol image"
        deps = services[name].get("depends_on", {})
        assert {"postgres", "redis"} <= set(deps), f"{name} must wait for postgres and redis"


@pytest.mark.parametrize(("service", "command"), sorted(ROLES.items()))
def test_each_role_runs_its_citypatrol_command(service: str, command: str) -> None:
    """worker and casekeeper included: if the CLI lacks one, this fails and says so (no skip)."""
    argv = _compose()["services"][service]["command"]
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), f"{service}: command must be a list"
    words = command.split()
    assert argv[: len(words)] == words, f"{service} should run `citypatrol {command}`, runs {argv}"
    top = _listed_commands(_help())
    assert words[0] in top, (f"`citypatrol {words[0]}` is not in `citypatrol --help` (commands: {sorted(top)}); "
                             f"the compose service {service!r} needs it")
    if len(words) > 1:
        assert words[1] in _listed_commands(_help(words[0])), f"`citypatrol {command}` is not in `citypatrol {words[0]} --help`"


def test_every_citypatrol_service_command_and_option_exists() -> None:
    top = _listed_commands(_help())
    assert {"run", "serve", "status", "dispatch", "cameras"} <= top, top  # the parser reads the help page
    for name, svc in _citypatrol_services(_compose()).items():
        path, options = _subcommand(svc["command"])
        assert path and path[0] in top, f"{name}: `citypatrol {' '.join(svc['command'])}`: no such command in {sorted(top)}"
        help_text = _help(*path)
        for opt in options:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", help_text), f"{name}: `citypatrol {' '.join(path)}` has no option {opt}"
        if "--config" in options:
            assert svc["command"][svc["command"].index("--config") + 1] == CONFIG_IN_CONTAINER


def test_secrets_come_from_the_environment() -> None:
    doc = _compose()
    for name, svc in doc["services"].items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping, please"
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert isinstance(value, str) and ENV_REF.match(value), (
                    f"{name}: {key} must be ${{{key}}} or ${{{key}:?…}} from the environment, not {value!r}")
    for path in (COMPOSE, DOCKERFILE, DEPLOY_CONFIG):
        text = path.read_text(encoding="utf-8")
        for m in URL_USERINFO.finditer(text):
            password = m.group(1).partition(":")[2]  # a user name may be literal, a password never
            assert not password or re.fullmatch(r"(\$\{[A-Za-z_][A-Za-z0-9_]*\})+", password), (
                f"{path.name}: a literal password in a URL ({m.group(0)}): use ${{VAR}}")


def test_no_secret_is_written_into_the_image() -> None:
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if re.match(r"\s*(ENV|ARG)\s", line):
            assert not SECRET_NAME.search(line), f"Dockerfile sets a secret: {line.strip()}"
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").split()
    for pattern in (".env", ".git", ".venv"):
        assert pattern in ignored, f".dockerignore should keep {pattern} out of the build context"


def test_config_names_its_secrets_and_the_compose_provides_them(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load(DEPLOY_CONFIG.read_text(encoding="utf-8"))
    assert raw["dispatch"]["secret"].startswith("${") and raw["dispatch"]["callback_secret"].startswith("${")
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", yaml.safe_dump(raw, allow_unicode=True)))  # values, not comments
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "DISPATCH_SECRET", "DISPATCH_CALLBACK_SECRET", "GATEWAY_PASSWORD"} <= needed
    doc = _compose()
    for name, svc in _citypatrol_services(doc).items():
        missing = needed - set(svc.get("environment", {}))
        assert not missing, f"{name}: the config needs {sorted(missing)} but the service's environment lacks them"
        mounts = [v.rsplit(":", 2) for v in svc.get("volumes", [])]
        assert any(m[1:] == [CONFIG_IN_CONTAINER, "ro"] for m in mounts), f"{name}: config not mounted read-only"

    for var in needed:
        monkeypatch.setenv(var, f"dummy-{var.lower()}")
    monkeypatch.setenv("DISPATCH_URL", "https://dispatch.example/api/cases")
    cfg = load_config(DEPLOY_CONFIG)
    db = urlsplit(cfg.storage.database_url)
    assert db.scheme.startswith("postgresql") and db.hostname == "postgres" and db.password == "dummy-postgres_password"
    redis_url = urlsplit(cfg.distributed.redis_url)
    assert redis_url.hostname == "redis" and redis_url.password == "dummy-redis_password"
    assert set(doc["services"]) >= {db.hostname, redis_url.hostname}  # the URLs name the compose services
    assert str(cfg.storage.evidence_dir) == "/data/evidence"
    assert any(v.endswith(":/data/evidence") for v in doc["services"]["api"]["volumes"])
    assert cfg.api.port == 8080 and "8080" in doc["services"]["api"]["command"]


def test_image_has_no_weights_and_reads_the_asset_mirror() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"apt-get install[^\n]*\bffmpeg\b", text)
    assert re.search(r"pip install[^\n]*(?<![\w/-])\.(\s|$|;)", text), "install the project itself, with pyproject's pins"
    assert "CITYPATROL_ASSET_MIRROR=/assets" in text
    for line in text.splitlines():
        if re.match(r"\s*(COPY|ADD)\s", line):
            assert not re.search(r"\.(pt|onnx|engine|mp4)\b|sample_videos|shared/assets|https?://", line), line
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").split()
    for pattern in ("*.pt", "*.onnx", "*.mp4", "sample_videos", ".citypatrol-cache"):
        assert pattern in ignored, f".dockerignore should keep {pattern} out of the image"
    for name, svc in _citypatrol_services(_compose()).items():
        mounts = [v.rsplit(":", 2) for v in svc.get("volumes", [])]
        assert any(m[1:] == ["/assets", "ro"] for m in mounts), f"{name}: mount the asset mirror read-only at /assets"
        assert svc["environment"]["CITYPATROL_ASSET_MIRROR"] == "/assets"


def test_pins_the_image_installs_are_the_projects() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'"torch==[\d.]+"', pyproject) and re.search(r'"torchvision==[\d.]+"', pyproject)
    copied = re.findall(r"^COPY\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert "pyproject.toml" in copied
    dirs = re.findall(r'^"citypatrol\.[\w.]+" = "([\w/]+)"', pyproject, re.M)
    for d in dirs:  # every package folder pyproject maps is in the image
        top = d.split("/")[0]
        assert any(c.rstrip("/") == top for c in copied), f"Dockerfile does not COPY {top}/"


def _has_compose() -> bool:
    return shutil.which("docker") is not None and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="Docker with the compose plugin is not installed on this machine")
def test_docker_compose_config_validates() -> None:  # pragma: no cover - needs Docker
    env = {**os.environ, "CITYPATROL_ASSETS": "/tmp", **{v: "x" for v in (
        "POSTGRES_PASSWORD", "REDIS_PASSWORD", "DISPATCH_URL", "DISPATCH_SECRET", "DISPATCH_CALLBACK_SECRET",
        "GATEWAY_HOST", "GATEWAY_USER", "GATEWAY_PASSWORD")}}
    proc = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
