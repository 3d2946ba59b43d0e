"""Model versions and promotion: which weights a configured detector runs, with the evidence for each.

The shipped registry (`registry.yaml`) lists the models we start from; this is the deployment's own
record of what it trained and promoted since, in one JSON state file (`--state`, default
`$CITYPATROL_MODEL_STATE` or `models/state.json` in the user cache, see `assets.cache_dir`):

    models.<name>.versions.<vN>  weights (a copy kept beside the state file), sha256, metrics
                                 (the `citypatrol evaluate --candidate` comparison), data manifest
                                 (the export's manifest.json: sha256, counts, date range), status
    models.<name>.current        the promoted version, or null = the config's own weights
    models.<name>.stack          what was current before (rollback pops it; null = the config's own)
    models.<name>.history        every register / promote / rollback with who and when

`<name>` is a detector's `name` in the config (`models.detectors[].name`, "coco" by default): a
promoted version replaces that detector's weights wherever citypatrol loads detectors
(`load_promoted`), and its cases carry `<name>@<vN>` as their model. A version is promoted only
with metrics recorded (`--force` says otherwise, and the history keeps that it was forced).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from citypatrol.models.assets import sha256_file
from citypatrol.models.training.dataset import default_cache_dir
from citypatrol.pipeline.config.models import ModelsConfig

STATE_ENV = "CITYPATROL_MODEL_STATE"


class PromotionError(ValueError):
    """An unknown model or version, a version without metrics, nothing to roll back."""


def default_state_path() -> Path:
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else default_cache_dir() / "models" / "state.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelState:
    """The state file; every change is one locked read-modify-write."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_state_path()

    # -- io -----------------------------------------------------------------------------------------

    def read(self) -> dict:
        if not self.path.is_file():
            return {"models": {}}
        return json.loads(self.path.read_text(encoding="utf-8"))

    @contextmanager
    def _edit(self) -> Iterator[dict]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
            tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)

    @staticmethod
    def _model(data: dict, name: str) -> dict:
        return data["models"].setdefault(name, {"current": None, "stack": [], "versions": {}, "history": []})

    # -- reads --------------------------------------------------------------------------------------

    def get(self, name: str, version: str) -> dict:
        m = self.read()["models"].get(name)
        if not m or version not in m["versions"]:
            known = ", ".join(m["versions"]) if m else "(none)"
            raise PromotionError(f"no version {version!r} of model {name!r}; known: {known}")
        return m["versions"][version]

    def current(self, name: str) -> dict | None:
        m = self.read()["models"].get(name)
        return m["versions"][m["current"]] if m and m["current"] else None

    def models(self) -> dict:
        return self.read()["models"]

    # -- changes ------------------------------------------------------------------------------------

    def register(self, name: str, weights: Path, *, metrics: dict | None = None, manifest: Path | None = None,
                 by: str = "", note: str = "") -> dict:
        """A new candidate version (weights copied beside the state file); the same file again is the same version."""
        weights = Path(weights)
        if not weights.is_file():
            raise PromotionError(f"weights {weights} not found")
        digest = sha256_file(weights)
        with self._edit() as data:
            m = self._model(data, name)
            for v in m["versions"].values():
                if v["sha256"] == digest:
                    if metrics:
                        v["metrics"] = metrics
                    if manifest:
                        v["data_manifest"] = _manifest_summary(manifest)
                    return v
            version = f"v{len(m['versions']) + 1}"
            dest = self.path.parent / name / f"{version}{weights.suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(weights, dest)
            entry = {"name": name, "version": version, "path": str(dest.resolve()), "sha256": digest,
                     "size": dest.stat().st_size, "source": str(weights.resolve()), "registered_at": _now(),
                     "status": "candidate", "metrics": metrics or {}, "note": note,
                     "data_manifest": _manifest_summary(manifest) if manifest else None}
            m["versions"][version] = entry
            m["history"].append({"action": "register", "version": version, "at": entry["registered_at"], "by": by})
            return entry

    def record_metrics(self, name: str, version: str, metrics: dict) -> None:
        with self._edit() as data:
            m = self._model(data, name)
            if version not in m["versions"]:
                raise PromotionError(f"no version {version!r} of model {name!r}")
            m["versions"][version]["metrics"] = metrics

    def promote(self, name: str, version: str, *, by: str = "", force: bool = False) -> dict:
        with self._edit() as data:
            m = self._model(data, name)
            if version not in m["versions"]:
                raise PromotionError(f"no version {version!r} of model {name!r}; known: {', '.join(m['versions']) or '(none)'}")
            entry = m["versions"][version]
            if not entry.get("metrics") and not force:
                raise PromotionError(
                    f"{name}@{version} has no recorded evaluation: run `citypatrol evaluate --candidate {entry['path']} "
                    f"--name {name}` first (or promote with --force)")
            if m["current"] == version:
                raise PromotionError(f"{name}@{version} is current already")
            if m["current"]:
                m["versions"][m["current"]]["status"] = "previous"
            m["stack"].append(m["current"])
            m["current"] = version
            entry["status"], entry["promoted_at"] = "current", _now()
            m["history"].append({"action": "promote", "version": version, "at": entry["promoted_at"], "by": by,
                                 **({"forced": True} if force and not entry.get("metrics") else {})})
            return entry

    def rollback(self, name: str, *, by: str = "") -> dict | None:
        """The current version is retired and the one before comes back; None = back to the config's own weights."""
        with self._edit() as data:
            m = data["models"].get(name)
            if not m or not m["current"]:
                raise PromotionError(f"model {name!r} has no promoted version to roll back")
            m["versions"][m["current"]]["status"] = "rolled_back"
            back = m["stack"].pop() if m["stack"] else None
            m["history"].append({"action": "rollback", "version": m["current"], "to": back, "at": _now(), "by": by})
            m["current"] = back
            if back:
                m["versions"][back]["status"] = "current"
                return m["versions"][back]
            return None


def _manifest_summary(path: Path) -> dict:
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    return {"path": str(path.resolve()), "sha256": sha256_file(path), "format": data.get("format"),
            "counts": data.get("counts"), "date_range": data.get("date_range"), "classes": data.get("classes"),
            "decisions": {k: data.get("decisions", {}).get(k) for k in ("confirm", "reject", "used")}}


def parse_ref(ref: str) -> tuple[str, str] | None:
    """`name@version` → (name, version); None when `ref` is not of that form (a path)."""
    if "@" in ref and not Path(ref).exists():
        name, version = ref.rsplit("@", 1)
        if name and version:
            return name, version
    return None


# -- loading detectors with promotions ----------------------------------------------------------------


def promoted_config(models: ModelsConfig, state: ModelState | None = None) -> tuple[ModelsConfig, dict[str, dict]]:
    """The models config with each detector's weights replaced by its promoted version, and those versions by detector name."""
    state = state or ModelState()
    promoted: dict[str, dict] = {}
    detectors = []
    for d in models.detectors:
        cur = state.current(d.name)
        if cur is not None:
            promoted[d.name] = cur
            d = d.model_copy(update={"weights": cur["path"]})
        detectors.append(d)
    return models.model_copy(update={"detectors": detectors}), promoted


def with_weights(models: ModelsConfig, detector: str | None, weights: str) -> ModelsConfig:
    """The models config with one detector (by name; None = the first) running `weights`."""
    names = [d.name for d in models.detectors]
    target = detector or names[0]
    if target not in names:
        raise PromotionError(f"no detector named {target!r} in the config; detectors: {', '.join(names)}")
    return models.model_copy(update={"detectors": [d.model_copy(update={"weights": weights}) if d.name == target else d
                                                   for d in models.detectors]})


def stamp(multi, versions: dict[str, dict]):  # noqa: ANN001, ANN201  (MultiDetector in, same out)
    """Name promoted detectors `<name>@<vN>` (their detections and cases carry it)."""
    for det in multi.detectors:
        v = versions.get(det.name)
        if v is not None:
            det.model_name, det.version = v["name"], v["version"]
    multi.version = "+".join(d.ref for d in multi.detectors)
    return multi


def load_promoted(models: ModelsConfig, state: ModelState | None = None):  # noqa: ANN201
    """`load_detectors` with the promoted versions in place of the config's weights."""
    from citypatrol.models.detector import load_detectors

    cfg, versions = promoted_config(models, state)
    return stamp(load_detectors(cfg), versions)
