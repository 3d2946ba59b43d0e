"""The dispatcher against the real store (SQLite and PostgreSQL) and the simulator over loopback HTTP.

- the dispatch system down for a while: every case arrives exactly once after it is back;
- two dispatchers on one database never send the same message twice;
- a message out of attempts (or refused for good) dead-letters its case; a retry delivers it;
- a case's messages go out in order; the body is signed, mapped and carries the case's codes;
- the review policy in the case recorder: auto-submit writes the case, its decision and its
  message together; a held case has no message; a stale builder expiry is skipped.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from citypatrol.models.detections import Detections
from citypatrol.pipeline.store import outbox as ob
from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.cases.builder import CaseChange, ChangeKind
from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter, retry_dead_letter
from citypatrol.pipeline.dispatch.message import VERIFIED, idempotency_key
from citypatrol.pipeline.sinks.recorder import CaseRecorder
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.dispatch.signing import verify
from citypatrol.pipeline.store.records import OutboxMessage, OutboxStatus
from citypatrol.pipeline.types import CaseStatus, Event, Transition
from citypatrol.streams.frame import Frame
from tests.fixtures_dispatch import SECRET, T0, db_url, dispatch_config, make_case, open_submitted, pg_admin, sim, store  # noqa: F401


def drain(dispatcher: Dispatcher, until, timeout: float = 20.0) -> None:
    """Run dispatch rounds until `until()` holds."""
    end = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < end, "dispatcher did not finish in time"
        dispatcher.run_once()
        time.sleep(0.05)


def test_outage_then_every_case_delivered_exactly_once(store, sim):
    config = dispatch_config(sim.url)
    ids = [f"case-{i}" for i in range(5)]
    for cid in ids:
        open_submitted(store, config, cid)
    sim.down()
    dispatcher = Dispatcher(store, config, make_adapter(config))
    for _ in range(3):  # the dispatch system is down: attempts fail and back off, nothing is lost
        stats = dispatcher.run_once()
        assert stats.sent == 0
        time.sleep(0.25)
    pending = store.outbox(status=OutboxStatus.pending)
    assert len(pending) == 5 and all(m.attempts >= 1 and "cannot reach" in m.last_error for m in pending)
    assert all(store.get_case(c).case.status is CaseStatus.approved for c in ids)

    sim.up()
    drain(dispatcher, lambda: not store.outbox(status=OutboxStatus.pending))
    assert sorted(sim.accepted_keys()) == sorted(ids)
    assert sim.state.duplicates == 0 and all(sim.attempts_for(c) == 1 for c in ids)
    for cid in ids:
        rec = store.get_case(cid)
        assert rec.case.status is CaseStatus.dispatched
        assert [t.actor for t in rec.case.history][-1] == "dispatch"
    assert set(ob.deadlines(store)) == set(ids), "the SLA clock starts at delivery"


def test_body_is_signed_mapped_and_carries_codes_and_location(store, sim):
    config = dispatch_config(sim.url, field_map={"eventCode": "category_code", "eventName": "category_name", "x": "lon",
                                                 "y": "lat", "gridCode": "grid_code", "sourceId": "case_id", "desc": "description"})
    open_submitted(store, config, "c-map")
    drain(Dispatcher(store, config, make_adapter(config)), lambda: sim.accepted_keys() == ["c-map"])
    body = sim.state.accepted["c-map"].body
    assert body == {"eventCode": "0505", "eventName": "机动车乱停放", "x": 114.05, "y": 22.54, "gridCode": "440304-001",
                    "sourceId": "c-map", "desc": body["desc"]}
    assert "机动车乱停放" in body["desc"] and "深南大道" in body["desc"]


def test_two_dispatchers_never_send_a_message_twice(store, sim):
    config = dispatch_config(sim.url, batch=2)
    ids = [f"both-{i}" for i in range(8)]
    for cid in ids:
        open_submitted(store, config, cid)
    sim.delay_s = 0.05  # deliveries overlap in time
    errors: list[BaseException] = []

    def work() -> None:
        d = Dispatcher(store, config, make_adapter(config))
        try:
            end = time.monotonic() + 30
            while store.outbox(status=OutboxStatus.pending) and time.monotonic() < end:
                d.run_once()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(sim.accepted_keys()) == sorted(ids)
    assert sim.state.duplicates == 0, "a message was claimed by both dispatchers"
    assert all(m.status is OutboxStatus.sent and m.attempts == 1 for m in store.outbox())


def test_out_of_attempts_dead_letters_the_case_and_a_retry_delivers_it(store, sim):
    config = dispatch_config(sim.url, max_attempts=3)
    open_submitted(store, config, "c-dead")
    sim.fail_next(3, 503)
    d = Dispatcher(store, config, make_adapter(config))
    drain(d, lambda: store.get_case("c-dead").case.status is CaseStatus.dead_letter)
    [m] = store.outbox(case_id="c-dead")
    assert m.status is OutboxStatus.dead_letter and m.attempts == 3 and "HTTP 503" in m.last_error
    assert "undeliverable after 3 attempt(s)" in store.get_case("c-dead").case.history[-1].reason

    assert retry_dead_letter(store, "c-dead", actor="user:alice") == 1
    rec = store.get_case("c-dead")
    assert rec.case.status is CaseStatus.approved and rec.case.history[-1].actor == "user:alice"
    drain(d, lambda: store.get_case("c-dead").case.status is CaseStatus.dispatched)
    assert sim.accepted_keys() == ["c-dead"]
    with pytest.raises(ValueError, match="no dead-letter message"):
        retry_dead_letter(store, "c-dead", actor="user:alice")


def test_a_refusal_retrying_cannot_fix_dead_letters_at_once(store, sim):
    config = dispatch_config(sim.url)
    open_submitted(store, config, "c-400")
    sim.fail_next(1, 400)
    Dispatcher(store, config, make_adapter(config)).run_once()
    [m] = store.outbox(case_id="c-400")
    assert m.status is OutboxStatus.dead_letter and m.attempts == 1
    assert store.get_case("c-400").case.status is CaseStatus.dead_letter


def test_wrong_key_is_refused_by_the_receiver(store, sim):
    config = dispatch_config(sim.url, secret="not-the-shared-key-xxxxxxxx", max_attempts=1)
    open_submitted(store, config, "c-key")
    Dispatcher(store, config, make_adapter(config)).run_once()
    assert sim.state.bad_signatures == 1 and sim.accepted_keys() == []
    assert store.get_case("c-key").case.status is CaseStatus.dead_letter


def test_a_case_messages_go_out_in_order(store, sim):
    config = dispatch_config(sim.url)
    open_submitted(store, config, "c-order")
    store.enqueue("c-order", OutboxMessage(VERIFIED, {"note": "later"}, idempotency_key("c-order", VERIFIED, 1)))
    sim.fail_next(1, 500)
    d = Dispatcher(store, config, make_adapter(config))
    stats = d.run_once()
    assert stats.claimed == 1, "the second message waits for the first"
    drain(d, lambda: not store.outbox(status=OutboxStatus.pending))
    assert sim.accepted_keys() == ["c-order", "c-order:verified:1"]


def test_signature_covers_timestamp_and_body(store, sim):
    config = dispatch_config(sim.url)
    open_submitted(store, config, "c-sig")
    seen: list = []
    original = sim._receive

    def spy(headers, body):
        seen.append((dict(headers), body))
        return original(headers, body)

    sim._receive = spy
    Dispatcher(store, config, make_adapter(config)).run_once()
    headers, body = seen[0]
    assert headers["idempotency-key"] == "c-sig" and headers["x-citypatrol-case-id"] == "c-sig"
    verify(SECRET, headers, body, now=time.time(), window_s=60)
    assert json.loads(body)["case_id"] == "c-sig"
    with pytest.raises(ValueError):
        verify(SECRET, headers, body.replace(b"c-sig", b"c-sIg"), now=time.time(), window_s=60)


# -- the review policy in the recorder ----------------------------------------------------------------


def _opened(case, score: float) -> FrameResult:
    event = Event("cam1", case.category, case.box, "bays", 400.0, T0, 100.0, score, detail="car still 300 s")
    frame = Frame("cam1", 400.0, T0, np.zeros((120, 160, 3), np.uint8))
    return FrameResult(frame, Detections.empty((160, 120)), (), (event,), (CaseChange(ChangeKind.opened, case, event),))


def test_recorder_with_policy_submits_or_holds_in_one_write(store, tmp_path):
    config = dispatch_config()
    recorder = CaseRecorder(store, config, tmp_path / "evidence", config.cameras, policy=ReviewPolicy(config.review))
    recorder.record(_opened(make_case("hi", score=0.93), 0.93))
    recorder.record(_opened(make_case("lo", score=0.55), 0.55))
    recorder.close()
    hi, lo = store.get_case("hi"), store.get_case("lo")
    assert [t.to_status for t in hi.case.history] == [CaseStatus.detected, CaseStatus.approved]
    assert hi.case.history[-1].actor == "review_policy" and "0.93 ≥ 0.85" in hi.case.history[-1].reason
    assert [(m.kind, m.idempotency_key) for m in store.outbox(case_id="hi")] == [("case.submit", "hi")]
    assert lo.case.status is CaseStatus.pending_review and "score 0.55 < 0.85" in lo.case.history[-1].reason
    assert store.outbox(case_id="lo") == []
    assert {e.kind.value for e in hi.evidence} == {"frame", "crop"}


def test_recorder_skips_a_builder_expiry_the_stored_status_forbids(store, tmp_path):
    config = dispatch_config()
    recorder = CaseRecorder(store, config, tmp_path / "evidence", config.cameras, policy=ReviewPolicy(config.review))
    case = make_case("gone", score=0.95)
    recorder.record(_opened(case, 0.95))
    store.set_status("gone", CaseStatus.dispatched, at=datetime.now(UTC), actor="dispatch")
    stale = case.__class__(**{**{f: getattr(case, f) for f in case.__slots__}, "status": CaseStatus.expired,
                              "history": (*case.history, Transition(CaseStatus.detected, CaseStatus.expired, T0, "casebuilder", "gone"))})
    frame = Frame("cam1", 900.0, T0, np.zeros((120, 160, 3), np.uint8))
    recorder.record(FrameResult(frame, Detections.empty((160, 120)), (), (), (CaseChange(ChangeKind.expired, stale),)))
    recorder.close()
    assert store.get_case("gone").case.status is CaseStatus.dispatched
