"""The dispatcher: delivers outbox messages to the dispatch system, exactly once as far as the
receiver can tell.

Each round (`run_once`) claims the due messages (a lease; see `store/outbox.py` — safe with several
dispatchers on one database), builds each body from the case as stored now (`dispatch/message.py`),
signs it and hands it to the adapter (HTTP, MQTT or JSONL file) with the idempotency key (the case
id for a first submission). Then, per outcome:

- delivered (or the receiver already had the key): the message is marked sent and, for a message
  that carries the case (`case.submit`, `case.reopen`), the case moves to `dispatched` with its SLA
  clock started — in one transaction;
- failed, retryable, attempts left: due again after exponential backoff with jitter
  (`streams.backoff.Backoff`, the one retry policy), kept in the database so a restart keeps the schedule;
- failed for good (a 4xx that retrying cannot fix) or out of attempts (`dispatch.max_attempts`):
  dead-letter, and the case goes to `dead_letter` through the state machine; a person retries it
  with `retry_dead_letter` (API, or `citypatrol dispatch retry CASE_ID`).

A crash between claiming and recording the outcome leaves the message pending: it is claimed again
when its lease ends and resent; the receiver answers 409 (or finds the key) and it is marked sent.
A new case waits up to `dispatch.evidence_wait_s` for its evidence images before it goes without.
`run` loops until stopped, marks overdue cases (SLA) and forgets callback receipts past their window as it goes.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from citypatrol.pipeline.dispatch import message as dm, sla

from citypatrol.pipeline.store import outbox as ob
from citypatrol.pipeline.config.models import Category, Config
from citypatrol.pipeline.dispatch.base import Adapter, Delivery, Outcome
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.records import CaseNotFound, OutboxRecord
from citypatrol.pipeline.types import CaseStatus
from citypatrol.streams.backoff import Backoff

log = logging.getLogger("citypatrol.dispatch")


@dataclass
class RoundStats:
    claimed: int = 0
    sent: int = 0
    duplicates: int = 0
    retried: int = 0
    dead: int = 0
    postponed: int = 0


def make_adapter(config: Config) -> Adapter:
    """The adapter `dispatch.adapter` names, set up from the config (secrets included, never logged)."""
    d = config.dispatch
    if d.adapter == "http":
        from citypatrol.pipeline.dispatch.http_json import HttpAdapter

        return HttpAdapter(d.url, d.secret, d.timeout_s)
    if d.adapter == "mqtt":
        from citypatrol.pipeline.dispatch.mqtt import MqttAdapter

        return MqttAdapter(d)
    from citypatrol.pipeline.dispatch.file_drop import FileAdapter

    return FileAdapter(d.file_dir, d.secret, d.file_rotate_bytes)


class Dispatcher:
    """Outbox → adapter. One instance per process; several processes may share a database."""

    def __init__(self, store: Store, config: Config, adapter: Adapter, *, evidence_dir: Path | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), rand: Callable[[], float] = random.random) -> None:
        self.store = store
        self.config = config
        self.adapter = adapter
        self.evidence_dir = Path(evidence_dir if evidence_dir is not None else config.storage.evidence_dir)
        self.tz = ZoneInfo(config.site.timezone)
        self.cameras = {c.id: c.name or c.id for c in config.cameras}
        self.clock = clock
        self.rand = rand
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    # -- one round --------------------------------------------------------------------------------

    def run_once(self) -> RoundStats:
        d = self.config.dispatch
        stats = RoundStats()
        for m in ob.claim_due(self.store, now=self.clock(), lease_s=d.lease_s, limit=d.batch):
            stats.claimed += 1
            self._deliver(m, stats)
        return stats

    def _deliver(self, m: OutboxRecord, stats: RoundStats) -> None:
        d = self.config.dispatch
        now = self.clock()
        try:
            record = self.store.get_case(m.case_id)
        except CaseNotFound:
            ob.mark_dead(self.store, m.id, error="the case no longer exists", at=now)
            stats.dead += 1
            return
        paths = m.payload.get("evidence")
        chosen = dm.select_evidence(record, m.kind, paths)
        waited = (now - m.created_at).total_seconds()
        if m.kind == dm.SUBMIT and not chosen and d.evidence != "none" and waited < d.evidence_wait_s:
            ob.release(self.store, m.id, next_attempt_at=now + timedelta(seconds=min(d.poll_s, d.evidence_wait_s - waited) + 0.01))
            stats.postponed += 1
            return
        evidence = dm.evidence_items(chosen, mode=d.evidence, base_url=d.evidence_base_url, read=self._read, max_bytes=d.evidence_max_bytes)
        fields = dm.case_fields(record, kind=m.kind, camera_name=self.cameras.get(record.case.camera_id, record.case.camera_id),
                                tz=self.tz, sent_at=now, evidence=evidence, note=str(m.payload.get("note", "")))
        body = dm.encode(dm.map_fields(fields, d.field_map))
        delivery = Delivery(m.case_id, record.case.camera_id, m.kind, m.idempotency_key, body, int(now.timestamp()), m.attempts)
        try:
            outcome = self.adapter.send(delivery)
        except Exception as exc:  # an adapter bug must not kill the loop; the message is retried
            outcome = Outcome.failed(f"{self.adapter.name} adapter error: {type(exc).__name__}: {exc}")
        self._record(m, record.case.category, outcome, stats)

    def _record(self, m: OutboxRecord, category: Category, outcome: Outcome, stats: RoundStats) -> None:
        d = self.config.dispatch
        now = self.clock()
        where = f"case {m.case_id} {m.kind} (attempt {m.attempts}/{d.max_attempts})"
        if outcome.ok:
            carries = m.kind in ob.CASE_CARRYING
            due = sla.due_at(now, category, self.config.sla, self.tz) if carries else None
            ob.mark_sent(self.store, m.id, at=now, to=CaseStatus.dispatched if carries else None, actor="dispatch",
                         reason=f"delivered via {self.adapter.name}: {outcome.detail}"[:500], due_at=due)
            stats.sent += 1
            stats.duplicates += outcome.duplicate
            log.info("%s: delivered via %s%s", where, self.adapter.name, " (receiver had it already)" if outcome.duplicate else "")
        elif not outcome.retry or m.attempts >= d.max_attempts:
            ob.mark_dead(self.store, m.id, error=outcome.detail, at=now)
            stats.dead += 1
            log.error("%s: dead-letter: %s", where, outcome.detail)
        else:
            wait = Backoff(d.backoff_base_s, d.backoff_max_s, d.backoff_jitter, rand=self.rand).delay(m.attempts)
            ob.mark_failed(self.store, m.id, error=outcome.detail, next_attempt_at=now + timedelta(seconds=wait))
            stats.retried += 1
            log.warning("%s: failed, next try in %.1f s: %s", where, wait, outcome.detail)

    def _read(self, rel: str) -> bytes | None:
        path = self.evidence_dir / rel
        try:
            return path.read_bytes()
        except OSError:
            return None

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, *, once: bool = False, sla_every_s: float = 60.0) -> RoundStats:
        """Deliver until `stop` is set (or, with `once`, until nothing is due now); returns the totals."""
        stop = stop or threading.Event()
        total = RoundStats()
        last_sla = 0.0
        log.info("dispatcher %s delivering via %s", self.name, self.adapter.name)
        while not stop.is_set():
            if time.monotonic() - last_sla >= sla_every_s:
                last_sla = time.monotonic()
                now = self.clock()
                for case_id in ob.mark_overdue(self.store, now=now):
                    log.warning("case %s is overdue (past its handling deadline)", case_id)
                # receipts older than the timestamp window cannot be replayed any more
                ob.prune_receipts(self.store, before=now - timedelta(seconds=2 * self.config.dispatch.callback_window_s))
            r = self.run_once()
            for k in vars(total):
                setattr(total, k, getattr(total, k) + getattr(r, k))
            if once and r.claimed == r.postponed:
                break
            if r.claimed == 0 or r.claimed == r.postponed:
                stop.wait(self.config.dispatch.poll_s)
        return total

    def close(self) -> None:
        self.adapter.close()


def retry_dead_letter(store: Store, case_id: str, *, actor: str, reason: str = "", at: datetime | None = None) -> int:
    """Send a dead-lettered case again: its dead-letter messages are queued afresh (attempts from
    zero) and the case goes dead_letter → approved, in one transaction; the dispatcher then
    delivers it. Returns the number of messages queued. Raises CaseNotFound, or
    store_outbox.NothingToRetry (a ValueError) when the case has no dead-letter message."""
    n = ob.retry_dead_letter(store, case_id, at=at or datetime.now(UTC), actor=actor, reason=reason or f"delivery retried by {actor}")
    log.info("case %s: %d dead-letter message(s) queued again by %s", case_id, n, actor)
    return n
