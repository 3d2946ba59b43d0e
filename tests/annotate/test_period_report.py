"""综合评价 report over a known set of cases in the real store (SQLite and PostgreSQL), through the
`citypatrol report` command: every count and median in summary.csv is checked by hand.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import typer
from typer.testing import CliRunner

from citypatrol.annotate.period_report import COUNTS
from citypatrol.pipeline.store import outbox as ob
from citypatrol.pipeline.cli.dispatch import report
from citypatrol.pipeline.config.models import Category, Location
from citypatrol.pipeline.types import Case, CaseStatus, Transition
from tests.fixtures_dispatch import db_url, pg_admin, store  # noqa: F401

S = Category
T = datetime(2025, 5, 12, 1, 0, tzinfo=UTC)  # Monday 09:00 in Asia/Shanghai
A = Location(address="深南大道 1 号", district="福田区", grid_code="G1")
B = Location(address="科技园路 2 号", district="南山区", grid_code="G2")


def _case(cid: str, cam: str, cat: Category, steps: list[tuple[str, float, str]], at: datetime = T) -> Case:
    """A case opened at `at` whose status went through `steps` (status, seconds after opening, actor)."""
    history = [Transition(None, CaseStatus.detected, at, "casebuilder")]
    for status, after, actor in steps:
        history.append(Transition(history[-1].to_status, CaseStatus(status), at + timedelta(seconds=after), actor))
    return Case(cid, cam, cat, history[-1].to_status, (0.1, 0.1, 0.2, 0.2), None, 0.0, at, 0.0, at, 0.9, history=tuple(history))


CASES = [
    (_case("a1", "camA", S.illegal_parking, [("approved", 0, "review_policy"), ("dispatched", 60, "dispatch"),
                                               ("handled", 3600, "dispatch-callback"), ("verifying", 3700, "verifier"),
                                               ("closed", 4000, "verifier")]), A),
    (_case("a2", "camA", S.illegal_parking, [("pending_review", 0, "review_policy"), ("approved", 600, "user:alice"),
                                               ("dispatched", 660, "dispatch"), ("handled", 7260, "dispatch-callback"),
                                               ("verifying", 7300, "verifier"), ("reopened", 7600, "verifier"),
                                               ("dispatched", 8000, "dispatch")]), A),
    (_case("a3", "camB", S.exposed_garbage, [("pending_review", 0, "review_policy"), ("rejected", 300, "user:bob")]), B),
    (_case("a4", "camB", S.exposed_garbage, [("approved", 0, "review_policy"), ("dispatched", 120, "dispatch"),
                                               ("rejected", 900, "dispatch-callback")]), B),
    (_case("a5", "camB", S.street_vending, [("pending_review", 0, "review_policy"), ("approved", 300, "user:alice"),
                                              ("dispatched", 400, "dispatch")]), B),
    (_case("june", "camA", S.illegal_parking, [("approved", 0, "review_policy")], at=datetime(2025, 6, 2, 1, tzinfo=UTC)), A),
]


def _rows(path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return {(r["group_by"], r["group"]): r for r in csv.DictReader(fh)}


def test_report_numbers_match_the_known_cases(store, db_url, tmp_path):
    for case, loc in CASES:
        store.open_case(case, None, location=loc)
    ob.set_due(store, "a5", started_at=T, due_at=T + timedelta(hours=2))
    assert ob.mark_overdue(store, now=datetime.now(UTC)) == ["a5"]  # by citypatrol's SLA clock
    ob.record_callback(store, callback_id="cb-a4", case_id="a4", reported="overdue", at=T + timedelta(hours=1), actor="dispatch-callback",
                       reason="", plan=lambda current: ob.CallbackPlan(overdue=True))  # as the dispatch system reported

    app = typer.Typer()
    app.command()(report)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["--from", "2025-05-01", "--to", "2025-05-31", "--db", db_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 case(s)" in result.output

    rows = _rows(out / "summary.csv")
    total = rows[("total", "all")]
    expected = dict(detected=5, auto_submitted=2, held=3, confirmed=2, rejected=1, declined=1, dispatched=4, closed=1, reopened=1, overdue=2)
    assert {k: int(total[k]) for k in COUNTS} == expected
    assert total["reviewer_precision"] == f"{2 / 3:.4f}"
    assert float(total["median_to_dispatch_s"]) == (120 + 400) / 2  # of 60, 120, 400, 660
    assert float(total["median_to_handle_s"]) == (3540 + 6600) / 2
    assert float(total["median_to_close_s"]) == 4000

    park = rows[("category", "illegal_parking")]
    assert (int(park["detected"]), int(park["auto_submitted"]), int(park["held"]), int(park["reopened"]), int(park["closed"])) == (2, 1, 1, 1, 1)
    garbage = rows[("category", "exposed_garbage")]
    assert (int(garbage["rejected"]), int(garbage["declined"]), int(garbage["overdue"]), garbage["reviewer_precision"]) == (1, 1, 1, "0.0000")
    assert int(rows[("district", "福田区/G1")]["detected"]) == 2 and int(rows[("district", "南山区/G2")]["detected"]) == 3
    assert int(rows[("camera", "camB")]["overdue"]) == 2 and rows[("camera", "camA")]["median_to_dispatch_s"] == "360.0"
    assert ("camera", "june") not in rows and ("category", "billboard") not in rows

    with open(out / "cases.csv", encoding="utf-8-sig", newline="") as fh:
        cases = list(csv.DictReader(fh))
    assert [c["case_id"] for c in cases] == ["a1", "a2", "a3", "a4", "a5"]
    html = (out / "period_report.html").read_text(encoding="utf-8")
    assert "综合评价" in html and "outcomes.png" in html and "daily.png" in html and "67 %" in html
    assert (out / "outcomes.png").stat().st_size > 1000 and (out / "daily.png").stat().st_size > 1000


def test_an_empty_period_still_renders(store, db_url, tmp_path):
    app = typer.Typer()
    app.command()(report)
    out = tmp_path / "empty"
    result = CliRunner().invoke(app, ["--from", "2024-01-01", "--to", "2024-01-31", "--db", db_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert int(_rows(out / "summary.csv")[("total", "all")]["detected"]) == 0
    assert "No cases in this period" in (out / "period_report.html").read_text(encoding="utf-8")
