"""Reading a config file: YAML → `${VAR}` secrets → validated `Config`, with errors a person can act on.

Every problem is reported at once, each with the file, line, key path
(`cameras[2].zones[0].polygon`) and what was expected.

Hostile files get the same clear error and never hang or crash the reader: files over
`MAX_CONFIG_BYTES`, nesting deeper than `MAX_DEPTH`, lists longer than `MAX_ITEMS` (a polygon of
10^5 vertices is refused in milliseconds, not parsed for seconds), YAML aliases that expand to more than
`MAX_VALUES` values (a "billion laughs" file), recursive aliases, NUL characters. A value that
came from a secret (`${VAR}`) is never echoed in an error, and a secret written into the file
itself (a password in a URL, `dispatch.secret`, …) is reported as a warning by key path.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from citypatrol.pipeline.config.models import Config

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRETS_FILE_ENV = "CITYPATROL_SECRETS_FILE"
UNSET_PLACEHOLDER = "unset-" + "x" * 26  # stands in for a ${VAR} set nowhere while the rest is checked (allow_unset)
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a config file is kilobytes; refuse anything absurd before reading it
MAX_DEPTH = 64  # mappings and lists nested deeper than this are refused (Python would run out of stack)
MAX_VALUES = 2_000_000  # values after YAML aliases are expanded (a "billion laughs" file expands to 10^9)
MAX_ITEMS = 10_000  # items in one list or mapping: the longest the schema allows (cameras)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: fast on big files
_USERINFO_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:([^@/]*)@")
# key paths whose value is a secret: it belongs in the environment or the secrets file, never in the file
_SECRET_KEYS = {("dispatch", "secret"), ("dispatch", "callback_secret"), ("dispatch", "mqtt_password")}
_SECRET_URLS = {("storage", "database_url"), ("distributed", "redis_url"), ("dispatch", "url")}

log = logging.getLogger("citypatrol.config")


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


def _interpolate(node: Any, loc: tuple[Any, ...], secrets: dict[str, str], issues: list[ConfigIssue],
                 filled: set[tuple[Any, ...]] | None = None, unset: list[tuple[tuple[Any, ...], str]] | None = None) -> Any:
    """Replace ${VAR}s; `filled` collects the key paths whose value came from a variable, `unset` the
    (key path, name) of each variable set nowhere (its place gets UNSET_PLACEHOLDER)."""
    if isinstance(node, dict):
        return {k: _interpolate(v, loc + (k,), secrets, issues, filled, unset) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, loc + (i,), secrets, issues, filled, unset) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    if "\x00" in node:
        issues.append(ConfigIssue(format_path(loc), "contains a NUL character"))
        return node
    if filled is not None and _VAR_RE.search(node):
        filled.add(loc)

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if name in secrets:
            return secrets[name]
        if default is not None:
            return default
        if unset is None:
            issues.append(ConfigIssue(format_path(loc), unset_message(name)))
            return ""
        unset.append((loc, name))
        return UNSET_PLACEHOLDER

    return _VAR_RE.sub(repl, node)


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map key paths to 1-based line numbers using the YAML node tree."""
    index: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=_LOADER)
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


def _check_shape(text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, lists longer than MAX_ITEMS and alias expansion beyond
    MAX_VALUES, from the parser's event stream (no recursion, no expansion), before anything builds
    the document."""
    open_: list[list[Any]] = []  # per open collection: [values inside, anchor, children, is mapping, start mark]
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    total = 0

    def add(n: int, mark: Any) -> None:
        nonlocal total
        if open_:
            parent = open_[-1]
            parent[0] += n
            parent[2] += 1
            n = parent[0]
            if parent[2] > MAX_ITEMS * (2 if parent[3] else 1):
                what = "a mapping with" if parent[3] else "a list of"
                raise ConfigError(file, [ConfigIssue("", f"{what} more than {MAX_ITEMS:,} items; no setting takes that many",
                                                     _line(parent[4]))])
        else:
            total += n
            n = total
        if n > MAX_VALUES:
            raise ConfigError(file, [ConfigIssue("", f"expands to more than {MAX_VALUES:,} values (YAML aliases nested "
                                                     "inside aliases?); a configuration is far smaller", _line(mark))])

    try:
        for ev in yaml.parse(text, Loader=_LOADER):
            if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                open_.append([1, ev.anchor, 0, isinstance(ev, yaml.MappingStartEvent), ev.start_mark])
                if len(open_) > MAX_DEPTH:
                    raise ConfigError(file, [ConfigIssue("", f"nested more than {MAX_DEPTH} levels deep", _line(ev.start_mark))])
            elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                size, anchor, _, _, start = open_.pop()
                if anchor is not None:
                    sizes[anchor] = size
                add(size, start)
            elif isinstance(ev, yaml.ScalarEvent):
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
                add(1, ev.start_mark)
            elif isinstance(ev, yaml.AliasEvent):
                if ev.anchor not in sizes:  # an alias inside its own anchor: an endless structure
                    raise ConfigError(file, [ConfigIssue("", f"the alias *{ev.anchor} refers to a value that contains it",
                                                         _line(ev.start_mark))])
                add(sizes[ev.anchor], ev.start_mark)
    except yaml.YAMLError:
        return  # reported with its line by the loader


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _literal_secrets(data: dict[str, Any]) -> list[str]:
    """Key paths where a secret is written into the file instead of ${VAR} (values never returned)."""
    found: list[str] = []

    def literal(value: Any) -> bool:
        return isinstance(value, str) and value != "" and not _VAR_RE.fullmatch(value)

    for section, key in _SECRET_KEYS:
        sect = data.get(section)
        if isinstance(sect, dict) and literal(sect.get(key)):
            found.append(f"{section}.{key}")
    urls = [((section, key), d.get(key)) for section, key in _SECRET_URLS if isinstance(d := data.get(section), dict)]
    cams = data.get("cameras")
    if isinstance(cams, list):
        urls += [(("cameras", i, "source"), c.get("source")) for i, c in enumerate(cams) if isinstance(c, dict)]
    for loc, url in urls:
        m = _USERINFO_RE.match(url) if isinstance(url, str) else None
        if m and literal(m.group(1)):
            found.append(format_path(loc))
    return found


def _describe(err: dict[str, Any], secret: bool = False) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see configs/example.yaml for every option)"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    if secret:
        return msg  # the value came from a ${VAR}: never echo it
    if kind not in ("missing",) and not isinstance(got, (dict, list)) and got is not None:
        shown = repr(got)
        msg += f" (got {shown[:80]}…, {len(shown)} characters)" if len(shown) > 100 else f" (got {shown})"
    return msg


def unset_message(name: str) -> str:
    return f"${{{name}}} is not set: export {name} or put it in the file named by {SECRETS_FILE_ENV}"


def parse_config(text: str, file: str = "<config>") -> Config:
    config, _ = check_config(text, file)
    assert config is not None  # without allow_unset, anything missing is a ConfigError
    return config


def check_config(text: str, file: str = "<config>", *, allow_unset: bool = False) -> tuple[Config | None, list[ConfigIssue]]:
    """The config, and the `${VAR}`s set nowhere, each with its line. They are errors (ConfigError),
    or with `allow_unset` (checking a deployment's file on another machine) left out of the check
    and returned, so everything else is still checked; the config is then None if a value that is
    not there cannot even be stood in for (a number, say)."""
    _check_shape(text, file)
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, [ConfigIssue("", f"not valid YAML: {getattr(exc, 'problem', exc)}", line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, [ConfigIssue("", f"expected a mapping at the top level, got {type(data).__name__}", 1)])
    for path in _literal_secrets(data):
        log.warning("%s: %s: a secret is written into the file; write ${NAME} and set NAME in the environment "
                    "or in the file named by %s", file, path, SECRETS_FILE_ENV)
    issues: list[ConfigIssue] = []
    filled: set[tuple[Any, ...]] = set()
    unset: list[tuple[tuple[Any, ...], str]] = []
    data = _interpolate(data, (), _read_secrets_file(), issues, filled, unset)
    lines = _line_index(text)
    missing = [ConfigIssue(format_path(loc), unset_message(name), _line_for(lines, loc)) for loc, name in unset]
    if not allow_unset:
        issues += missing
    if issues:
        raise ConfigError(file, issues)
    try:
        return Config.model_validate(data), missing
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            if any(loc[: len(u)] == u for u, _ in unset):
                continue  # a value that is not there yet (allow_unset) is not judged
            secret = any(loc[: len(f)] == f for f in filled)
            issues.append(ConfigIssue(format_path(loc), _describe(err, secret), _line_for(lines, loc)))
        if not issues:  # allow_unset, and only the placeholders were refused: the rest is fine
            return None, missing
        raise ConfigError(file, issues) from None


def load_config(path: str | Path) -> Config:
    config, _ = load_checked(path)
    assert config is not None  # without allow_unset, anything missing is a ConfigError
    return config


def load_checked(path: str | Path, *, allow_unset: bool = False) -> tuple[Config | None, list[ConfigIssue]]:
    """`load_config` that, with `allow_unset`, checks a file whose `${VAR}`s are not all set here (see `check_config`)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), [ConfigIssue("", "file not found")])
    if not p.is_file():
        raise ConfigError(str(p), [ConfigIssue("", "not a regular file")])
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(str(p), [ConfigIssue("", f"{p.stat().st_size:,} bytes: larger than any configuration "
                                                   f"({MAX_CONFIG_BYTES // (1024 * 1024)} MiB at most)")])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(p), [ConfigIssue("", "not UTF-8 text")]) from None
    config, unset = check_config(text, str(p), allow_unset=allow_unset)
    return (resolve_relative_paths(config, p.parent.resolve()) if config else None), unset


def resolve_relative_paths(config: Config, base: Path) -> Config:
    """Camera sources, reference images and the review verifier given as relative paths are relative to the config file."""
    cams = []
    for cam in config.cameras:
        update: dict[str, Any] = {}
        if not cam.is_live and not Path(cam.source).is_absolute():
            update["source"] = str((base / cam.source).resolve())
        if cam.reference_image is not None and not cam.reference_image.is_absolute():
            update["reference_image"] = (base / cam.reference_image).resolve()
        cams.append(cam.model_copy(update=update) if update else cam)
    update = {"cameras": cams}
    verifier = config.review.verifier
    if verifier is not None and not verifier.is_absolute():
        update["review"] = config.review.model_copy(update={"verifier": (base / verifier).resolve()})
    return config.model_copy(update=update)
