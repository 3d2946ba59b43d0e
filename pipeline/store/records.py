"""What the store hands out and takes in besides the pipeline contracts: frozen records and errors.

Callers (API, reports, dispatch, CLI) never see ORM objects; a `CaseRecord` is a plain snapshot
that stays valid after the transaction that read it has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from citypatrol.pipeline.cases.states import InvalidTransition  # noqa: F401  (re-exported: Store.set_status raises it)
from citypatrol.pipeline.config.models import Location
from citypatrol.pipeline.types import Case


class EvidenceKind(StrEnum):
    frame = "frame"  # annotated full frame
    crop = "crop"  # the problem's box cut out
    clip = "clip"  # a few seconds of H.264 around the opening
    before = "before"  # verification: the place before it was handled
    after = "after"  # verification: the place after it was handled


class OutboxStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    dead_letter = "dead_letter"


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or opened; the message names the URL without its password."""


class CaseNotFound(StoreError, KeyError):
    """No case with that id."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else "case not found"


@dataclass(frozen=True, slots=True)
class CategoryCode:
    """The city platform's code for a case's category, as snapshotted when the case opened."""

    code: str = ""
    name: str = ""
    major: str = ""


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    case_id: str
    kind: EvidenceKind
    path: str  # relative to the configured evidence dir, '/'-separated
    sha256: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """A case as stored: the pipeline `Case` (with its full history) plus what the store adds."""

    case: Case
    codes: CategoryCode
    location: Location
    evidence: tuple[EvidenceRecord, ...]
    sightings: int  # distinct events stored for this case (replays not counted)
    created_at: datetime
    updated_at: datetime

    @property
    def case_id(self) -> str:
        return self.case.case_id


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to write to the outbox together with a case change (transactional outbox)."""

    kind: str  # e.g. "case.submit", "case.update"
    payload: dict[str, Any]
    idempotency_key: str  # unique per message; enqueueing the same key again is a no-op
    next_attempt_at: datetime | None = None  # default: now


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    case_id: str
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
