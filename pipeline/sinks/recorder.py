"""Persist case changes and write their evidence, off the detection path.

Store writes happen in the caller's thread (they are small and must be ordered); evidence
rendering (annotated frame, crop, clip) runs on a worker thread, and a failure there is logged and
counted without stopping detection or the store.

A write that meets an unreachable database (PostgreSQL restarting, SQLite locked past its busy
timeout) is retried with backoff for up to `retry_s` (default 60 s); every write is idempotent (a
case id opens once, an event id is stored once, evidence is keyed by case and path), so a retry
after a commit whose answer was lost changes nothing. Past `retry_s` the write fails with a
`StoreUnavailable` naming the case and the database (password redacted).

With a review `policy`, each new (or reopened) case is decided at once: auto-submitted (approved,
with its outbox message) or held for review (pending_review); the status change and the message
are written in the same transaction as the case. Without one, cases stay `detected` as before.
A builder expiry or reopen that the stored status no longer allows (a reviewer or the dispatch
system moved the case meanwhile) is logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from citypatrol.annotate.evidence import EvidenceFile, write_case_images, write_clip_from_file, write_clip_from_frames
from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.cases.builder import CaseChange, ChangeKind
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.sinks.second_stage import check_score
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.records import StoreUnavailable
from citypatrol.pipeline.types import Case, Event

log = logging.getLogger("citypatrol.recorder")

_KIND = {"image": "frame", "crop": "crop", "clip": "clip"}
RETRY_S = 60.0  # how long a store write is retried while the database is unreachable
T = TypeVar("T")


@dataclass(frozen=True)
class ClipSource:
    """Where a case's clip comes from: a recorded file (re-decoded) or recent live frames."""

    file: Path | None = None
    frames: Sequence[np.ndarray] = ()
    fps: float = 1.0


class CaseRecorder:
    def __init__(self, store: Store, config: Config, evidence_dir: Path, cameras: Sequence[Camera],
                 policy: ReviewPolicy | None = None, check: Callable[[Case, np.ndarray], float | None] | None = None) -> None:
        self.store = store
        self.policy = policy
        self.check = check  # second-stage check on the case's frame (models.verifier.Verifier.check) → the policy's check_score
        self.config = config
        self.evidence_dir = evidence_dir
        self.cameras = {c.id: c for c in cameras}
        self.tz = ZoneInfo(config.site.timezone)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
        self._pending: list[Future[None]] = []
        self.evidence_errors = 0
        self.opened = 0
        self.retry_s = RETRY_S
        self.store_retries = 0  # writes retried because the database was unreachable

    def record(self, result: FrameResult, clip: ClipSource | None = None) -> None:
        for change in result.changes:
            self._persist(change, result.frame.image)
            if change.kind in (ChangeKind.opened, ChangeKind.reopened):
                # copy: the frame buffer may be reused by the source while the worker draws
                image = result.frame.image.copy()
                self._pending.append(self._pool.submit(self._evidence, change.case, image, clip, change.kind))

    def _persist(self, change: CaseChange, image: np.ndarray | None = None) -> None:
        case = change.case
        cam = self.cameras.get(case.camera_id)
        codes, location = self.config.codes[case.category], cam.location if cam else None
        score = self._check_score(case, image) if change.kind in (ChangeKind.opened, ChangeKind.reopened) else None
        if self.policy is not None and change.kind is ChangeKind.opened:
            # the policy's decision (and its outbox message) go in with the new case, one transaction
            decided, message, _ = self.policy.apply(case, at=case.opened_at, dwell_s=_dwell(change.event), check_score=score)
            opened = self._retrying(case.case_id, lambda: self.store.open_case(
                decided, change.event, codes=codes, location=location, outbox=message))
        else:
            opened = self._retrying(case.case_id, lambda: self.store.apply_change(change, codes=codes, location=location))
        if opened and change.kind is ChangeKind.opened:
            self.opened += 1
        if self.policy is not None and change.kind is ChangeKind.reopened:
            self._decide_reopened(change, score)

    def _check_score(self, case: Case, image: np.ndarray | None) -> float | None:
        """The second-stage check's score for the policy; a failing check is no score (the case is held)."""
        return check_score(self.check, case, image) if self.policy is not None else None

    def _decide_reopened(self, change: CaseChange, check_score: float | None = None) -> None:
        """A case the builder reopened is decided again (auto-submit or hold), like a new one."""
        stored = self._retrying(change.case.case_id, lambda: self.store.get_case(change.case.case_id)).case
        decided, message, decision = self.policy.apply(stored, at=change.case.last_seen_at, dwell_s=_dwell(change.event),
                                                       check_score=check_score)
        if decided is stored:
            return  # the stored status (e.g. dispatched meanwhile) is not one the policy decides from
        try:
            self._retrying(stored.case_id, lambda: self.store.set_status(
                stored.case_id, decision.status, at=decided.history[-1].at, actor=decided.history[-1].actor,
                reason=decision.reason, outbox=message))
        except InvalidTransition as exc:  # moved on between the read and the write
            log.warning("%s; keeping the stored status", exc)

    def _evidence(self, case: Case, image: np.ndarray, clip: ClipSource | None, kind: ChangeKind) -> None:
        try:
            cam = self.cameras.get(case.camera_id)
            zones = [z for z in (cam.zones if cam else []) if z.id == case.zone_id]
            folder = self.evidence_dir / case.case_id
            stem = "frame" if kind is ChangeKind.opened else f"reopened_{int(case.last_seen_pts)}"
            files: list[EvidenceFile] = list(
                write_case_images(
                    folder, stem, image, case.box, case.category, case.score,
                    camera_name=cam.name or cam.id if cam else case.camera_id,
                    local_time=case.last_seen_at.astimezone(self.tz),
                    polygons=[z.polygon for z in zones],
                    zone_names=[z.name or z.id for z in zones],
                    detail=case.detail,
                )
            )
            seconds = self.config.storage.clip_seconds
            if clip is not None and seconds > 0 and kind is ChangeKind.opened:
                out = folder / "clip.mp4"
                if clip.file is not None:
                    start = max(0.0, case.opened_pts - seconds * 2 / 3)
                    files.append(write_clip_from_file(clip.file, start, start + seconds, out))
                elif len(clip.frames) >= 2:
                    files.append(write_clip_from_frames(list(clip.frames), clip.fps, out))
            for f in files:
                rel = f.path.relative_to(self.evidence_dir).as_posix()
                self._retrying(case.case_id, lambda: self.store.add_evidence(case.case_id, _KIND[f.kind], rel, f.sha256, f.bytes))
        except Exception as exc:  # one failing sink never stops another
            self.evidence_errors += 1
            log.error("case %s: evidence could not be written: %s", case.case_id, exc)

    def _retrying(self, case_id: str, write: Callable[[], T]) -> T:
        """Run one store call; while the database is unreachable, retry it with backoff for up to `retry_s`."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.2
        while True:
            try:
                return write()
            except (DBAPIError, StoreUnavailable) as exc:
                if not _unreachable(exc):
                    raise  # a real error (constraint, bad data): retrying cannot fix it
                detail = self._detail(exc)
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"case {case_id}: the case store at {self.store.url} did not take the write within "
                        f"{self.retry_s:g} s: {detail}") from None
                self.store_retries += 1
                log.warning("case %s: the case store at %s is unreachable (%s); retrying in %.1f s",
                            case_id, self.store.url, detail, delay)
                time.sleep(delay)
                delay = min(2 * delay, 5.0)

    def _detail(self, exc: BaseException) -> str:
        """The driver's message on one line, without the database password."""
        orig = getattr(exc, "orig", None)
        text = " ".join(str(orig if orig is not None else exc).split())[:300]
        password = self.store.engine.url.password
        return text.replace(str(password), "***") if password else text

    def flush(self) -> None:
        for fut in self._pending:
            fut.result()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._pool.shutdown(wait=True)


def _unreachable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (as opposed to refusing the data)."""
    if isinstance(exc, StoreUnavailable):
        return True
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(getattr(exc, "connection_invalidated", False))


def _dwell(event: Event | None) -> float:
    """How long the problem had persisted when its rule fired (stream seconds)."""
    return max(0.0, event.pts - event.since_pts) if event is not None else 0.0
