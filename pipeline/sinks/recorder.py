"""Persist case changes and write their evidence, off the detection path (batch and live).

Store writes happen in the caller's thread (they are small and must be ordered); evidence
rendering (annotated frame, crop, clip) runs on a worker thread, and a failure there is logged and
counted without stopping detection or the store. Both go through the one `CaseWriter`.

A write that meets an unreachable database (PostgreSQL restarting, SQLite locked past its busy
timeout) is retried with the one backoff policy for up to `retry_s` (default 60 s); every write is
idempotent, so a retry after a commit whose answer was lost changes nothing. Past `retry_s` the
write fails with a `StoreUnavailable` naming the case and the database (password redacted).

With a review `policy`, each new (or reopened) case is decided at once: auto-submitted (approved,
with its outbox message) or held for review (pending_review); the status change and the message
are written in the same transaction as the case. Without one, cases stay `detected` as before.
A builder expiry or reopen that the stored status no longer allows (a reviewer or the dispatch
system moved the case meanwhile) is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception, stop_after_delay

from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.cases.builder import CaseChange, ChangeKind
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.sinks.case_writer import CaseWriter, ClipSource
from citypatrol.pipeline.sinks.second_stage import Check
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.engine import unreachable
from citypatrol.pipeline.store.records import StoreUnavailable
from citypatrol.streams.backoff import Backoff

__all__ = ["CaseRecorder", "ClipSource"]

log = logging.getLogger("citypatrol.recorder")

RETRY_S = 60.0  # how long a store write is retried while the database is unreachable
T = TypeVar("T")


class CaseRecorder:
    def __init__(self, store: Store, config: Config, evidence_dir: Path, cameras: Sequence[Camera],
                 policy: ReviewPolicy | None = None, check: Check | None = None) -> None:
        self.store = store
        self.writer = CaseWriter(store, config, cameras, evidence_dir=evidence_dir, policy=policy, check=check)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
        self._pending: list[Future[None]] = []
        self._evidence_failures = 0  # evidence lost to an error the writer raised (the database, after retries)
        self.retry_s = RETRY_S
        self.store_retries = 0  # writes retried because the database was unreachable

    @property
    def opened(self) -> int:
        return self.writer.opened

    @property
    def evidence_errors(self) -> int:
        return self.writer.evidence_errors + self._evidence_failures

    @property
    def case_ids(self) -> set[str]:
        """Every case this recorder wrote a change of (a run's own cases, whatever else the store holds)."""
        return self.writer.case_ids

    def record(self, result: FrameResult, clip: ClipSource | None = None) -> None:
        for change in result.changes:
            opening = change.kind in (ChangeKind.opened, ChangeKind.reopened)
            image = result.frame.image if opening else None
            self._retrying(change.case.case_id, lambda c=change, i=image: self.writer.persist(c, i))
            if opening:
                # copy: the frame buffer may be reused by the source while the worker draws
                self._pending.append(self._pool.submit(self._evidence, change, result.frame.image.copy(), clip))

    def _evidence(self, change: CaseChange, image: np.ndarray, clip: ClipSource | None) -> None:
        try:
            self._retrying(change.case.case_id, lambda: self.writer.evidence(change, image, clip))
        except Exception as exc:  # one failing sink never stops another
            self._evidence_failures += 1
            log.error("case %s: evidence could not be written: %s", change.case.case_id, exc)

    def _retrying(self, case_id: str, write: Callable[[], T]) -> T:
        """Run one store call; while the database is unreachable, retry it with backoff for up to `retry_s`."""

        def before_sleep(state: RetryCallState) -> None:
            self.store_retries += 1
            log.warning("case %s: the case store at %s is unreachable (%s); retrying in %.1f s",
                        case_id, self.store.url, self._detail(state.outcome.exception()), state.upcoming_sleep)

        retrying = Retrying(retry=retry_if_exception(unreachable), wait=Backoff(0.2, 5.0),
                            stop=stop_after_delay(self.retry_s), before_sleep=before_sleep)
        try:
            return retrying(write)
        except RetryError as exc:
            raise StoreUnavailable(
                f"case {case_id}: the case store at {self.store.url} did not take the write within "
                f"{self.retry_s:g} s: {self._detail(exc.last_attempt.exception())}") from None

    def _detail(self, exc: BaseException | None) -> str:
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
