"""The asset resolver: find a weights file, model folder or video by name, checked by sha256.

Weights and footage are never committed. Each asset is described by an `AssetEntry` (name, relative
path, sha256 — or one sha256 per file for a folder such as `*_openvino_model/` — size, source URL,
licence). `resolve_asset` looks in this order and returns the first copy it finds:

1. an explicit path given by the caller (a config key, a CLI option); it must exist;
2. the folder the entry ships in, for assets that live in the repository (`local_root`);
3. the mirror folder `$CITYPATROL_ASSET_MIRROR/<path>` (a shared read-only copy of all assets);
4. the user cache `$CITYPATROL_CACHE/<path>` (default: the user's cache folder, `~/.cache/citypatrol/<path>` on Linux);
5. the entry's source URL, downloaded with httpx into the cache.

A copy found in the mirror is also copied into the user cache (once), so `citypatrol` finds it
later without `CITYPATROL_ASSET_MIRROR` set, e.g. run outside `make`.

Whatever copy is found is checked against the entry's sha256 before it is used: a mismatch is an
`AssetError` naming the file, the expected and the actual hash, never a silent fallback. A check
that passed is remembered for the process (keyed by path, size and mtime), so resolving the same
asset again is cheap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import httpx
from platformdirs import user_cache_dir
from pydantic import BaseModel, ConfigDict, Field, model_validator

MIRROR_ENV = "CITYPATROL_ASSET_MIRROR"
CACHE_ENV = "CITYPATROL_CACHE"

Origin = Literal["explicit", "local", "mirror", "cache", "download"]


class AssetError(RuntimeError):
    """An asset cannot be found, fetched, or does not match its recorded hash."""


class AssetEntry(BaseModel):
    """One asset: where it lives relative to the mirror/cache and how to check it.

    A single file has `sha256`; a folder (e.g. an OpenVINO model) has `files`, one sha256 per file
    relative to the folder. `source_url` is the file's URL, or for a folder the base URL each file
    name is appended to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Stable name used in configs and manifests.")
    path: str = Field(min_length=1, description="Relative POSIX path under the mirror, the cache or local_root.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="sha256 of a single file.")
    files: dict[str, str] = Field(default_factory=dict, description="Folder assets: relative file path → sha256.")
    size: int | None = Field(None, ge=0, description="Bytes (file) or total bytes (folder); informative.")
    source_url: str | None = Field(None, description="Where to download it from; for a folder, the base URL.")
    licence: str = Field("", description="Licence of the asset as stated by its source.")
    local_root: Path | None = Field(None, description="Folder the asset ships in (assets kept in the repository).")

    @model_validator(mode="after")
    def _one_kind_of_hash(self) -> "AssetEntry":
        if (self.sha256 is None) == (not self.files):
            raise ValueError(f"asset {self.name!r}: give either sha256 (a file) or files (a folder), not both or neither")
        for rel, digest in self.files.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"asset {self.name!r}: bad sha256 for {rel!r}")
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"asset {self.name!r}: file path {rel!r} must be relative, inside the folder")
        if Path(self.path).is_absolute() or ".." in Path(self.path).parts:
            raise ValueError(f"asset {self.name!r}: path {self.path!r} must be relative")
        return self

    @property
    def is_folder(self) -> bool:
        return bool(self.files)


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where citypatrol keeps what it fetched or built (assets, datasets, training runs, model
    promotion state): `$CITYPATROL_CACHE`, else the user's cache folder (`~/.cache/citypatrol` on
    Linux), never the installed package."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path(user_cache_dir("citypatrol", appauthor=False))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}
log = logging.getLogger(__name__)


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def _present(entry: AssetEntry, path: Path) -> bool:
    if entry.is_folder:
        return path.is_dir() and all((path / rel).is_file() for rel in entry.files)
    return path.is_file()


def verify_asset(entry: AssetEntry, path: Path) -> None:
    """Raise AssetError unless `path` holds exactly the bytes the entry records."""
    checks = [(path / rel, digest) for rel, digest in entry.files.items()] if entry.is_folder else [(path, entry.sha256)]
    for file, expected in checks:
        if not file.is_file():
            raise AssetError(f"asset {entry.name!r}: {file} is missing")
        actual = _cached_sha256(file)
        if actual != expected:
            raise AssetError(
                f"asset {entry.name!r}: sha256 mismatch for {file}: expected {expected}, actual {actual} "
                "(the file is corrupt or a different version; replace or delete it)"
            )


def locate_asset(entry: AssetEntry, explicit: Path | None = None) -> tuple[Path, Origin] | None:
    """The first local copy in lookup order, without hashing or downloading; None if there is none."""
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if not explicit.exists():
            raise AssetError(f"asset {entry.name!r}: explicit path {explicit} does not exist")
        return explicit, "explicit"
    candidates: list[tuple[Path | None, Origin]] = [
        (entry.local_root / entry.path if entry.local_root else None, "local"),
        (mirror / entry.path if (mirror := mirror_dir()) else None, "mirror"),
        (cache_dir() / entry.path, "cache"),
    ]
    for path, origin in candidates:
        if path is not None and _present(entry, path):
            return path, origin
    return None


def resolve_asset(
    entry_or_name: AssetEntry | str,
    explicit: Path | None = None,
    *,
    download: bool = True,
) -> Path:
    """Path of a verified local copy of the asset, downloading it into the cache if needed.

    A string is looked up in the model registry. Raises AssetError if no copy can be had or the copy
    found does not match its sha256.
    """
    entry = _lookup(entry_or_name) if isinstance(entry_or_name, str) else entry_or_name
    found = locate_asset(entry, explicit)
    if found is not None:
        verify_asset(entry, found[0])
        if found[1] == "mirror":
            _keep_in_cache(entry, found[0])
        return found[0]
    where = f"{MIRROR_ENV}={mirror_dir() or '(unset)'}, cache {cache_dir()}"
    if not entry.source_url:
        raise AssetError(
            f"asset {entry.name!r} ({entry.path}) not found ({where}) and it has no source URL: "
            f"copy it into the mirror and set {MIRROR_ENV}, or pass its path explicitly"
        )
    if not download:
        raise AssetError(f"asset {entry.name!r} ({entry.path}) not found ({where}); downloading was not allowed")
    return _download(entry)


def _keep_in_cache(entry: AssetEntry, source: Path) -> None:
    """Copy a verified mirror asset into the user cache unless it is there; a failure only warns (the
    mirror copy serves this run)."""
    target = cache_dir() / entry.path
    if _present(entry, target):
        return
    pairs = [(source / rel, target / rel) for rel in entry.files] if entry.is_folder else [(source, target)]
    try:
        for src, dest in pairs:
            if dest.is_file():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            os.close(fd)
            try:
                shutil.copyfile(src, tmp_name)
                Path(tmp_name).replace(dest)  # whole or not at all, also with another process copying it
            finally:
                Path(tmp_name).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("asset %r: could not keep a copy in the cache %s: %s", entry.name, target, exc)


def _lookup(name: str) -> AssetEntry:
    from citypatrol.models.registry import RegistryError, load_registry  # the registry builds on this module

    try:
        return load_registry().get(name)
    except RegistryError as exc:
        raise AssetError(str(exc)) from None


def _download(entry: AssetEntry) -> Path:
    """Fetch the asset into the cache; each file is hashed while written and renamed into place only if it matches."""
    target = cache_dir() / entry.path
    jobs: list[tuple[str, Path, str]]
    if entry.is_folder:
        base = entry.source_url.rstrip("/")  # type: ignore[union-attr]
        jobs = [(f"{base}/{rel}", target / rel, digest) for rel, digest in entry.files.items()]
    else:
        jobs = [(entry.source_url, target, entry.sha256)]  # type: ignore[list-item]
    for url, dest, expected in jobs:
        if dest.is_file() and _cached_sha256(dest) == expected:
            continue
        _fetch(entry, url, dest, expected)
    verify_asset(entry, target)
    return target


def _fetch(entry: AssetEntry, url: str, dest: Path, expected: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, follow_redirects=True, timeout=30) as resp:
            resp.raise_for_status()
            for block in resp.iter_bytes(1 << 20):
                h.update(block)
                out.write(block)
        actual = h.hexdigest()
        if actual != expected:
            raise AssetError(
                f"asset {entry.name!r}: sha256 mismatch for {dest.name} downloaded from {url}: "
                f"expected {expected}, actual {actual}"
            )
        tmp.replace(dest)
    except httpx.HTTPError as exc:
        raise AssetError(
            f"asset {entry.name!r}: {dest.name} is not available locally and downloading {url} failed "
            f"({type(exc).__name__}: {exc}); offline, put a copy in the mirror folder and set {MIRROR_ENV}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
