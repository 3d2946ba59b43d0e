"""What a message to the dispatch system says: a case's fields, mapped to the platform's names.

Pure: the dispatcher hands in the case record, the camera's name, the site's time zone and a
reader for evidence files; this module returns the JSON body. The same case always gives the
same fields (the body may gain evidence once it is written), and the idempotency key — the case id
for a case's first submission — travels as a header, so a resend is recognisable.

Fields (`config.DISPATCH_FIELDS`): case_id, kind (case.submit | case.reopen | case.verified),
status, category (citypatrol's id), category_code / category_name / category_major (the city's
code scheme, snapshotted when the case opened), camera_id, camera_name, lon, lat, address,
district, grid_code, opened_at, last_seen_at, sent_at (ISO 8601 with the site's UTC offset),
description (one line for the dispatcher), score, events, box (normalised x1,y1,x2,y2), zone_id,
plate / plate_score / plate_status / plate_note (a parking case's number plate: read, unread with
the reason, or not_read), evidence (list of {kind, url | data, media_type, sha256}), note (free text: why it was reopened,
the verification result). With `dispatch.field_map` empty the body uses these names; otherwise it
holds exactly the mapped fields under the platform's names.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from citypatrol.pipeline.store.records import CaseRecord, EvidenceRecord
from citypatrol.pipeline.types import plate_fields

SUBMIT, REOPEN, VERIFIED = "case.submit", "case.reopen", "case.verified"
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4"}
#: evidence sent with a message when its payload names none
DEFAULT_EVIDENCE = {SUBMIT: ("frame", "crop", "clip"), REOPEN: ("after", "frame"), VERIFIED: ("before", "after")}
INLINE_KINDS = frozenset({"frame", "crop", "before", "after"})  # images; clips always go as URLs

Reader = Callable[[str], bytes | None]  # evidence path (relative, '/'-separated) -> bytes, None if missing


def idempotency_key(case_id: str, kind: str, n: int = 0) -> str:
    """The case id for its first submission; 'case:kind:n' for every later message about it."""
    if kind == SUBMIT and n == 0:
        return case_id
    return f"{case_id}:{kind.removeprefix('case.')}:{n}"


def description(record: CaseRecord, camera_name: str) -> str:
    c = record.case
    name = record.codes.name or c.category.value
    where = record.location.address or camera_name or c.camera_id
    plate = f", plate {c.plate.text}" if c.plate is not None and c.plate.read else ""
    return f"{name}: {c.detail or c.category.value}{plate} ({where})"


def select_evidence(record: CaseRecord, kind: str, paths: Sequence[str] | None = None) -> list[EvidenceRecord]:
    """The evidence to send: the paths the message names, else the newest file of each default kind."""
    if paths is not None:  # in the message's order
        by_path = {e.path: e for e in record.evidence}
        return [by_path[p] for p in paths if p in by_path]
    newest: dict[str, EvidenceRecord] = {}
    for e in record.evidence:  # stored oldest first: the last of a kind wins
        newest[e.kind.value] = e
    return [newest[k] for k in DEFAULT_EVIDENCE.get(kind, ()) if k in newest]


def evidence_items(items: Sequence[EvidenceRecord], *, mode: str, base_url: str, read: Reader, max_bytes: int) -> list[dict[str, Any]]:
    """Evidence as URLs (`base_url` + path) or inline base64 images (too big or unreadable → URL)."""
    if mode == "none":
        return []
    out: list[dict[str, Any]] = []
    for e in items:
        media = MEDIA_TYPES.get(PurePosixPath(e.path).suffix.lower(), "application/octet-stream")
        item: dict[str, Any] = {"kind": e.kind.value, "media_type": media, "sha256": e.sha256}
        data = read(e.path) if mode == "inline" and e.kind.value in INLINE_KINDS and e.size <= max_bytes else None
        if data is not None:
            item["data"] = base64.b64encode(data).decode("ascii")
        else:
            item["url"] = base_url + e.path if base_url else e.path
        out.append(item)
    return out


def case_fields(record: CaseRecord, *, kind: str, camera_name: str, tz: ZoneInfo, sent_at: datetime,
                evidence: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """citypatrol's own field names and values for a message about this case."""
    c, loc, codes = record.case, record.location, record.codes
    return {
        "case_id": c.case_id,
        "kind": kind,
        "status": c.status.value,
        "category": c.category.value,
        "category_code": codes.code,
        "category_name": codes.name,
        "category_major": codes.major,
        "camera_id": c.camera_id,
        "camera_name": camera_name,
        "lon": loc.lon,
        "lat": loc.lat,
        "address": loc.address,
        "district": loc.district,
        "grid_code": loc.grid_code,
        "opened_at": _local(c.opened_at, tz),
        "last_seen_at": _local(c.last_seen_at, tz),
        "sent_at": _local(sent_at, tz),
        "description": description(record, camera_name),
        "score": round(c.score, 3),
        "events": c.events,
        "box": [round(v, 4) for v in c.box],
        "zone_id": c.zone_id,
        **plate_fields(c.plate),
        "evidence": evidence,
        "note": note,
    }


def map_fields(fields: Mapping[str, Any], field_map: Mapping[str, str]) -> dict[str, Any]:
    """The body under the platform's names: {outgoing: fields[ours]}; an empty map keeps ours."""
    if not field_map:
        return dict(fields)
    return {out: fields.get(ours) for out, ours in field_map.items()}


def encode(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Chinese kept as is); these exact bytes are what gets signed."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=False).encode("utf-8")


def _local(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).isoformat(timespec="seconds")
