"""Pure pieces of dispatch, as tables: review policy, backoff, signing, message fields, SLA deadlines."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from citypatrol.pipeline.config.models import Category, DispatchConfig, Location, ReviewConfig, ReviewOverride, ReviewThresholds, SlaConfig
from citypatrol.pipeline.config.loading import ConfigError, parse_config
from citypatrol.streams.backoff import Backoff
from citypatrol.pipeline.dispatch.message import case_fields, evidence_items, idempotency_key, map_fields, select_evidence
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.dispatch.signing import SignatureError, signature, signed_headers, verify
from citypatrol.pipeline.dispatch.sla import add_working_hours, due_at
from citypatrol.pipeline.store.records import CaseRecord, CategoryCode, EvidenceKind, EvidenceRecord
from citypatrol.pipeline.types import CaseStatus, PlateRead
from tests.fixtures_dispatch import T0, make_case

SH = ZoneInfo("Asia/Shanghai")
C = Category


# -- review policy ------------------------------------------------------------------------------------

REVIEW = ReviewConfig(
    default=ReviewThresholds(min_score=0.85),
    overrides=[
        ReviewOverride(category=C.billboard, auto_submit=False),
        ReviewOverride(camera="gate", min_score=0.6, min_dwell_s=300),
        ReviewOverride(camera="gate", category=C.street_vending, min_check_score=0.8),
    ],
)


@pytest.mark.parametrize(
    ("camera", "category", "score", "dwell", "check", "status", "why"),
    [
        ("x", C.illegal_parking, 0.90, 0, None, CaseStatus.approved, "0.90 ≥ 0.85"),
        ("x", C.illegal_parking, 0.80, 999, None, CaseStatus.pending_review, "score 0.80 < 0.85"),  # conservative default
        ("x", C.billboard, 0.99, 999, None, CaseStatus.pending_review, "auto-submission is off"),
        ("gate", C.illegal_parking, 0.65, 400, None, CaseStatus.approved, "0.65 ≥ 0.60"),
        ("gate", C.illegal_parking, 0.65, 100, None, CaseStatus.pending_review, "dwell 100 s < 300 s"),
        ("gate", C.street_vending, 0.95, 400, None, CaseStatus.pending_review, "no second-stage check"),
        ("gate", C.street_vending, 0.95, 400, 0.7, CaseStatus.pending_review, "check 0.70 < 0.80"),
        ("gate", C.street_vending, 0.95, 400, 0.9, CaseStatus.approved, "check 0.90 ≥ 0.80"),
        ("gate", C.billboard, 0.99, 999, None, CaseStatus.pending_review, "auto-submission is off"),  # later entries keep it off
    ],
)
def test_review_policy_table(camera, category, score, dwell, check, status, why):
    case = make_case("c", camera=camera, category=category, score=score)
    d = ReviewPolicy(REVIEW).decide(case, dwell_s=dwell, check_score=check)
    assert d.status is status and why in d.reason


def test_policy_apply_moves_the_case_and_names_its_message():
    policy = ReviewPolicy(ReviewConfig())
    moved, message, _ = policy.apply(make_case("c9", score=0.9), at=T0, dwell_s=10)
    assert moved.status is CaseStatus.approved and moved.history[-1].actor == "review_policy"
    assert message is not None and (message.kind, message.idempotency_key) == ("case.submit", "c9")
    held, none, _ = policy.apply(make_case("c8", score=0.5), at=T0, dwell_s=10)
    assert held.status is CaseStatus.pending_review and none is None
    again, nothing, _ = policy.apply(moved, at=T0, dwell_s=10)  # decided already: unchanged
    assert again is moved and nothing is None


def test_default_config_holds_what_is_not_near_certain():
    assert ReviewConfig().default.min_score >= 0.85 and ReviewConfig().default.min_check_score is None


# -- config -----------------------------------------------------------------------------------------------


def test_dispatch_config_errors_name_the_key():
    with pytest.raises(ConfigError) as exc:
        parse_config("dispatch: {enabled: true, adapter: http, url: ''}\n")
    assert "adapter http needs url" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown case field"):
        parse_config("dispatch: {field_map: {eventCode: code_of_case}}\n")
    with pytest.raises(ConfigError, match="lease_s"):
        parse_config("dispatch: {timeout_s: 30, lease_s: 10}\n")
    with pytest.raises(ConfigError, match="working_hours"):
        parse_config("sla: {working_hours: '18:00-09:00'}\n")
    assert "s3cr3t-value" not in repr(DispatchConfig(secret="s3cr3t-value", mqtt_password="s3cr3t-value"))


# -- backoff and signing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "u", "expected"), [(1, 0.5, 10), (2, 0.5, 20), (4, 0.5, 80), (20, 0.5, 1800), (1, 0.0, 7.5), (1, 1.0, 12.5)])
def test_backoff_doubles_caps_and_jitters(attempt, u, expected):
    assert Backoff(10, 1800, 0.25, rand=lambda: u).delay(attempt) == pytest.approx(expected)


def test_signature_checks():
    body, ts = '{"case_id":"c1","note":"违停"}'.encode(), 1_750_000_000
    headers = signed_headers("k", ts, body)
    assert verify("k", headers, body, now=ts + 10, window_s=300) == ts
    assert verify("k", {k.lower(): v for k, v in headers.items()}, body, now=ts, window_s=300) == ts
    for key, hdrs, b, now, match in [
        ("other", headers, body, ts, "does not match"),
        ("k", headers, body + b" ", ts, "does not match"),
        ("k", {**headers, "X-Citypatrol-Timestamp": str(ts + 1)}, body, ts, "does not match"),  # re-dated
        ("k", headers, body, ts + 301, "outside"),
        ("k", {}, body, ts, "missing"),
        ("", headers, body, ts, "no key"),
    ]:
        with pytest.raises(SignatureError, match=match):
            verify(key, hdrs, b, now=now, window_s=300)
    assert signature("k", ts, body).startswith("sha256=") and len(signature("k", ts, body)) == 7 + 64


# -- message fields ------------------------------------------------------------------------------------------


def _record(evidence=(), plate: PlateRead | None = None) -> CaseRecord:
    return CaseRecord(replace(make_case("c1", score=0.876), plate=plate), CategoryCode("0505", "机动车乱停放", "街面秩序"),
                      Location(lon=114.05, lat=22.54, address="深南大道 1 号", district="福田区", grid_code="440304-001"),
                      tuple(evidence), 1, T0, T0)


def _ev(kind: str, path: str, size: int = 10) -> EvidenceRecord:
    return EvidenceRecord("c1", EvidenceKind(kind), path, "a" * 64, size, T0)


def test_fields_and_mapping():
    f = case_fields(_record(), kind="case.submit", camera_name="东门", tz=SH, sent_at=T0, evidence=[], note="n")
    assert f["opened_at"] == "2025-05-06T10:00:00+08:00" and f["category_code"] == "0505" and f["grid_code"] == "440304-001"
    assert f["description"] == "机动车乱停放: illegal_parking (深南大道 1 号)" and f["score"] == 0.876
    assert map_fields(f, {}) == f
    assert map_fields(f, {"eventCode": "category_code", "x": "lon", "findTime": "opened_at"}) == {
        "eventCode": "0505", "x": 114.05, "findTime": "2025-05-06T10:00:00+08:00"}
    assert (f["plate"], f["plate_status"]) == ("", "not_read")


def test_plate_fields_say_read_unread_or_not_read():
    read = case_fields(_record(plate=PlateRead("粤B12345", 0.9612, "read")), kind="case.submit", camera_name="东门", tz=SH,
                       sent_at=T0, evidence=[])
    assert (read["plate"], read["plate_score"], read["plate_status"], read["plate_note"]) == ("粤B12345", 0.961, "read", "")
    assert read["description"] == "机动车乱停放: illegal_parking, plate 粤B12345 (深南大道 1 号)"
    assert map_fields(read, {"carNo": "plate"}) == {"carNo": "粤B12345"}
    unread = case_fields(_record(plate=PlateRead.unread("no text on the vehicle reads as a plate")), kind="case.submit",
                         camera_name="东门", tz=SH, sent_at=T0, evidence=[])
    assert (unread["plate"], unread["plate_score"], unread["plate_status"]) == ("", None, "unread")
    assert unread["plate_note"] == "no text on the vehicle reads as a plate" and "plate" not in unread["description"]


def test_evidence_urls_inline_and_defaults():
    rec = _record([_ev("frame", "c1/frame.jpg"), _ev("crop", "c1/frame_crop.jpg"), _ev("clip", "c1/clip.mp4", 10**6),
                   _ev("frame", "c1/reopened_9.jpg"), _ev("after", "c1/verify-1/after.jpg")])
    chosen = select_evidence(rec, "case.submit")
    assert [e.path for e in chosen] == ["c1/reopened_9.jpg", "c1/frame_crop.jpg", "c1/clip.mp4"]  # newest frame
    assert [e.path for e in select_evidence(rec, "case.reopen", ["c1/verify-1/after.jpg", "c1/frame.jpg"])] == [
        "c1/verify-1/after.jpg", "c1/frame.jpg"]
    urls = evidence_items(chosen, mode="url", base_url="https://cp.example/e/", read=lambda p: b"x", max_bytes=100)
    assert [i["url"] for i in urls] == ["https://cp.example/e/c1/reopened_9.jpg", "https://cp.example/e/c1/frame_crop.jpg",
                                        "https://cp.example/e/c1/clip.mp4"]
    inline = evidence_items(chosen, mode="inline", base_url="", read=lambda p: b"\xff\xd8jpeg", max_bytes=100)
    assert base64.b64decode(inline[0]["data"]) == b"\xff\xd8jpeg" and inline[0]["media_type"] == "image/jpeg"
    assert "url" in inline[2] and "data" not in inline[2], "clips always go as URLs"
    assert evidence_items(chosen, mode="none", base_url="", read=lambda p: None, max_bytes=1) == []
    assert idempotency_key("c1", "case.submit") == "c1" and idempotency_key("c1", "case.reopen", 2) == "c1:reopen:2"


# -- SLA ------------------------------------------------------------------------------------------------------

SLA = SlaConfig(holidays=[date(2025, 10, 1)])


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (_local(2025, 5, 6, 10, 0), 4, _local(2025, 5, 6, 14, 0)),  # Tuesday, inside the day
        (_local(2025, 5, 9, 16, 30), 4, _local(2025, 5, 12, 11, 30)),  # Friday afternoon → Monday morning
        (_local(2025, 5, 6, 20, 0), 2, _local(2025, 5, 7, 11, 0)),  # after hours: the clock starts next morning
        (_local(2025, 5, 10, 12, 0), 1, _local(2025, 5, 12, 10, 0)),  # Saturday
        (_local(2025, 9, 30, 17, 0), 3, _local(2025, 10, 2, 11, 0)),  # over a holiday
        (_local(2025, 5, 6, 9, 0), 9, _local(2025, 5, 6, 18, 0)),  # exactly one working day
        (_local(2025, 5, 6, 9, 0), 24, _local(2025, 5, 8, 15, 0)),
    ],
)
def test_working_hours_table(start, hours, due):
    assert add_working_hours(start, hours, SLA, SH) == due


def test_due_per_category_and_off():
    start = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)  # 10:00 local
    assert due_at(start, C.exposed_garbage, SLA, SH) == _local(2025, 5, 6, 14, 0)
    assert due_at(start, C.illegal_parking, SlaConfig(deadline_hours={C.exposed_garbage: 4}), SH) is None
    assert due_at(start, C.exposed_garbage, SlaConfig(enabled=False), SH) is None
    assert due_at(start, C.exposed_garbage, SLA, SH) - start == timedelta(hours=4)
