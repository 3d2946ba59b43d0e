"""The review center's REST API over real HTTP, on SQLite and PostgreSQL: listing and filtering
cases, decisions through the state machine with audit rows, evidence by id (hash-checked, never
outside the evidence dir), cameras, versioned zones, statistics, live events, dead letters."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from citypatrol.pipeline.store.records import OutboxMessage
from citypatrol.pipeline.types import CaseStatus
from tests.fixtures_api import SEED, SeedCase, add_case, api_server, db_url, evidence_set, pg_admin  # noqa: F401

QUEUE_IDS = {s.case_id for s in SEED}


def test_cases_list_filters_and_pages(api_server):
    c = api_server.client("analyst")
    page = c.get("/api/v1/cases", params={"queue": "true"}).json()
    assert page["total"] == len(SEED) and {i["case_id"] for i in page["items"]} == QUEUE_IDS
    opened = [i["opened_at"] for i in page["items"]]
    assert opened == sorted(opened, reverse=True)  # newest first
    first = page["items"][0]
    assert first["case_id"] == "c-london-poster" and first["camera_name"] == "伦敦街道 London street"
    assert first["category"] == {"value": "billboard", "zh": "违规广告牌", "en": "unauthorized billboard", "color": "#1e88e5",
                                 "code": "0202", "code_name": "违章张贴悬挂广告牌匾", "major": "宣传广告"}
    assert [e["kind"] for e in first["evidence"]] == ["frame", "crop", "clip"]
    assert first["location"]["district"] == "西城区"
    assert first["plate"] is None  # a billboard's plate is never read
    by_id = {i["case_id"]: i for i in page["items"]}
    assert by_id["c-parking-1"]["plate"] == {"status": "read", "text": "皖AD12345", "score": 0.96, "note": ""}
    assert by_id["c-parking-2"]["plate"] == {"status": "unread", "text": "", "score": None, "note": "no text found on the vehicle"}

    def ids(**params) -> set[str]:
        return {i["case_id"] for i in c.get("/api/v1/cases", params=params).json()["items"]}

    assert ids(category="illegal_parking") == {"c-parking-1", "c-parking-2", "c-junction"}
    assert ids(camera=["london", "pedestrian"]) == {"c-london-poster", "c-london-render", "c-bin"}
    assert ids(district="东城区", category="illegal_parking") == {"c-parking-1", "c-parking-2", "c-junction"}
    now = datetime.now(UTC)
    assert ids(since=(now - timedelta(hours=4)).isoformat()) == {"c-london-poster", "c-parking-1", "c-bin"}
    assert ids(until=(now - timedelta(hours=24)).isoformat()) == {"c-parking-2", "c-junction"}
    assert ids(status="approved") == set()
    two = c.get("/api/v1/cases", params={"limit": 2, "offset": 2}).json()
    assert two["total"] == len(SEED) and [i["case_id"] for i in two["items"]] == [i["case_id"] for i in page["items"][2:4]]
    assert c.get("/api/v1/cases", params={"limit": 0}).status_code == 422
    assert c.get("/api/v1/cases", params={"status": "nonsense"}).status_code == 422
    assert c.get("/api/v1/cases", params={"camera": "a\x00b"}).status_code == 422
    assert c.get("/api/v1/cases", params={"since": "0001-01-01T00:00:00+14:00"}).status_code == 422


def test_decisions_go_through_the_state_machine_and_are_audited(api_server):
    reviewer, csrf = api_server.login("reviewer")
    h = {"X-CSRF-Token": csrf}
    d = reviewer.post("/api/v1/cases/c-london-poster/confirm", json={}, headers=h)
    assert d.status_code == 200 and d.json()["status"] == "approved"
    last = d.json()["history"][-1]
    assert (last["from_status"], last["to_status"], last["actor"]) == ("detected", "approved", "user:reviewer")
    again = reviewer.post("/api/v1/cases/c-london-poster/confirm", json={}, headers=h)
    assert again.status_code == 409 and "cannot go from approved to approved" in again.json()["detail"]
    assert reviewer.post("/api/v1/cases/c-bin/reject", json={}, headers=h).status_code == 422  # a reason is required
    r = reviewer.post("/api/v1/cases/c-bin/reject", json={"reason": "误报：不是问题 — bin is not full"}, headers=h).json()
    assert r["status"] == "rejected" and r["history"][-1]["reason"] == "误报：不是问题 — bin is not full"
    assert reviewer.post("/api/v1/cases/c-bin/confirm", json={}, headers=h).status_code == 409  # rejected is final

    machine = api_server.client("reviewer")  # a bearer token: no CSRF header needed, audited as the token
    rc = machine.post("/api/v1/cases/c-junction/reclassify", json={"category": "nonmotor_parking", "reason": "e-bike"}).json()
    assert rc["category"]["value"] == "nonmotor_parking" and rc["category"]["code"] == "0506" and rc["status"] == "detected"
    assert rc["activity"][-1]["actor"] == "token:reviewer-machine"
    assert rc["activity"][-1]["detail"] == {"from": "illegal_parking", "to": "nonmotor_parking"}
    assert machine.post("/api/v1/cases/c-junction/reclassify", json={"category": "nonmotor_parking"}).status_code == 409
    assert machine.post("/api/v1/cases/c-junction/reclassify", json={"category": "jaywalking"}).status_code == 422

    before = machine.get("/api/v1/cases/c-parking-1").json()
    m = machine.post("/api/v1/cases/c-parking-2/merge", json={"into": "c-parking-1", "reason": "same car"})
    assert m.status_code == 200 and m.json()["status"] == "rejected"
    assert m.json()["history"][-1]["reason"] == "merged into c-parking-1: same car"
    kept = machine.get("/api/v1/cases/c-parking-1").json()
    assert kept["sightings"] == before["sightings"] + 1 and kept["events"] == before["events"] + 1
    assert any(a["action"] == "merge" and a["target"] == "c-parking-1" for a in kept["activity"])
    assert machine.post("/api/v1/cases/c-parking-1/merge", json={"into": "c-parking-1"}).status_code == 409
    assert machine.post("/api/v1/cases/c-parking-1/merge", json={"into": "c-bin"}).status_code == 409  # into a rejected case
    assert machine.post("/api/v1/cases/nope/merge", json={"into": "c-bin"}).status_code == 404

    n = machine.post("/api/v1/cases/c-parking-1/notes", json={"text": "城管队员已到场"}).json()
    assert n["activity"][-1]["action"] == "note" and n["activity"][-1]["reason"] == "城管队员已到场"
    assert machine.post("/api/v1/cases/nope/confirm", json={}).status_code == 404

    audit = api_server.client("admin").get("/api/v1/audit").json()
    done = {(a["action"], a["case_id"], a["actor"]) for a in audit}
    assert {("confirm", "c-london-poster", "user:reviewer"), ("reject", "c-bin", "user:reviewer"),
            ("reclassify", "c-junction", "token:reviewer-machine"), ("merge", "c-parking-2", "token:reviewer-machine"),
            ("note", "c-parking-1", "token:reviewer-machine")} <= done
    assert all(a["at"] for a in audit)


def test_evidence_is_served_by_id_only_and_checked_against_its_hash(api_server):
    c = api_server.client("analyst")
    detail = c.get("/api/v1/cases/c-london-poster").json()
    by_kind = {e["kind"]: e for e in detail["evidence"]}
    frame = c.get(by_kind["frame"]["url"])
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(frame.content).hexdigest() == by_kind["frame"]["sha256"] == frame.headers["x-content-sha256"]
    clip = c.get(by_kind["clip"]["url"], headers={"Range": "bytes=0-99"})
    assert clip.status_code == 206 and clip.headers["content-type"] == "video/mp4" and len(clip.content) == 100
    assert c.get("/api/v1/evidence/999999").status_code == 404
    assert c.get("/api/v1/evidence/frame.jpg").status_code == 422  # ids only, never paths
    assert c.get("/api/v1/evidence/..%2F..%2Fetc%2Fpasswd").status_code == 404

    # a file swapped on disk is refused, and a link out of the evidence dir is never followed
    root = api_server.evidence_dir
    secret = root.parent / "outside.txt"
    secret.write_text("not evidence")
    (root / "c-bin" / "escape.jpg").unlink(missing_ok=True)
    os.symlink(secret, root / "c-bin" / "escape.jpg")
    row = api_server.store.add_evidence("c-bin", "frame", "c-bin/escape.jpg", hashlib.sha256(b"not evidence").hexdigest(), 12)
    ev = [e for e in c.get("/api/v1/cases/c-bin").json()["evidence"] if e["url"] and e["size"] == 12][0]
    assert row.path == "c-bin/escape.jpg" and c.get(ev["url"]).status_code == 404
    tampered = root / "c-bin" / "tampered.jpg"
    tampered.write_bytes(b"original")
    api_server.store.add_evidence("c-bin", "crop", "c-bin/tampered.jpg", hashlib.sha256(b"original").hexdigest(), 8)
    ev = [e for e in c.get("/api/v1/cases/c-bin").json()["evidence"] if e["size"] == 8][0]
    assert c.get(ev["url"]).status_code == 200
    tampered.write_bytes(b"replaced")
    assert c.get(ev["url"]).status_code == 409


def test_cameras_with_snapshot_and_unknown_health(api_server):
    c = api_server.client("reviewer")
    cams = {cam["id"]: cam for cam in c.get("/api/v1/cameras").json()}
    assert set(cams) == {"london", "parking_lot", "pedestrian", "intersection"}
    london = cams["london"]
    assert london["open_cases"] == 2 and london["zones"] == 1 and london["enabled"] is True
    assert london["health"] == {"status": "unknown", "detail": {}}
    snap = c.get(london["snapshot_url"])
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg" and len(snap.content) > 10_000
    assert c.get("/api/v1/cameras/london").json()["id"] == "london"
    assert c.get("/api/v1/cameras/nope").status_code == 404
    assert c.get("/api/v1/cameras/nope/snapshot").status_code == 404


def test_zones_are_versioned_and_a_stale_edit_is_refused(api_server):
    admin = api_server.client("admin")
    z = admin.get("/api/v1/cameras/london/zones").json()
    assert z["version"] == 0 and z["source"] == "config" and [x["id"] for x in z["zones"]] == ["hoarding"]
    new = {"id": "kerb", "name": "路边", "kind": "no_parking", "polygon": [[0.1, 0.7], [0.5, 0.7], [0.5, 0.9], [0.1, 0.9]]}
    put = admin.put("/api/v1/cameras/london/zones", json={"base_version": 0, "zones": [*z["zones"], new], "reason": "kerb"})
    assert put.status_code == 200 and put.json()["version"] == 1 and put.json()["source"] == "saved"
    assert put.json()["saved_by"] == "token:admin-machine"
    stale = admin.put("/api/v1/cameras/london/zones", json={"base_version": 0, "zones": []})
    assert stale.status_code == 409 and "version 1" in stale.json()["detail"]
    add = admin.post("/api/v1/cameras/london/zones/items",
                     json={"base_version": 1, "zone": {**new, "id": "stall", "kind": "no_vending"}})
    assert add.status_code == 201 and add.json()["version"] == 2
    assert admin.post("/api/v1/cameras/london/zones/items", json={"base_version": 2, "zone": new}).status_code == 409  # id exists
    moved = {**new, "polygon": [[0.2, 0.7], [0.6, 0.7], [0.6, 0.95]]}
    assert admin.put("/api/v1/cameras/london/zones/items/kerb", json={"base_version": 2, "zone": moved}).json()["version"] == 3
    gone = admin.delete("/api/v1/cameras/london/zones/items/stall", params={"base_version": 3}).json()
    assert gone["version"] == 4 and [x["id"] for x in gone["zones"]] == ["hoarding", "kerb"]
    assert gone["zones"][1]["polygon"] == moved["polygon"]
    versions = admin.get("/api/v1/cameras/london/zones/versions").json()
    assert [v["version"] for v in versions] == [4, 3, 2, 1] and [v["zones"] for v in versions] == [2, 3, 3, 2]
    outside = {**new, "polygon": [[0.1, 0.7], [1.5, 0.7], [0.5, 0.9]]}
    assert admin.put("/api/v1/cameras/london/zones", json={"base_version": 4, "zones": [outside]}).status_code == 422
    twice = admin.put("/api/v1/cameras/london/zones", json={"base_version": 4, "zones": [new, new]})
    assert twice.status_code == 422 and "twice" in twice.json()["detail"]
    assert admin.get("/api/v1/cameras/london").json()["zones"] == 2
    assert api_server.client("analyst").get("/api/v1/cameras/london/zones").json()["version"] == 4
    audit = admin.get("/api/v1/audit", params={"action": "zones.save"}).json()
    assert [a["detail"]["version"] for a in audit] == [4, 3, 2, 1]


def test_statistics_count_days_precision_and_durations(api_server):
    m = api_server.client("reviewer")
    m.post("/api/v1/cases/c-london-poster/confirm", json={})
    m.post("/api/v1/cases/c-london-render/reject", json={"reason": "合规广告"})
    m.post("/api/v1/cases/c-parking-1/confirm", json={})
    m.post("/api/v1/cases/c-junction/reclassify", json={"category": "nonmotor_parking"})
    m.post("/api/v1/cases/c-junction/confirm", json={})
    at = datetime.now(UTC)
    for to in (CaseStatus.dispatched, CaseStatus.handled, CaseStatus.closed):  # the dispatch system closes one
        at += timedelta(hours=1)
        api_server.store.set_status("c-parking-1", to, at=at, actor="dispatch")
    s = api_server.client("analyst").get("/api/v1/stats").json()
    assert s["total"] == len(SEED) and s["timezone"] == "Asia/Shanghai"
    assert sum(sum(d["counts"].values()) for d in s["per_day"]) == len(SEED)
    assert s["per_category"] == {"billboard": 2, "garbage_overflow": 1, "illegal_parking": 2, "nonmotor_parking": 1}
    assert s["precision"]["billboard"] == {"confirmed": 1, "judged": 2, "precision": 0.5}
    assert s["precision"]["illegal_parking"] == {"confirmed": 1, "judged": 2, "precision": 0.5}  # the reclassified one counts against it
    close = s["time_to_close"]["illegal_parking"]
    assert close["count"] == 1 and 4.9 < close["median_h"] < 5.1  # opened 2 h ago, closed 3 h from now
    assert s["time_to_decision"]["billboard"]["count"] == 2
    recent = api_server.client("analyst").get("/api/v1/stats", params={"since": (datetime.now(UTC) - timedelta(hours=4)).isoformat()}).json()
    assert recent["total"] == 3
    bad = api_server.client("analyst").get("/api/v1/stats", params={"since": "2025-05-02T00:00:00Z", "until": "2025-05-01T00:00:00Z"})
    assert bad.status_code == 422


def test_new_and_changed_cases_arrive_as_server_sent_events(api_server, evidence_set):
    received: list[dict] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {api_server.tokens['analyst']}"},
                          timeout=30) as c, c.stream("GET", "/api/v1/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            ready.set()
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "case":
                    received.append(json.loads(line[6:]))
                    if len(received) >= 2:
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    time.sleep(0.5)
    root, files = evidence_set
    add_case(api_server.store, api_server.config, SeedCase("c-live", "london", SEED[0].category, (0.70, 0.40, 0.76, 0.55),
                                                           "hoarding", 1.0, 0.0), files["c-london-poster"])
    api_server.client("reviewer").post("/api/v1/cases/c-bin/reject", json={"reason": "bin is not full"})
    t.join(15)
    assert {(e["case_id"], e["status"]) for e in received} == {("c-live", "detected"), ("c-bin", "rejected")}
    live = next(e for e in received if e["case_id"] == "c-live")
    assert live["camera_name"] == "伦敦街道 London street" and {e["kind"] for e in live["evidence"]} == {"frame", "crop", "clip"}


def test_dead_letter_retry_uses_the_dispatcher(api_server):
    admin = api_server.client("admin")
    assert admin.get("/api/v1/dead-letters").json() == []
    r = admin.post("/api/v1/cases/c-bin/retry")
    assert r.status_code == 409  # not dead-lettered: nothing to retry
    assert admin.post("/api/v1/cases/nope/retry").status_code == 404
    # the dispatcher gave up on c-parking-1: its message is dead-lettered and the case too
    api_server.store.set_status("c-parking-1", CaseStatus.approved, at=datetime.now(UTC), actor="test",
                                outbox=OutboxMessage("case.submit", {"case_id": "c-parking-1"}, "c-parking-1:submit"))
    with api_server.store.engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET status = 'dead_letter', attempts = 8, last_error = 'HTTP 503' WHERE case_id = 'c-parking-1'"))
    api_server.store.set_status("c-parking-1", CaseStatus.dead_letter, at=datetime.now(UTC), actor="dispatch")
    dead = admin.get("/api/v1/dead-letters").json()
    assert dead == [{"case_id": "c-parking-1", "status": "dead_letter", "category": "illegal_parking", "camera_id": "parking_lot",
                     "messages": 1, "last_error": "HTTP 503", "attempts": 8}]
    assert api_server.client("reviewer").post("/api/v1/cases/c-parking-1/retry").status_code == 403
    r = admin.post("/api/v1/cases/c-parking-1/retry")
    assert r.status_code == 200 and r.json()["requeued"] == 1
    assert api_server.store.get_case("c-parking-1").case.status is CaseStatus.approved
    assert [m.status.value for m in api_server.store.outbox(case_id="c-parking-1")] == ["pending"]
    assert admin.get("/api/v1/dead-letters").json() == []
    assert any(a["action"] == "retry" and a["case_id"] == "c-parking-1" for a in admin.get("/api/v1/audit").json())


def test_models_and_health(api_server):
    m = api_server.client("analyst").get("/api/v1/models").json()
    assert m["detectors"][0]["weights"] == "yolo11n-coco-openvino-int8"
    assert m["in_cases"] == {"yolo11n-coco-openvino-int8": len(SEED)}
    h = httpx.get(f"{api_server.url}/healthz")
    assert h.status_code == 200 and h.headers["content-security-policy"].startswith("default-src 'self'")
    page = httpx.get(f"{api_server.url}/login")
    assert page.status_code == 200 and "城市巡查" in page.text and "x-frame-options" in page.headers
    assert "http://" not in page.text and "https://" not in page.text  # nothing from other origins


def test_camera_health_comes_from_the_live_runners_status_file(tmp_path, evidence_set):
    from citypatrol.api.health import StatusFileHealth
    from citypatrol.pipeline.live.status import CameraStatus, LiveStatus, write_status
    from tests.fixtures_api import start_api

    path = tmp_path / "citypatrol-status.json"
    api, server = start_api(f"sqlite:///{tmp_path / 'h.db'}", evidence_set, health=StatusFileHealth(path))
    try:
        c = api.client("reviewer")

        def health() -> dict[str, dict]:
            return {cam["id"]: cam["health"] for cam in c.get("/api/v1/cameras").json()}

        assert health()["london"] == {"status": "unknown", "detail": {"reason": "no live runner status file"}}
        now = datetime.now(UTC).isoformat()
        write_status(path, LiveStatus(state="running", pid=1, started_at=now, updated_at=now, cameras=(
            CameraStatus("london", "london", "rtsp://cam/1", "running", analysed_fps=0.5, last_frame_age_s=1.2),
            CameraStatus("parking_lot", "p", "rtsp://cam/2", "offline", last_error="connection refused"),
            CameraStatus("pedestrian", "p", "rtsp://cam/3", "failed", last_error="gave up"),
        )))
        time.sleep(2.1)  # the file is read at most every 2 s
        h = health()
        assert h["london"]["status"] == "ok" and h["london"]["detail"]["analysed_fps"] == 0.5
        assert h["parking_lot"]["status"] == "degraded" and h["parking_lot"]["detail"]["last_error"] == "connection refused"
        assert h["pedestrian"]["status"] == "down"
        assert h["intersection"] == {"status": "unknown", "detail": {"reason": "not watched by the running citypatrol run"}}
        old = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        write_status(path, LiveStatus(state="running", pid=1, started_at=old, updated_at=old))
        time.sleep(2.1)
        assert health()["london"]["detail"]["reason"] == "the live runner is not reporting"
    finally:
        server.stop()
        api.store.close()


def test_a_fresh_frame_comes_from_the_cameras_source_or_a_clear_reason(tmp_path):
    """The zone editor's picture: taken from the camera's source now (a camera with no case has one too);
    a camera that is off answers 503 saying why, without its password, within the timeout."""
    import cv2
    import numpy as np

    from citypatrol.pipeline.config.models import Camera
    from tests.fixtures_api import api_config, start_api

    base = api_config()
    dead = Camera(id="gate", name="东门", source="rtsp://admin:gate-secret-pw@127.0.0.1:9/live")
    api, server = start_api(f"sqlite:///{tmp_path / 'cases.db'}", (tmp_path, {}), seed=False,
                            config=base.model_copy(update={"cameras": [*base.cameras, dead]}))
    try:
        analyst = api.client("analyst")
        r = analyst.get("/api/v1/cameras/parking_lot/frame")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
        picture = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (480, 640, 3) and picture.std() > 10  # the car park, not a grey box
        assert analyst.get("/api/v1/cameras/parking_lot/snapshot").status_code == 404  # no evidence yet: only /frame has a picture
        started = time.monotonic()
        off = analyst.get("/api/v1/cameras/gate/frame")
        assert off.status_code == 503 and time.monotonic() - started < 15
        assert "gate gives no picture" in off.json()["detail"] and "gate-secret-pw" not in off.text
        assert analyst.get("/api/v1/cameras/nowhere/frame").status_code == 404
        assert api.client().get("/api/v1/cameras/parking_lot/frame").status_code == 401
    finally:
        server.stop()
        api.store.close()


def test_approve_this_sign_registers_it_and_rejects_the_case_as_compliant(api_server):
    reviewer, csrf = api_server.login("reviewer")
    h = {"X-CSRF-Token": csrf}
    url = "/api/v1/cases/c-london-poster/approve-sign"
    assert reviewer.post(url, json={"permit": "SZ-2026-0042"}, headers=h).status_code == 422  # the last day is required
    assert reviewer.post(url, json={"permit": "a\nb", "valid_until": "2027-01-31"}, headers=h).status_code == 422
    parking = reviewer.post("/api/v1/cases/c-parking-1/approve-sign", json={"permit": "P", "valid_until": "2027-01-31"}, headers=h)
    assert parking.status_code == 422 and "not a billboard" in parking.json()["detail"]
    analyst, acsrf = api_server.login("analyst")
    assert analyst.post(url, json={"permit": "P", "valid_until": "2027-01-31"}, headers={"X-CSRF-Token": acsrf}).status_code == 403

    done = reviewer.post(url, json={"permit": "SZ-2026-0042", "valid_until": "2027-01-31", "note": "rail ad"}, headers=h)
    assert done.status_code == 200, done.text
    last = done.json()["history"][-1]
    assert done.json()["status"] == "rejected" and last["actor"] == "user:reviewer"
    assert last["reason"].startswith("合规：已审批广告") and "permit SZ-2026-0042 valid until 2027-01-31; rail ad" in last["reason"]

    zones = reviewer.get("/api/v1/cameras/london/zones").json()
    assert zones["version"] == 1 and [z["id"] for z in zones["zones"]] == ["hoarding", "approved-c-london-poster"]
    entry = zones["zones"][1]
    assert entry["kind"] == "approved_ad" and entry["permit"] == "SZ-2026-0042" and entry["valid_until"] == "2027-01-31"
    xs = [p[0] for p in entry["polygon"]]
    assert (min(xs), max(xs)) == (0.89, 1.0) and len(entry["look"]) == 1368  # the case's box; a 32×32 look
    again = reviewer.post(url, json={"permit": "SZ-2026-0042", "valid_until": "2027-01-31"}, headers=h)
    assert again.status_code == 409  # rejected already: nothing added twice
    assert reviewer.get("/api/v1/cameras/london/zones").json()["version"] == 1
