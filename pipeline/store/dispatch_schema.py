"""Tables of the closed loop with the dispatch system: callback receipts and handling deadlines.

Declared on the store's `Base` (same naming convention and metadata); the Alembic revision
`0003_dispatch` creates them. Only `store/outbox.py` uses these models; callers get plain values.

- `callback_receipts`: one row per status callback accepted from the dispatch system, keyed by the
  callback's own id, so a replayed callback is refused by the primary key (inside the same
  transaction as the status change it caused). `case_id` is not a foreign key: receipts are an
  audit of what arrived.
- `case_deadlines`: the SLA clock of a dispatched case (started when it was delivered, due after
  the category's working hours) and when it was found overdue, by citypatrol's own clock
  (`sla`) or as reported by the dispatch system (`dispatch`).

The outbox itself needs no extra columns: a claim is a lease written into `next_attempt_at`
(see `store/outbox.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from citypatrol.pipeline.store.schema import Base


class CallbackReceiptRow(Base):
    """A status callback that was accepted (its id is never accepted again)."""

    __tablename__ = "callback_receipts"
    __table_args__ = (Index("ix_callback_receipts_received_at", "received_at"),)

    callback_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime]


class CaseDeadlineRow(Base):
    """When a dispatched case is due to be handled, and whether it went overdue."""

    __tablename__ = "case_deadlines"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), primary_key=True)
    started_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]
    overdue_source: Mapped[str] = mapped_column(String(16), default="")
