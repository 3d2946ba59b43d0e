"""The store's side of dispatch: claiming outbox messages, recording deliveries, callbacks, deadlines.

Functions over a `Store` (its engine), each one transaction, so the dispatcher, the callback
endpoint and the verifier share the store without growing `Store` itself.

Claims are leases written into `next_attempt_at` (a visibility timeout): claiming a due message
sets it to now + lease and counts the attempt, in one write transaction — `SELECT … FOR UPDATE
SKIP LOCKED` on PostgreSQL, so two dispatchers never take the same row, and SQLite's BEGIN
IMMEDIATE, which serialises writers. A dispatcher that dies mid-delivery leaves its messages
pending; they fall due again when the lease ends and are resent (the receiver dedupes on the
idempotency key). A message is not claimable while an earlier message of the same case is still
pending, so each case's messages go out in order.

Finishing a delivery (`mark_sent`, `mark_failed`, `mark_dead`) only touches a message that is
still pending, and moves the case through the state machine in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import Session, aliased

from citypatrol.pipeline.cases import states as case_states

from citypatrol.pipeline.store import writes as w
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.dispatch_schema import CallbackReceiptRow, CaseDeadlineRow
from citypatrol.pipeline.store.engine import BEGIN_OPTION
from citypatrol.pipeline.store.reads import outbox_record
from citypatrol.pipeline.store.records import CaseNotFound, OutboxRecord, OutboxStatus
from citypatrol.pipeline.store.schema import CaseRow, OutboxRow, as_utc
from citypatrol.pipeline.types import CaseStatus

log = logging.getLogger(__name__)

PENDING, SENT, DEAD = (str(s) for s in (OutboxStatus.pending, OutboxStatus.sent, OutboxStatus.dead_letter))
#: message kinds whose failure is the case's failure (→ dead_letter) and whose delivery dispatches it
CASE_CARRYING = frozenset({"case.submit", "case.reopen"})


class NothingToRetry(ValueError):
    """The case has no dead-letter message to retry."""


@dataclass(frozen=True, slots=True)
class Deadline:
    case_id: str
    started_at: datetime
    due_at: datetime | None
    overdue_at: datetime | None
    overdue_source: str


@dataclass(frozen=True, slots=True)
class CallbackPlan:
    """What a status callback does to a case in its current status (decided by `callbacks.plan`)."""

    to: tuple[CaseStatus, ...] = ()  # transitions to make, in order (none: no status change)
    overdue: bool = False  # mark the case overdue (no status change)
    refuse: str = ""  # non-empty: refuse the callback with this reason


@dataclass(frozen=True, slots=True)
class CallbackResult:
    outcome: str  # "applied" | "unchanged" | "replay" | "unknown_case" | "refused"
    status: CaseStatus | None  # the case's status afterwards (None for an unknown case)
    reason: str = ""


@contextmanager
def transaction(store: Store) -> Iterator[Session]:
    """One write transaction on the store's engine (BEGIN IMMEDIATE on SQLite), like Store's own."""
    with store.engine.connect() as conn:
        conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
        with conn.begin(), Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
            yield session
            session.flush()


# -- outbox ---------------------------------------------------------------------------------------


def claim_due(store: Store, *, now: datetime, lease_s: float, limit: int) -> list[OutboxRecord]:
    """Claim up to `limit` due messages for `lease_s` seconds; each claim counts one attempt."""
    now = as_utc(now)
    earlier = aliased(OutboxRow)
    blocked = exists().where(and_(earlier.case_id == OutboxRow.case_id, earlier.id < OutboxRow.id, earlier.status == PENDING))
    query = (
        select(OutboxRow)
        .where(OutboxRow.status == PENDING, OutboxRow.next_attempt_at <= now, ~blocked)
        .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
        .limit(limit)
    )
    with transaction(store) as s:
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OutboxRow)
        rows = list(s.scalars(query))
        for r in rows:
            r.next_attempt_at = now + timedelta(seconds=lease_s)
            r.attempts += 1
        s.flush()
        return [outbox_record(r) for r in rows]


def release(store: Store, message_id: int, *, next_attempt_at: datetime, count_attempt: bool = False) -> None:
    """Give a claimed message back, due at `next_attempt_at`; by default the attempt is not counted."""
    with transaction(store) as s:
        row = _pending(s, message_id)
        if row is not None:
            row.next_attempt_at = as_utc(next_attempt_at)
            if not count_attempt:
                row.attempts = max(0, row.attempts - 1)


def mark_sent(store: Store, message_id: int, *, at: datetime, to: CaseStatus | None = None, actor: str = "dispatch",
              reason: str = "", due_at: datetime | None = None) -> bool:
    """The message was delivered: mark it sent and, in the same transaction, move its case to `to`
    (when the state machine allows; a case already moved on by a callback is left as it is) and start
    its SLA clock (`due_at`). False when the message was not pending any more."""
    with transaction(store) as s:
        row = _pending(s, message_id)
        if row is None:
            return False
        row.status, row.last_error = SENT, ""
        if to is not None:
            case = w.case_row(s, row.case_id, lock=True)
            if case_states.can_transition(CaseStatus(case.status), to):
                w.set_status(s, case, to, at, actor, reason)
                if to is CaseStatus.dispatched:
                    _start_clock(s, row.case_id, as_utc(at), due_at)
        return True


def mark_failed(store: Store, message_id: int, *, error: str, next_attempt_at: datetime) -> bool:
    """A failed attempt: the message stays pending, due again at `next_attempt_at`."""
    with transaction(store) as s:
        row = _pending(s, message_id)
        if row is None:
            return False
        row.last_error, row.next_attempt_at = error[:2000], as_utc(next_attempt_at)
        return True


def mark_dead(store: Store, message_id: int, *, error: str, at: datetime, actor: str = "dispatch") -> bool:
    """Give up on a message: dead_letter, and its case too when the message carried the case."""
    with transaction(store) as s:
        row = _pending(s, message_id)
        if row is None:
            return False
        row.status, row.last_error = DEAD, error[:2000]
        if row.kind in CASE_CARRYING:
            case = w.case_row(s, row.case_id, lock=True)
            if case_states.can_transition(CaseStatus(case.status), CaseStatus.dead_letter):
                w.set_status(s, case, CaseStatus.dead_letter, at, actor,
                             f"{row.kind} undeliverable after {row.attempts} attempt(s): {error}"[:1000])
        return True


def retry_dead_letter(store: Store, case_id: str, *, at: datetime, actor: str, reason: str = "") -> int:
    """Queue a case's dead-letter messages again (attempts from zero, due now) and move the case
    from dead_letter back to approved, in one transaction. Returns how many messages were requeued;
    raises CaseNotFound, or NothingToRetry when the case has no dead-letter message."""
    with transaction(store) as s:
        case = w.case_row(s, case_id, lock=True)
        result = s.execute(
            update(OutboxRow)
            .where(OutboxRow.case_id == case_id, OutboxRow.status == DEAD)
            .values(status=PENDING, attempts=0, next_attempt_at=as_utc(at), last_error="")
            .returning(OutboxRow.id)
        )
        count = len(result.all())
        if count == 0:
            raise NothingToRetry(f"case {case_id} has no dead-letter message to retry (status {case.status})")
        if case.status == str(CaseStatus.dead_letter):
            w.set_status(s, case, CaseStatus.approved, at, actor, reason or "delivery retried")
        return count


# -- callbacks ------------------------------------------------------------------------------------


def record_callback(store: Store, *, callback_id: str, case_id: str, reported: str, at: datetime, actor: str,
                    reason: str, plan: Callable[[CaseStatus], CallbackPlan],
                    due: Callable[[str], datetime | None] | None = None) -> CallbackResult:
    """Apply one verified status callback: the receipt (replay guard) and its effect in one transaction.

    An unknown case, a replayed callback id or a plan that refuses writes nothing. `due(category)`
    gives the SLA due time when the callback dispatches the case.
    """
    with transaction(store) as s:
        try:
            case = w.case_row(s, case_id, lock=True)
        except CaseNotFound:
            return CallbackResult("unknown_case", None, f"no case {case_id!r}")
        if s.get(CallbackReceiptRow, callback_id) is not None:
            return CallbackResult("replay", CaseStatus(case.status), f"callback {callback_id!r} was received before")
        current = CaseStatus(case.status)
        decided = plan(current)
        if decided.refuse:
            return CallbackResult("refused", current, decided.refuse)
        stmt = w.insert(s, CallbackReceiptRow).values(
            callback_id=callback_id, case_id=case_id, status=reported[:32], received_at=as_utc(at),
        ).on_conflict_do_nothing(index_elements=["callback_id"])
        if not w.inserted(s, stmt.returning(CallbackReceiptRow.__table__.c.callback_id)):
            return CallbackResult("replay", current, f"callback {callback_id!r} was received before")
        changed = False
        for to in decided.to:
            w.set_status(s, case, to, at, actor, reason)
            changed = True
            if to is CaseStatus.dispatched:
                _start_clock(s, case_id, as_utc(at), due(case.category) if due else None)
        if decided.overdue:
            changed = _mark_overdue(s, case_id, as_utc(at), "dispatch") or changed
        return CallbackResult("applied" if changed else "unchanged", CaseStatus(case.status))


def prune_receipts(store: Store, *, before: datetime) -> int:
    """Forget callback receipts older than `before` (beyond the timestamp window they cannot replay)."""
    with transaction(store) as s:
        gone = s.execute(delete(CallbackReceiptRow).where(CallbackReceiptRow.received_at < as_utc(before)).returning(CallbackReceiptRow.callback_id))
        return len(gone.all())


# -- deadlines ------------------------------------------------------------------------------------


def set_due(store: Store, case_id: str, *, started_at: datetime, due_at: datetime | None) -> None:
    """Start (or restart) a case's SLA clock."""
    with transaction(store) as s:
        w.case_row(s, case_id)
        _start_clock(s, case_id, as_utc(started_at), due_at)


def mark_overdue(store: Store, *, now: datetime) -> list[str]:
    """Mark dispatched cases past their due time overdue (once); returns their ids."""
    now = as_utc(now)
    query = (
        select(CaseDeadlineRow.case_id)
        .join(CaseRow, CaseRow.case_id == CaseDeadlineRow.case_id)
        .where(CaseDeadlineRow.overdue_at.is_(None), CaseDeadlineRow.due_at.is_not(None), CaseDeadlineRow.due_at <= now,
               CaseRow.status == str(CaseStatus.dispatched))
    )
    with transaction(store) as s:
        ids = [cid for (cid,) in s.execute(query)]
        for cid in ids:
            _mark_overdue(s, cid, now, "sla")
        return ids


def deadlines(store: Store, case_ids: list[str] | None = None) -> dict[str, Deadline]:
    """SLA clocks by case id (all, or those of `case_ids`)."""
    query = select(CaseDeadlineRow)
    if case_ids is not None:
        query = query.where(CaseDeadlineRow.case_id.in_(case_ids))
    with store.engine.connect() as conn, Session(bind=conn) as s:
        return {r.case_id: Deadline(r.case_id, r.started_at, r.due_at, r.overdue_at, r.overdue_source) for r in s.scalars(query)}


def _start_clock(s: Session, case_id: str, started_at: datetime, due_at: datetime | None) -> None:
    due = as_utc(due_at) if due_at is not None else None
    row = s.get(CaseDeadlineRow, case_id)
    if row is None:
        s.add(CaseDeadlineRow(case_id=case_id, started_at=started_at, due_at=due, overdue_at=None, overdue_source=""))
    else:  # re-dispatched (reopened after verification): a new clock; a past overdue mark stays
        row.started_at = started_at
        if due is not None or row.due_at is None:
            row.due_at = due


def _mark_overdue(s: Session, case_id: str, at: datetime, source: str) -> bool:
    row = s.get(CaseDeadlineRow, case_id)
    if row is None:
        s.add(CaseDeadlineRow(case_id=case_id, started_at=at, due_at=None, overdue_at=at, overdue_source=source))
        return True
    if row.overdue_at is not None:
        return False
    row.overdue_at, row.overdue_source = at, source
    return True


def _pending(s: Session, message_id: int) -> OutboxRow | None:
    query = select(OutboxRow).where(OutboxRow.id == message_id, OutboxRow.status == PENDING)
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return s.scalar(query)
