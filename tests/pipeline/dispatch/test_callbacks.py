"""Status callbacks from the dispatch system: signed POSTs over loopback HTTP to citypatrol's route
(uvicorn), on SQLite and PostgreSQL. Good ones move the case through the state machine; bad
signatures, stale timestamps, replays, unknown cases and impossible changes are refused, change
nothing, and are logged without the key.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from citypatrol.pipeline.store import outbox as ob
from citypatrol.pipeline.dispatch.callbacks import BadCallback, parse, plan
from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter
from citypatrol.pipeline.types import CaseStatus
from tests.fixtures_dispatch import SECRET, CallbackServer, db_url, dispatch_config, open_submitted, pg_admin, sim, store, wait_for  # noqa: F401

S = CaseStatus


@pytest.mark.parametrize(
    ("current", "reported", "to", "refused"),
    [
        (S.approved, "dispatched", (S.dispatched,), False),
        (S.dispatched, "dispatched", (), False),  # news we have: no change
        (S.handled, "dispatched", (), False),
        (S.dispatched, "handled", (S.handled,), False),
        (S.approved, "handled", (S.dispatched, S.handled), False),  # the callback beat our own delivery record
        (S.closed, "handled", (), False),
        (S.dispatched, "rejected", (S.rejected,), False),
        (S.dead_letter, "rejected", (S.rejected,), False),
        (S.pending_review, "handled", (), True),  # never sent: the dispatch system cannot have it
        (S.detected, "dispatched", (), True),
        (S.closed, "rejected", (), True),
        (S.expired, "dispatched", (), True),
    ],
)
def test_plan_table(current, reported, to, refused):
    p = plan(current, reported)
    assert p.to == to and bool(p.refuse) == refused


def test_overdue_marks_without_a_status_change():
    p = plan(S.dispatched, "overdue")
    assert p.overdue and p.to == () and not p.refuse


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"not json", 400), (b"[1]", 400), (b'{"case_id": "c", "status": "handled"}', 400),
     (b'{"callback_id": "x", "case_id": "c", "status": "fixed"}', 422), (b"{" + b" " * 70000 + b"}", 413)],
)
def test_malformed_bodies(body, code):
    with pytest.raises(BadCallback) as exc:
        parse(body)
    assert exc.value.code == code


@pytest.fixture
def loop(store, sim):
    """A dispatched case, the simulator pointing at citypatrol's callback endpoint."""
    config = dispatch_config(sim.url)
    open_submitted(store, config, "cb-1")
    Dispatcher(store, config, make_adapter(config)).run_once()
    assert store.get_case("cb-1").case.status is S.dispatched
    with CallbackServer(store, config) as server:
        sim.callback_url = server.url
        yield store, sim


def test_signed_callbacks_move_the_case(loop):
    store, sim = loop
    assert sim.callback("cb-1", "dispatched", note="派遣至城管执法队").status_code == 200  # already dispatched: no change
    r = sim.callback("cb-1", "handled", note="已拖离")
    assert r.status_code == 200 and r.json() == {"result": "applied", "case_id": "cb-1", "status": "handled"}
    last = store.get_case("cb-1").case.history[-1]
    assert (last.to_status, last.actor) == (S.handled, "dispatch-callback") and "已拖离" in last.reason
    assert sim.callback("cb-1", "overdue").json()["result"] == "applied"
    d = ob.deadlines(store)["cb-1"]
    assert d.overdue_at is not None and d.overdue_source == "dispatch"
    assert ob.prune_receipts(store, before=datetime.now(UTC) - timedelta(hours=1)) == 0
    assert ob.prune_receipts(store, before=datetime.now(UTC) + timedelta(seconds=1)) == 3


def test_bad_signature_stale_timestamp_replay_and_unknown_case_are_refused_and_logged(loop, caplog):
    store, sim = loop
    caplog.set_level(logging.WARNING, logger="citypatrol.callbacks")
    before = store.get_case("cb-1").case.history

    assert sim.callback("cb-1", "handled", secret="a-guessed-key").status_code == 401
    assert sim.callback("cb-1", "handled", timestamp=int(time.time()) - 3600).status_code == 401
    body = json.dumps({"callback_id": "t1", "case_id": "cb-1", "status": "rejected"}).encode()
    tampered = body.replace(b"rejected", b"handled!")
    r = sim.callback("cb-1", "x", body=body)  # sign the original …
    assert r.status_code == 200
    assert store.get_case("cb-1").case.status is S.rejected
    assert sim.callback("cb-1", "x", body=body).status_code == 409  # … the same callback again: a replay
    assert sim.callback("cb-1", "x", body=tampered, secret="wrong").status_code == 401
    assert sim.callback("nope", "handled").status_code == 404
    assert sim.callback("cb-1", "handled").status_code == 409  # rejected is final

    history = store.get_case("cb-1").case.history
    assert len(history) == len(before) + 1, "only the one good callback changed anything"
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 6
    text = caplog.text
    assert "signature does not match" in text and "outside the" in text and "received before" in text and "no case 'nope'" in text
    assert SECRET not in text and "a-guessed-key" not in text and "sha256=" not in text


@pytest.mark.parametrize("field", ["note", "case_id", "callback_id", "at"])
def test_text_with_a_nul_character_is_refused_on_every_database(loop, field):
    store, sim = loop
    before = store.get_case("cb-1").case.history
    fields = {"callback_id": "nul-1", "case_id": "cb-1", "status": "handled", "at": "2026-12-01T10:00:00+08:00", "note": "已拖离"}
    r = sim.callback("cb-1", "x", body=json.dumps({**fields, field: fields[field] + "\u0000x"}).encode())
    assert r.status_code == 422 and "NUL" in r.json()["reason"] and field in r.json()["reason"]
    r = sim.callback("cb-1", "x", body=json.dumps({**fields, field: fields[field] + "\ud800"}).encode())
    assert r.status_code == 422 and field in r.json()["reason"]
    assert store.get_case("cb-1").case.history == before, "a refused callback changes nothing"
    r = sim.callback("cb-1", "x", body=json.dumps(fields, ensure_ascii=False).encode())  # the same callback, clean
    assert r.status_code == 200 and r.json()["status"] == "handled"
    assert "已拖离" in store.get_case("cb-1").case.history[-1].reason


def test_unsigned_request_is_refused(loop):
    import httpx

    store, sim = loop
    r = httpx.post(sim.callback_url, json={"callback_id": "u", "case_id": "cb-1", "status": "handled"})
    assert r.status_code == 401 and "missing" in r.json()["reason"]
    assert store.get_case("cb-1").case.status is S.dispatched


def test_simulator_calls_back_on_its_own(store, sim):
    config = dispatch_config(sim.url)
    with CallbackServer(store, config) as server:
        sim.callback_url, sim.auto = server.url, (("dispatched", 0.1), ("handled", 0.3))
        open_submitted(store, config, "cb-auto")
        Dispatcher(store, config, make_adapter(config)).run_once()
        assert wait_for(lambda: store.get_case("cb-auto").case.status is S.handled, 15)
    assert [c[1:] for c in sim.state.callbacks] == [("dispatched", 200), ("handled", 200)]
