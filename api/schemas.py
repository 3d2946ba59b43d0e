"""Pydantic models of the REST API: what goes in and what comes out.

Strings from requests refuse NUL characters (PostgreSQL cannot store them) and are bounded;
times must be within 1970..2200 so arithmetic on them cannot overflow.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from citypatrol.pipeline.config.models import NAME_PATTERN, Zone
from citypatrol.pipeline.store.users import Role
from citypatrol.pipeline.types import CaseStatus


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _sane_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not (1970 <= value.year <= 2200):
        raise ValueError("time must be between 1970 and 2200")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Time = Annotated[datetime, AfterValidator(_sane_time)]
Short = Annotated[str, Field(max_length=100), AfterValidator(_no_nul)]  # a filter value (camera id, district)
CASE_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
CAMERA_ID = r"^[A-Za-z0-9_.-]{1,64}$"
ZONE_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- auth ---------------------------------------------------------------------------------------


class LoginIn(In):
    username: Annotated[Text, Field(min_length=1, max_length=64)]
    password: Annotated[Text, Field(min_length=1, max_length=1024)]


class MeOut(Out):
    username: str
    role: Role
    via: Literal["session", "token"]
    expires_at: datetime | None = None
    csrf_token: str | None = Field(None, description="Only in the sign-in answer: send it as X-CSRF-Token on changes.")


class UserIn(In):
    username: Annotated[Text, Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]{2,64}$")]
    password: Annotated[Text, Field(min_length=10, max_length=1024)]
    role: Role


class UserPatch(In):
    active: bool


class UserOut(Out):
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime


class TokenIn(In):
    name: Annotated[Text, Field(min_length=1, max_length=100)]
    role: Role
    expires_days: float | None = Field(None, gt=0, le=3650, description="Days until the token stops working; none = never.")


class TokenOut(Out):
    id: int
    name: str
    prefix: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="The secret, shown this once: use it as 'Authorization: Bearer <token>'.")


# -- cases --------------------------------------------------------------------------------------


class EvidenceOut(Out):
    id: int
    kind: str
    url: str
    sha256: str
    size: int
    created_at: datetime


class LocationOut(Out):
    lon: float | None
    lat: float | None
    address: str
    district: str
    grid_code: str


class CategoryOut(Out):
    value: str
    zh: str
    en: str
    color: str
    code: str
    code_name: str
    major: str


class PlateOut(Out):
    """A parking case's number plate: `text` only when read for certain; `note` says why it is unread."""

    status: Literal["read", "unread"]
    text: str
    score: float | None
    note: str


class CaseOut(Out):
    case_id: str
    camera_id: str
    camera_name: str
    category: CategoryOut
    status: CaseStatus
    box: list[float]
    zone_id: str | None
    opened_at: datetime
    last_seen_at: datetime
    opened_pts: float
    last_seen_pts: float
    score: float
    events: int
    detail: str
    plate: PlateOut | None = None  # parking cases only; None = never read
    site: str
    location: LocationOut
    evidence: list[EvidenceOut]
    updated_at: datetime


class TransitionOut(Out):
    from_status: CaseStatus | None
    to_status: CaseStatus
    at: datetime
    actor: str
    reason: str


class AuditOut(Out):
    id: int
    at: datetime
    actor: str
    action: str
    case_id: str | None
    target: str
    detail: dict[str, Any]
    reason: str


class CaseDetailOut(CaseOut):
    model: str
    reviewed_box: list[float] | None = Field(None, description="The newest box a reviewer drew for the object, if any.")
    sightings: int
    history: list[TransitionOut]
    activity: list[AuditOut]


class CasePage(Out):
    total: int
    limit: int
    offset: int
    items: list[CaseOut]


# -- decisions ----------------------------------------------------------------------------------


class ConfirmIn(In):
    note: Annotated[Text, Field(max_length=2000)] = ""


class RejectIn(In):
    reason: Annotated[Text, Field(min_length=1, max_length=500)]


class ApproveSignIn(In):
    permit: Annotated[Text, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                                  description="The sign's permit (审批) number.")]
    valid_until: date = Field(description="The permit's last day (YYYY-MM-DD); after it the sign is a case again.")
    note: Annotated[Text, Field(max_length=500)] = ""


class ReclassifyIn(In):
    category: Annotated[str, Field(pattern=NAME_PATTERN, description="A built-in category or one configured under `categories`.")]
    reason: Annotated[Text, Field(max_length=500)] = ""


class MergeIn(In):
    into: Annotated[str, Field(pattern=CASE_ID, description="The case that stays; this one is rejected as its duplicate.")]
    reason: Annotated[Text, Field(max_length=500)] = ""


class NoteIn(In):
    text: Annotated[Text, Field(min_length=1, max_length=2000)]


class BoxIn(In):
    box: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(
        min_length=4, max_length=4, description="The object on the evidence frame: x1, y1, x2, y2 as fractions of its width and height.")]
    reason: Annotated[Text, Field(max_length=500)] = ""
    evidence_id: int | None = Field(None, ge=1, description="The evidence frame the box was drawn on.")

    @model_validator(mode="after")
    def _ordered(self) -> "BoxIn":
        x1, y1, x2, y2 = self.box
        if x2 - x1 < 0.002 or y2 - y1 < 0.002:
            raise ValueError("box must have x1 < x2 and y1 < y2 (and be more than a sliver)")
        return self


# -- cameras and zones --------------------------------------------------------------------------


class HealthOut(Out):
    status: Literal["ok", "degraded", "down", "unknown"] = "unknown"
    detail: dict[str, Any] = Field(default_factory=dict)


class CameraOut(Out):
    id: str
    name: str
    site: str
    enabled: bool | None = Field(description="From the config; null when the camera is only known from stored cases.")
    location: LocationOut
    zones: int
    open_cases: int
    last_case_at: datetime | None
    health: HealthOut
    snapshot_url: str | None


class ZoneIn(Zone):
    """A zone as in the config file (id, name, kind, polygon normalised 0..1, hours, dwell)."""

    name: Annotated[Text, Field(max_length=200)] = ""


class ZoneSetOut(Out):
    camera_id: str
    version: int = Field(description="0 = the zones of the config file (never edited here).")
    source: Literal["saved", "config", "none"]
    zones: list[Zone]
    saved_at: datetime | None
    saved_by: str | None


class ZoneSetIn(In):
    base_version: int = Field(ge=0, le=2**31 - 1, description="The version you edited; a newer saved version is a 409.")
    zones: list[ZoneIn] = Field(max_length=64)
    reason: Annotated[Text, Field(max_length=500)] = ""


class ZoneItemIn(In):
    base_version: int = Field(ge=0, le=2**31 - 1)
    zone: ZoneIn


class ZoneVersionOut(Out):
    version: int
    zones: int
    created_at: datetime
    created_by: str


# -- statistics, models, dead letters -----------------------------------------------------------


class DayCounts(Out):
    day: str
    counts: dict[str, int]


class PrecisionOut(Out):
    confirmed: int
    judged: int
    precision: float | None


class DurationOut(Out):
    count: int
    median_h: float
    p90_h: float


class StatsOut(Out):
    timezone: str
    total: int
    per_day: list[DayCounts]
    per_category: dict[str, int]
    per_status: dict[str, int]
    precision: dict[str, PrecisionOut]
    time_to_close: dict[str, DurationOut]
    time_to_decision: dict[str, DurationOut]


class DetectorOut(Out):
    name: str
    weights: str
    imgsz: int
    conf: float
    device: str


class ModelsOut(Out):
    detectors: list[DetectorOut]
    in_cases: dict[str, int] = Field(description="Model versions named on stored cases, with how many cases each.")


class DeadLetterOut(Out):
    case_id: str
    status: CaseStatus
    category: str
    camera_id: str
    messages: int
    last_error: str
    attempts: int


class RetryOut(Out):
    case_id: str
    requeued: int
    detail: str
