"""The review policy: does a new case go to the dispatch system on its own, or wait for a reviewer?

A case is auto-submitted (detected → approved, with a `case.submit` outbox message) only when
every threshold for its camera and category holds: auto-submission allowed, best score ≥
`min_score`, the problem persisted ≥ `min_dwell_s` when the case opened, and — when
`min_check_score` is set — a second-stage check on the crop scored at least that (no check result
means hold). Otherwise it is held (detected → pending_review) for the supervision center, whose
confirm/reject decisions release or reject it.

Thresholds: `review.default`, then every `review.overrides` entry whose camera and category match
(None = any), in order, each replacing only the keys it sets. The default holds everything below a
score of 0.85: a dispatcher's trust is worth more than an automatic case.

Pure: a case and numbers in, a decision (and the case with its audit row, and the message) out.
The recorder writes the status change and the message in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from citypatrol.pipeline.cases import states as case_states
from citypatrol.pipeline.config.models import Category, ReviewConfig, ReviewThresholds
from citypatrol.pipeline.dispatch.message import SUBMIT, idempotency_key
from citypatrol.pipeline.store.records import OutboxMessage
from citypatrol.pipeline.types import Case, CaseStatus

ACTOR = "review_policy"


@dataclass(frozen=True, slots=True)
class Decision:
    status: CaseStatus  # approved (auto-submit) or pending_review (hold)
    reason: str

    @property
    def submit(self) -> bool:
        return self.status is CaseStatus.approved


class ReviewPolicy:
    """Per camera and category thresholds from `ReviewConfig`; one verb: `decide`."""

    def __init__(self, review: ReviewConfig | None = None) -> None:
        self.config = review if review is not None else ReviewConfig()

    def thresholds(self, camera_id: str, category: Category) -> ReviewThresholds:
        merged = self.config.default.model_dump()
        for o in self.config.overrides:
            if (o.camera is None or o.camera == camera_id) and (o.category is None or o.category == category):
                merged.update(o.model_dump(exclude={"camera", "category"}, exclude_none=True))
        return ReviewThresholds(**merged)

    def decide(self, case: Case, *, dwell_s: float, check_score: float | None = None) -> Decision:
        t = self.thresholds(case.camera_id, case.category)
        held: list[str] = []
        if not t.auto_submit:
            held.append("auto-submission is off for this camera/category")
        if case.score < t.min_score:
            held.append(f"score {case.score:.2f} < {t.min_score:.2f}")
        if dwell_s < t.min_dwell_s:
            held.append(f"dwell {dwell_s:.0f} s < {t.min_dwell_s:.0f} s")
        if t.min_check_score is not None:
            if check_score is None:
                held.append(f"no second-stage check result (needs ≥ {t.min_check_score:.2f})")
            elif check_score < t.min_check_score:
                held.append(f"second-stage check {check_score:.2f} < {t.min_check_score:.2f}")
        if held:
            return Decision(CaseStatus.pending_review, "held for review: " + "; ".join(held))
        why = [f"score {case.score:.2f} ≥ {t.min_score:.2f}", f"dwell {dwell_s:.0f} s ≥ {t.min_dwell_s:.0f} s"]
        if t.min_check_score is not None and check_score is not None:
            why.append(f"second-stage check {check_score:.2f} ≥ {t.min_check_score:.2f}")
        return Decision(CaseStatus.approved, "auto-submitted: " + ", ".join(why))

    def apply(self, case: Case, *, at: datetime, dwell_s: float, check_score: float | None = None) -> tuple[Case, OutboxMessage | None, Decision]:
        """The case moved to the decided status (audit row appended) and, when submitted, its message.

        A case that the state machine does not let move (already decided) is returned unchanged
        with no message.
        """
        decision = self.decide(case, dwell_s=dwell_s, check_score=check_score)
        if not case_states.can_transition(case.status, decision.status):
            return case, None, decision
        moved = case_states.transition(case, decision.status, at, ACTOR, decision.reason)
        if not decision.submit:
            return moved, None, decision
        resubmits = sum(1 for t in case.history if t.to_status is CaseStatus.reopened)
        message = OutboxMessage(
            kind=SUBMIT,
            payload={"note": decision.reason},
            idempotency_key=idempotency_key(case.case_id, SUBMIT, resubmits),
        )
        return moved, message, decision
