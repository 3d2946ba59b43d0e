"""The case state machine: allowed paths, refused jumps, the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from citypatrol.pipeline.cases.states import ALLOWED, FINAL, InvalidTransition, can_transition, opened_row, transition
from citypatrol.pipeline.config.models import Category
from citypatrol.pipeline.types import Case, CaseStatus as S

T = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)


def new_case(status: S = S.detected) -> Case:
    return Case(
        case_id="c1", camera_id="cam1", category=Category.illegal_parking, status=status,
        box=(0.1, 0.6, 0.3, 0.75), zone_id="z", opened_pts=180.0, opened_at=T, last_seen_pts=180.0,
        last_seen_at=T, score=0.9, history=(opened_row(T, "casebuilder", "car stationary 180 s"),) if status is S.detected else (),
    )


def walk(case: Case, *steps: S) -> Case:
    for i, s in enumerate(steps):
        case = transition(case, s, T + timedelta(minutes=i + 1), f"actor{i}", f"step {i}")
    return case


@pytest.mark.parametrize(
    "path",
    [
        [S.pending_review, S.approved, S.dispatched, S.handled, S.verifying, S.closed],
        [S.approved, S.dispatched, S.handled, S.closed],  # auto-approved, closed without a check
        [S.pending_review, S.rejected],
        [S.expired, S.reopened, S.pending_review, S.approved],
        [S.approved, S.dispatched, S.handled, S.verifying, S.reopened, S.dispatched],  # still there after handling
        [S.approved, S.dead_letter, S.approved, S.dispatched],  # delivery retried by an operator
        [S.approved, S.dispatched, S.rejected],  # the dispatch system declines it
    ],
)
def test_allowed_paths_record_every_step(path) -> None:
    case = walk(new_case(), *path)
    assert case.status is path[-1]
    rows = case.history
    assert len(rows) == len(path) + 1
    assert rows[0].from_status is None and rows[0].to_status is S.detected
    assert [(r.from_status, r.to_status) for r in rows[1:]] == list(zip([S.detected, *path[:-1]], path))
    assert [r.actor for r in rows[1:]] == [f"actor{i}" for i in range(len(path))]
    assert rows[-1].reason == f"step {len(path) - 1}" and rows[-1].at == T + timedelta(minutes=len(path))


@pytest.mark.parametrize(
    "start, to",
    [
        (S.detected, S.dispatched),  # no dispatch without approval
        (S.detected, S.closed),
        (S.pending_review, S.handled),
        (S.dispatched, S.expired),  # the dispatch system owns it: the camera losing sight is not the end
        (S.closed, S.reopened),
        (S.rejected, S.approved),
        (S.expired, S.approved),
        (S.detected, S.detected),
        (S.verifying, S.dispatched),
    ],
)
def test_invalid_transitions_raise_with_a_clear_message(start: S, to: S) -> None:
    case = new_case(start)
    with pytest.raises(InvalidTransition) as err:
        transition(case, to, T, "user:alice")
    msg = str(err.value)
    assert f"case c1: cannot go from {start.value} to {to.value}" in msg
    assert "allowed from" in msg
    assert err.value.from_status is start and err.value.to_status is to
    assert case.status is start  # unchanged


def test_final_states_say_so() -> None:
    assert FINAL == {S.closed, S.rejected}
    with pytest.raises(InvalidTransition, match="none: it is final"):
        transition(new_case(S.closed), S.reopened, T, "verifier")


def test_table_covers_every_status_and_every_status_is_reachable() -> None:
    assert set(ALLOWED) == set(S)
    reachable = {S.detected}
    frontier = [S.detected]
    while frontier:
        s = frontier.pop()
        for nxt in ALLOWED[s]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(S)
    assert can_transition(S.expired, S.reopened) and not can_transition(S.reopened, S.reopened)


def test_transition_accepts_status_strings() -> None:
    assert transition(new_case(), "approved", T, "user:bob").status is S.approved  # type: ignore[arg-type]
