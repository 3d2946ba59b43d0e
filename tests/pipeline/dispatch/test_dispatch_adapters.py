"""The MQTT adapter through the machine's real Mosquitto (127.0.0.1:1883) and the JSONL file drop.

MQTT: a subscriber on `citypatrol/cases/<camera>` receives each case once per delivery with QoS 1,
the body as payload and the signed headers as MQTT 5 user properties; a broker that cannot be
reached leaves the message queued. File: one signed line per message, idempotent by key across
rotations and processes, and a torn line (crash mid-write) neither breaks readers nor the next line.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter
from citypatrol.pipeline.dispatch.base import Delivery
from citypatrol.pipeline.dispatch.file_drop import CURRENT, FileAdapter
from citypatrol.pipeline.dispatch.signing import signature, verify
from citypatrol.pipeline.store.records import OutboxStatus
from citypatrol.pipeline.types import CaseStatus
from tests import services
from tests.fixtures_dispatch import SECRET, db_url, dispatch_config, open_submitted, pg_admin, store, wait_for  # noqa: F401


class Subscriber:
    def __init__(self, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cp-test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append(m)

    def __enter__(self) -> Subscriber:
        self.client.connect(*services.mqtt_address())
        self.client.loop_start()
        assert self.ready.wait(10), "could not subscribe on the local Mosquitto"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_delivery_through_mosquitto(store):
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    services.require("Mosquitto")
    host, port = services.mqtt_address()
    config = dispatch_config(adapter="mqtt", mqtt_host=host, mqtt_port=port)
    ids = [f"{camera}-case{i}" for i in range(3)]
    for cid in ids:
        open_submitted(store, config, cid, camera=camera)
    with Subscriber(f"citypatrol/cases/{camera}") as sub:
        d = Dispatcher(store, config, make_adapter(config))
        try:
            stats = d.run_once()
        finally:
            d.close()
        assert stats.sent == 3
        assert wait_for(lambda: len(sub.messages) == 3, 10)
    for m in sub.messages:
        props = dict(m.properties.UserProperty)
        assert m.topic == f"citypatrol/cases/{camera}" and m.qos == 1
        verify(SECRET, props, m.payload, now=time.time(), window_s=60)
        assert json.loads(m.payload)["case_id"] == props["Idempotency-Key"]
    assert sorted(dict(m.properties.UserProperty)["Idempotency-Key"] for m in sub.messages) == ids
    assert all(store.get_case(c).case.status is CaseStatus.dispatched for c in ids)


def test_mqtt_broker_unreachable_keeps_the_message(store):
    config = dispatch_config(adapter="mqtt", mqtt_port=1, timeout_s=1, lease_s=2)
    open_submitted(store, config, "mq-down")
    d = Dispatcher(store, config, make_adapter(config))
    try:
        assert d.run_once().retried == 1
    finally:
        d.close()
    [m] = store.outbox(case_id="mq-down")
    assert m.status is OutboxStatus.pending and "cannot reach the MQTT broker at 127.0.0.1:1" in m.last_error


def _delivery(key: str, body: dict | None = None) -> Delivery:
    raw = json.dumps(body or {"case_id": key, "note": "违停"}, ensure_ascii=False, separators=(",", ":")).encode()
    return Delivery(key, "cam1", "case.submit", key, raw, 1_750_000_000, 1)


def _lines(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.glob("citypatrol-cases*.jsonl")):
        for raw in f.read_bytes().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
    return out


def test_file_drop_is_signed_and_idempotent_across_rotation_and_writers(tmp_path):
    a = FileAdapter(tmp_path, SECRET, rotate_bytes=1024)
    for i in range(12):
        assert a.send(_delivery(f"k{i}", {"case_id": f"k{i}", "pad": "x" * 150})).ok
    assert len(list(tmp_path.glob("citypatrol-cases-*.jsonl"))) >= 1, "rotated past 1 KiB"
    again = a.send(_delivery("k3"))
    assert again.ok and again.duplicate
    other = FileAdapter(tmp_path, SECRET, rotate_bytes=1024)  # another process on the same folder
    assert other.send(_delivery("k0")).duplicate and not other.send(_delivery("new")).duplicate
    lines = _lines(tmp_path)
    assert sorted(r["idempotency_key"] for r in lines) == sorted([f"k{i}" for i in range(12)] + ["new"])
    r = lines[0]
    body = json.dumps(r["message"], ensure_ascii=False, separators=(",", ":")).encode()
    assert r["signature"] == signature(SECRET, r["timestamp"], body)


def test_file_drop_survives_a_torn_line(tmp_path):
    a = FileAdapter(tmp_path, SECRET, rotate_bytes=1 << 20)
    a.send(_delivery("before"))
    with open(tmp_path / CURRENT, "ab") as fh:
        fh.write(b'{"idempotency_key":"torn","mess')  # a crash mid-write
    b = FileAdapter(tmp_path, SECRET, rotate_bytes=1 << 20)
    assert not b.send(_delivery("after")).duplicate
    assert [r["idempotency_key"] for r in _lines(tmp_path)] == ["before", "after"]


@pytest.mark.parametrize("resend", [False, True])
def test_file_adapter_through_the_dispatcher(store, tmp_path, resend):
    config = dispatch_config(adapter="file", file_dir=tmp_path / "drop")
    open_submitted(store, config, "f-1")
    d = Dispatcher(store, config, make_adapter(config))
    d.run_once()
    if resend:  # the same message once more (e.g. a restart that lost the 'sent' mark)
        d.adapter.send(_delivery("f-1"))
    assert [r["idempotency_key"] for r in _lines(tmp_path / "drop")] == ["f-1"]
    assert store.get_case("f-1").case.status is CaseStatus.dispatched
