"""Status callbacks from the dispatch system (处置反馈): verify, then move the case.

The dispatch system POSTs a signed JSON body (same scheme as citypatrol's own messages, see
`dispatch/signing.py`, keyed by `dispatch.callback_secret`, or `dispatch.secret` when that is empty):

    {"callback_id": "unique per callback", "case_id": "…", "status": "dispatched|handled|rejected|overdue",
     "at": "2025-05-01T10:00:00+08:00" (optional, kept in the audit reason), "note": "…" (optional)}

Checks, in order, each refusal logged with its reason (never the key or the signature):
signature (401), timestamp within ±`dispatch.callback_window_s` (401), body (400; unknown status
or text with a NUL character, 422), case known (404), callback id not seen before (409 replay), and
the status change allowed by the state machine (409). The receipt and the change are one transaction, so a replay racing the
original is refused by the database.

What each status does (`plan`, pure):
- dispatched (派遣): approved / reopened / dead_letter → dispatched (starts the SLA clock);
  a case already dispatched or further along is left as it is;
- handled (处置完成): dispatched → handled (approved → dispatched → handled when the callback beat
  our own delivery record); citypatrol's verifier then re-checks it on camera;
- rejected (不予立案): approved / dispatched / dead_letter → rejected;
- overdue (超期): marks the case overdue (no status change).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from citypatrol.pipeline.dispatch import sla

from citypatrol.pipeline.store import outbox as ob
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.dispatch.signing import SignatureError, verify
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.types import CaseStatus

log = logging.getLogger("citypatrol.callbacks")

S = CaseStatus
ACTOR = "dispatch-callback"
REPORTED = ("dispatched", "handled", "rejected", "overdue")
MAX_BODY = 64 * 1024
# statuses at or past each reported one: the callback is news we already have
_AT_OR_PAST = {
    "dispatched": {S.dispatched, S.handled, S.verifying, S.closed},
    "handled": {S.handled, S.verifying, S.closed},
    "rejected": {S.rejected},
}


@dataclass(frozen=True, slots=True)
class StatusReport:
    callback_id: str
    case_id: str
    status: str
    at: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """The HTTP answer: status code and JSON body."""

    code: int
    body: dict[str, Any]


class BadCallback(ValueError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def parse(body: bytes) -> StatusReport:
    """The callback's fields; BadCallback(400 or 422) when they are missing or malformed."""
    if len(body) > MAX_BODY:
        raise BadCallback(413, f"body larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadCallback(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise BadCallback(400, "body must be a JSON object")
    for key in ("callback_id", "case_id", "status", "at", "note"):
        _check_storable(key, data.get(key))
    fields = {}
    for key in ("callback_id", "case_id", "status"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > 128:
            raise BadCallback(400, f"{key} must be a non-empty string of at most 128 characters")
        fields[key] = value.strip()
    if fields["status"] not in REPORTED:
        raise BadCallback(422, f"status must be one of {', '.join(REPORTED)}, got {fields['status']!r}")
    at, note = data.get("at", ""), data.get("note", "")
    return StatusReport(**fields, at=str(at)[:40] if at else "", note=str(note)[:500] if note else "")


def _check_storable(key: str, value: object) -> None:
    """Refuse (422) text no database can keep as sent: PostgreSQL refuses a NUL character (a 500 there)
    while SQLite stores it, and a lone surrogate (JSON "\\ud800") cannot be encoded at all."""
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise BadCallback(422, f"{key} contains a NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadCallback(422, f"{key} is not valid Unicode text (a lone surrogate)") from None


def plan(current: CaseStatus, reported: str) -> ob.CallbackPlan:
    """What a reported status does to a case now in `current` (see the module docstring)."""
    if reported == "overdue":
        return ob.CallbackPlan(overdue=True)
    if current in _AT_OR_PAST[reported]:
        return ob.CallbackPlan()
    if reported == "dispatched" and current in (S.approved, S.reopened, S.dead_letter):
        return ob.CallbackPlan(to=(S.dispatched,))
    if reported == "handled":
        if current is S.dispatched:
            return ob.CallbackPlan(to=(S.handled,))
        if current in (S.approved, S.reopened, S.dead_letter):
            return ob.CallbackPlan(to=(S.dispatched, S.handled))
    if reported == "rejected" and current in (S.approved, S.dispatched, S.dead_letter):
        return ob.CallbackPlan(to=(S.rejected,))
    return ob.CallbackPlan(refuse=f"case is {current.value}; it cannot become {reported}")


def handle(store: Store, config: Config, headers: Mapping[str, str], body: bytes, *, now: datetime, remote: str = "") -> Reply:
    """Verify and apply one callback; every refusal is logged and answered with its reason."""
    d = config.dispatch
    key = d.callback_secret or d.secret
    if not key:
        return _refuse(503, "callbacks are not configured (dispatch.callback_secret / dispatch.secret is empty)", remote)
    try:
        verify(key, headers, body, now=now.timestamp(), window_s=d.callback_window_s)
    except SignatureError as exc:
        return _refuse(401, str(exc), remote)
    try:
        report = parse(body)
    except BadCallback as exc:
        return _refuse(exc.code, str(exc), remote)
    tz = ZoneInfo(config.site.timezone)
    reason = f"dispatch system reported {report.status}" + (f" at {report.at}" if report.at else "") + (f": {report.note}" if report.note else "")
    result = ob.record_callback(
        store, callback_id=report.callback_id, case_id=report.case_id, reported=report.status, at=now, actor=ACTOR,
        reason=reason, plan=lambda current: plan(current, report.status),
        due=lambda category: sla.due_at(now, category, config.sla, tz),
    )
    code = {"applied": 200, "unchanged": 200, "unknown_case": 404, "replay": 409, "refused": 409}[result.outcome]
    status = result.status.value if result.status else None
    if code >= 400:
        return _refuse(code, result.reason, remote, report, status)
    log.info("callback %s: case %s %s → %s (%s)", report.callback_id, report.case_id, report.status, status, result.outcome)
    return Reply(code, {"result": result.outcome, "case_id": report.case_id, "status": status})


def _refuse(code: int, reason: str, remote: str, report: StatusReport | None = None, status: str | None = None) -> Reply:
    who = f" from {remote}" if remote else ""
    what = f" (callback {report.callback_id!r}, case {report.case_id!r}, status {report.status!r})" if report else ""
    log.warning("dispatch callback refused%s%s: HTTP %d %s", who, what, code, reason)
    body: dict[str, Any] = {"result": "refused", "reason": reason}
    if report is not None:
        body.update(case_id=report.case_id, status=status)
    return Reply(code, body)
