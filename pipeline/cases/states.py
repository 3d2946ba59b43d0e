"""The case state machine: which status may follow which, and the audit row of every change.

    detected ─┬─▶ pending_review ─▶ approved ─▶ dispatched ─▶ handled ─▶ verifying ─▶ closed
              └────────────────────▶ approved                    │            └──▶ reopened
    detected / pending_review / approved / reopened ─▶ expired ─▶ reopened (problem back in the window)
    any review step ─▶ rejected;  approved / reopened ─▶ dead_letter (delivery failed N times)

`ALLOWED` below is the one table; `transition()` is the only way to change a case's status and
appends a `Transition` (from, to, when, who, why) to its history. `closed` and `rejected` are final.
Pure: no I/O; the store persists the returned case and its history rows.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from citypatrol.pipeline.types import Case, CaseStatus, Transition

S = CaseStatus

#: status -> statuses it may move to.
ALLOWED: dict[CaseStatus, frozenset[CaseStatus]] = {
    # a fresh case: a reviewer (or auto-approval) decides; its cause may vanish first
    S.detected: frozenset({S.pending_review, S.approved, S.rejected, S.expired}),
    S.pending_review: frozenset({S.approved, S.rejected, S.expired}),
    # approved: delivered to dispatch, or failed delivery, or withdrawn, or the cause vanished before delivery
    S.approved: frozenset({S.dispatched, S.dead_letter, S.rejected, S.expired}),
    # the dispatch system owns it now: it reports handled, or declines it (不予立案)
    S.dispatched: frozenset({S.handled, S.rejected}),
    # handled: re-checked on camera, or closed without a check (no camera view / verification off)
    S.handled: frozenset({S.verifying, S.closed}),
    # the camera re-check: the problem is gone, or still there
    S.verifying: frozenset({S.closed, S.reopened}),
    # a problem back at the same place within the reopen window
    S.expired: frozenset({S.reopened}),
    # reopened: reviewed again, re-dispatched (verification failed), or gone again
    S.reopened: frozenset({S.pending_review, S.approved, S.dispatched, S.dead_letter, S.rejected, S.expired}),
    # an operator retries delivery, or gives up on it
    S.dead_letter: frozenset({S.approved, S.dispatched, S.rejected}),
    S.closed: frozenset(),
    S.rejected: frozenset(),
}

FINAL: frozenset[CaseStatus] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)


class InvalidTransition(ValueError):
    """A status change the state machine does not allow."""

    def __init__(self, case_id: str, from_status: CaseStatus, to_status: CaseStatus) -> None:
        allowed = sorted(s.value for s in ALLOWED.get(from_status, frozenset()))
        options = ", ".join(allowed) if allowed else "none: it is final"
        super().__init__(
            f"case {case_id}: cannot go from {from_status.value} to {to_status.value} (allowed from {from_status.value}: {options})"
        )
        self.case_id = case_id
        self.from_status = from_status
        self.to_status = to_status


def can_transition(from_status: CaseStatus, to_status: CaseStatus) -> bool:
    return to_status in ALLOWED.get(from_status, frozenset())


def transition(case: Case, to: CaseStatus, at: datetime, actor: str, reason: str = "") -> Case:
    """The case in status `to`, with the change appended to its history; raises InvalidTransition."""
    to = CaseStatus(to)
    if not can_transition(case.status, to):
        raise InvalidTransition(case.case_id, case.status, to)
    row = Transition(from_status=case.status, to_status=to, at=at, actor=actor, reason=reason)
    return dataclasses.replace(case, status=to, history=(*case.history, row))


def opened_row(at: datetime, actor: str, reason: str = "") -> Transition:
    """The first audit row of a new case (from nothing to detected)."""
    return Transition(from_status=None, to_status=S.detected, at=at, actor=actor, reason=reason)
