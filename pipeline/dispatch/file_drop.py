"""JSONL file-drop adapter, for air-gapped hand-over: one line per message in a drop folder.

Each line: {"idempotency_key", "case_id", "kind", "timestamp", "signature", "message": {…}} where
`signature` is HMAC-SHA256 over "<timestamp>." + the message as compact JSON (the exact bytes
citypatrol signed; `json.dumps(message, ensure_ascii=False, separators=(",", ":"))` reproduces them).

- Atomic append: each line is written with one `write` on an O_APPEND descriptor and fsynced; a
  line torn by a crash is skipped by readers and never glued to the next line.
- Rotation: past `dispatch.file_rotate_bytes` the current file `citypatrol-cases.jsonl` is renamed
  (atomically) to `citypatrol-cases-<UTC time>.jsonl`; the hand-over process takes rotated files.
- Idempotent by key: a key already present in any file of the folder is not written again (the
  delivery counts as a duplicate). Writers of one folder serialise on a lock file (flock).
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from citypatrol.pipeline.dispatch.base import Delivery, Outcome
from citypatrol.pipeline.dispatch.signing import signature

CURRENT = "citypatrol-cases.jsonl"
PATTERN = "citypatrol-cases*.jsonl"
LOCK = ".citypatrol-cases.lock"


class FileAdapter:
    name = "file"

    def __init__(self, folder: Path, secret: str, rotate_bytes: int) -> None:
        self.folder = Path(folder)
        self._secret = secret
        self.rotate_bytes = rotate_bytes
        self._keys: set[str] = set()
        self._seen: dict[str, tuple[int, int]] = {}  # file name -> (size, mtime_ns) already scanned

    def send(self, delivery: Delivery) -> Outcome:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    return self._append(delivery)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as exc:
            return Outcome.failed(f"cannot write to {self.folder}: {exc.strerror or exc}")

    def _append(self, d: Delivery) -> Outcome:
        self._rescan()
        if d.idempotency_key in self._keys:
            return Outcome.delivered("already in the drop folder", duplicate=True)
        record = {
            "idempotency_key": d.idempotency_key, "case_id": d.case_id, "kind": d.kind, "timestamp": d.timestamp,
            "signature": signature(self._secret, d.timestamp, d.body) if self._secret else "",
            "message": json.loads(d.body),
        }
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        path = self.folder / CURRENT
        size = path.stat().st_size if path.exists() else 0
        if size and size + len(line) > self.rotate_bytes:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            os.replace(path, self.folder / f"citypatrol-cases-{stamp}.jsonl")
            size = 0
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if size and not _ends_with_newline(path):
                line = b"\n" + line  # a torn line from a crash stays on its own
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._keys.add(d.idempotency_key)
        self._note(path)
        return Outcome.delivered(f"appended to {path.name}")

    def _rescan(self) -> None:
        """Read keys from files that are new or changed since the last look (other writers)."""
        for f in sorted(self.folder.glob(PATTERN)):
            st = f.stat()
            if self._seen.get(f.name) == (st.st_size, st.st_mtime_ns):
                continue
            with open(f, "rb") as fh:
                for raw in fh:
                    try:
                        self._keys.add(json.loads(raw)["idempotency_key"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn line
            self._seen[f.name] = (st.st_size, st.st_mtime_ns)

    def _note(self, path: Path) -> None:
        st = path.stat()
        self._seen[path.name] = (st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        pass


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
