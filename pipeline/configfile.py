"""Reading a config file: YAML → `${VAR}` secrets → validated `Config`, with errors a person can act on.

Every problem is reported at once, each with the file, line, key path
(`cameras[2].zones[0].polygon`) and what was expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from citypatrol.pipeline.config import Config

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRETS_FILE_ENV = "CITYPATROL_SECRETS_FILE"


@dataclass(frozen=True)
class ConfigIssue:
    path: str  # key path, e.g. cameras[2].zones[0].polygon
    message: str
    line: int | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """A config file that cannot be used; `issues` lists every problem found."""

    def __init__(self, file: str, issues: list[ConfigIssue]):
        self.file = file
        self.issues = issues
        lines = "\n".join("  " + i.render(file) for i in issues)
        super().__init__(f"{file}: {len(issues)} problem(s) in the configuration:\n{lines}")


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _read_secrets_file() -> dict[str, str]:
    path = os.environ.get(SECRETS_FILE_ENV)
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(path, [ConfigIssue("", f"secrets file named by {SECRETS_FILE_ENV} does not exist")])
    secrets: dict[str, str] = {}
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(path, [ConfigIssue("", "expected NAME=value", n)])
        k, v = line.split("=", 1)
        secrets[k.strip()] = v.strip().strip('"').strip("'")
    return secrets


def _interpolate(node: Any, loc: tuple[Any, ...], secrets: dict[str, str], issues: list[ConfigIssue]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, loc + (k,), secrets, issues) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, loc + (i,), secrets, issues) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if name in secrets:
            return secrets[name]
        if default is not None:
            return default
        issues.append(
            ConfigIssue(format_path(loc), f"${{{name}}} is not set: export {name} or put it in the file named by {SECRETS_FILE_ENV}")
        )
        return ""

    return _VAR_RE.sub(repl, node)


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map key paths to 1-based line numbers using the YAML node tree."""
    index: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: Any, loc: tuple[Any, ...]) -> None:
        if node is None:
            return
        index[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                index[loc + (k.value,)] = k.start_mark.line + 1
                walk(v, loc + (k.value,))
                index[loc + (k.value,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, loc + (i,))

    walk(root, ())
    return index


def _line_for(index: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    while loc:
        if loc in index:
            return index[loc]
        loc = loc[:-1]
    return index.get(())


def _describe(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see configs/example.yaml for every option)"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    if kind not in ("missing",) and not isinstance(got, (dict, list)) and got is not None:
        msg += f" (got {got!r})"
    return msg


def parse_config(text: str, file: str = "<config>") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, [ConfigIssue("", f"not valid YAML: {getattr(exc, 'problem', exc)}", line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, [ConfigIssue("", f"expected a mapping at the top level, got {type(data).__name__}", 1)])
    issues: list[ConfigIssue] = []
    data = _interpolate(data, (), _read_secrets_file(), issues)
    if issues:
        raise ConfigError(file, issues)
    lines = _line_index(text)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            issues.append(ConfigIssue(format_path(loc), _describe(err), _line_for(lines, loc)))
        raise ConfigError(file, issues) from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), [ConfigIssue("", "file not found")])
    if not p.is_file():
        raise ConfigError(str(p), [ConfigIssue("", "not a regular file")])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(p), [ConfigIssue("", "not UTF-8 text")]) from None
    config = parse_config(text, str(p))
    base = p.parent.resolve()
    return resolve_relative_paths(config, base)


def resolve_relative_paths(config: Config, base: Path) -> Config:
    """Camera sources and reference images given as relative paths are relative to the config file."""
    cams = []
    for cam in config.cameras:
        update: dict[str, Any] = {}
        if not cam.is_live and not Path(cam.source).is_absolute():
            update["source"] = str((base / cam.source).resolve())
        if cam.reference_image is not None and not cam.reference_image.is_absolute():
            update["reference_image"] = (base / cam.reference_image).resolve()
        cams.append(cam.model_copy(update=update) if update else cam)
    return config.model_copy(update={"cameras": cams})
