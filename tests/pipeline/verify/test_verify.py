"""核查 on real frames with the real default detector, on SQLite and PostgreSQL.

The camera is the parking-lot clip's frame with three parked cars, held for 40 s of stream time;
the case is the car in the first bay. Where that car is painted out (from the empty-lot frame)
after a few seconds, the handled case is closed with before/after images and a `case.verified`
message; where it stays, the case is reopened with fresh evidence and re-dispatched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from citypatrol.annotate.evidence import write_case_images
from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.store import outbox as ob
from citypatrol.pipeline.config.models import Config, VerifyConfig
from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter
from citypatrol.pipeline.store.records import EvidenceKind, OutboxStatus
from citypatrol.pipeline.types import CaseStatus
from citypatrol.pipeline.verify.recheck import Verifier
from citypatrol.pipeline.verify.judge import Judge, Verdict
from tests.fixtures_dispatch import db_url, dispatch_config, open_submitted, pg_admin, sim, store  # noqa: F401
from tests.footage import PARKED_CARS, PARKING, encode, frame_at, paste

CAR = PARKED_CARS[0]
VERIFY = VerifyConfig(confirm_s=20, cadence_s=2, gap_s=4, max_watch_s=60)


@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


@pytest.fixture(scope="module")
def footage(assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    parked, empty = frame_at(assets / PARKING, 4.0), frame_at(assets / PARKING, 0.0)
    car_gone = paste(parked, empty, CAR)
    return {
        "parked": parked,
        "gone": encode(folder / "towed.mp4", 40, lambda s: parked if s < 6 else car_gone),
        "still": encode(folder / "still.mp4", 40, lambda s: parked),
    }


def _handled_case(store, config, footage, evidence: Path, case_id: str) -> None:
    open_submitted(store, config, case_id, box=CAR, score=0.91)
    frame, crop = write_case_images(evidence / case_id, "frame", footage["parked"], CAR, "illegal_parking", 0.64)
    for f, kind in ((frame, "frame"), (crop, "crop")):
        store.add_evidence(case_id, kind, f.path.relative_to(evidence).as_posix(), f.sha256, f.bytes)
    [submit] = ob.claim_due(store, now=datetime.now(UTC), lease_s=5, limit=1)  # delivered …
    ob.mark_sent(store, submit.id, at=datetime.now(UTC), to=CaseStatus.dispatched)
    store.set_status(case_id, CaseStatus.handled, at=datetime.now(UTC), actor="dispatch-callback")  # … and handled


def _config(url: str) -> Config:
    return dispatch_config(url).model_copy(update={"verify": VERIFY})


def test_problem_gone_closes_with_before_and_after(store, detector, footage, tmp_path):
    config, evidence = _config(""), tmp_path / "evidence"
    _handled_case(store, config, footage, evidence, "towed")
    result = Verifier(store, config, detector, evidence).verify_case("towed", source=str(footage["gone"]))
    assert result.verdict is Verdict.gone and result.status is CaseStatus.closed
    rec = store.get_case("towed")
    assert [t.to_status for t in rec.case.history][-3:] == [CaseStatus.handled, CaseStatus.verifying, CaseStatus.closed]
    assert "核查通过" in rec.case.history[-1].reason and rec.case.history[-1].actor == "verifier"
    kinds = {e.kind: e for e in rec.evidence}
    assert {EvidenceKind.before, EvidenceKind.after} <= set(kinds)
    assert kinds[EvidenceKind.before].sha256 == kinds[EvidenceKind.frame].sha256, "before = the case's original frame"
    for e in rec.evidence:
        assert (evidence / e.path).is_file()
    [_, verified] = store.outbox(case_id="towed")
    assert verified.kind == "case.verified" and verified.payload["evidence"] == [kinds[EvidenceKind.before].path, kinds[EvidenceKind.after].path]
    assert 20 <= result.watched_s <= 30, "closed once the car was gone for the confirmation period"


def test_problem_still_there_reopens_and_is_dispatched_again(store, sim, detector, footage, tmp_path):
    config, evidence = _config(sim.url), tmp_path / "evidence"
    _handled_case(store, config, footage, evidence, "stays")
    result = Verifier(store, config, detector, evidence).verify_case("stays", source=str(footage["still"]))
    assert result.verdict is Verdict.present and result.status is CaseStatus.reopened
    rec = store.get_case("stays")
    assert "核查未通过" in rec.case.history[-1].reason
    fresh = [e for e in rec.evidence if e.kind is EvidenceKind.after]
    assert len(fresh) == 1 and (evidence / fresh[0].path).is_file()

    dispatcher = Dispatcher(store, config, make_adapter(config), evidence_dir=evidence)
    for _ in range(3):
        dispatcher.run_once()
    assert [m.status for m in store.outbox(case_id="stays")] == [OutboxStatus.sent, OutboxStatus.sent]
    assert store.get_case("stays").case.status is CaseStatus.dispatched, "reported back and re-dispatched"
    body = sim.state.accepted["stays:reopen:1"].body
    assert body["kind"] == "case.reopen" and "核查未通过" in body["note"]
    assert [e["kind"] for e in body["evidence"]] == ["after", "frame"] and body["evidence"][0]["url"] == fresh[0].path


def test_verification_off_closes_without_a_check(store, footage, tmp_path):
    config = dispatch_config().model_copy(update={"verify": VerifyConfig(enabled=False)})
    _handled_case(store, config, footage, tmp_path / "evidence", "nocheck")
    result = Verifier(store, config, detector=None, evidence_dir=tmp_path / "evidence").verify_case("nocheck")  # type: ignore[arg-type]
    assert result.verdict is None and store.get_case("nocheck").case.status is CaseStatus.closed
    assert "verification is off" in store.get_case("nocheck").case.history[-1].reason


@pytest.mark.parametrize(
    ("seen", "verdict", "at"),
    [
        ("PPPPPPPPPPPP", Verdict.present, 10),  # one frame per 2 s, confirm 20 s
        ("PP..........", Verdict.gone, 11),  # last seen at 2 s, gone by 22 s
        ("P.P.P.P.P.P.", Verdict.present, 10),  # flicker inside the gap tolerance is still presence
        ("PP...PP...PP...P", None, None),  # neither for 20 s: no verdict within the footage
        ("............", Verdict.gone, 10),
    ],
)
def test_judge_table(seen, verdict, at):
    judge = Judge(VerifyConfig(confirm_s=20, cadence_s=2, gap_s=4, max_watch_s=60))
    got = None
    for i, ch in enumerate(seen):
        got = judge.add(i * 2.0, ch == "P")
        if got is not None:
            break
    assert got == verdict and (at is None or i == at)
