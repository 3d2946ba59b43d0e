"""The typed records that flow between pipeline stages: Track → Event → Case.

Pure data: no I/O, no framework types. Boxes are normalised xyxy (0..1) so they survive
resizing and compare across resolutions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from citypatrol.pipeline.config.models import Category

Box = tuple[float, float, float, float]  # normalised x1, y1, x2, y2

TEXT_CUE = "text"  # `Event.classes` of the text cue: printed text read by OCR
SCENE_CUE = "scene_change"  # of the scene-change cue: a change against the reference image
PANEL_CUE = "panel"  # of the panel cue: a picture poster on a plain advertising surface
DETECTOR_CUE = "detector"  # any other event: the detector's classes


def cue_of(classes: tuple[str, ...]) -> str:
    """Which cue made an event, from its classes; 核查 re-runs that cue."""
    if TEXT_CUE in classes:
        return TEXT_CUE
    if SCENE_CUE in classes:
        return SCENE_CUE
    if PANEL_CUE in classes:
        return PANEL_CUE
    return DETECTOR_CUE


@dataclass(frozen=True, slots=True)
class Track:
    """A stationary-aware track: one physical object seen over several analysed frames."""

    camera_id: str
    track_id: int
    class_name: str
    box: Box  # latest matched box, normalised
    score: float  # best confidence seen
    first_seen: float  # stream seconds
    last_seen: float  # stream seconds (of the last frame it was matched in)
    hits: int  # frames it was matched in
    stationary_since: float | None  # stream seconds since which it has not moved; None = moving
    anchor_box: Box  # box where it came to rest (compare with `box` to see drift)
    look: tuple[float, ...] = ()  # latest colour histogram at its resting place (see `appearance`); () = unknown

    @property
    def stationary_for(self) -> float:
        if self.stationary_since is None:
            return 0.0
        return self.last_seen - self.stationary_since


@dataclass(frozen=True, slots=True)
class Event:
    """A rule fired: a problem has persisted for at least its dwell at a place."""

    camera_id: str
    category: Category
    box: Box  # where the problem is, normalised
    zone_id: str | None
    pts: float  # stream seconds when the rule fired
    wall: datetime
    since_pts: float  # stream seconds since when the problem has persisted
    score: float
    track_ids: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()  # detector classes that made up the cue
    detail: str = ""  # one line for reviewers: "car still for 312 s in zone 东门人行道"
    model: str = ""
    look: tuple[float, ...] = ()  # what the object looks like (see `appearance`), to tell it from the next one there

    @property
    def event_id(self) -> str:
        """Idempotent id: the same sighting replayed gives the same id."""
        x1, y1, x2, y2 = self.box
        return f"{self.camera_id}:{self.category.value}:{self.since_pts:.1f}:{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f}"


class CaseStatus(StrEnum):
    detected = "detected"
    pending_review = "pending_review"
    approved = "approved"
    dispatched = "dispatched"
    handled = "handled"
    verifying = "verifying"
    closed = "closed"
    rejected = "rejected"
    expired = "expired"
    reopened = "reopened"
    dead_letter = "dead_letter"


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of a case's audit trail."""

    from_status: CaseStatus | None
    to_status: CaseStatus
    at: datetime
    actor: str  # "rule:illegal_parking", "casebuilder", "user:alice", "dispatch", …
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PlateRead:
    """The number plate of a parked vehicle: `text` is "" when unread, and `note` says why."""

    text: str
    score: float  # the recogniser's confidence in `text` (0 when unread)
    note: str  # "read", or why it is unread

    @property
    def read(self) -> bool:
        return bool(self.text)

    def describe(self) -> str:
        return f"{self.text} ({self.score:.2f})" if self.read else f"unread: {self.note}"

    @staticmethod
    def unread(note: str) -> PlateRead:
        return PlateRead("", 0.0, note)


def plate_fields(plate: PlateRead | None) -> dict[str, object]:
    """plate: the text, "" when unread or not read; plate_status: read, unread or not_read (not a
    parking case, or plate reading is off)."""
    if plate is None:
        return {"plate": "", "plate_score": None, "plate_status": "not_read", "plate_note": ""}
    return {"plate": plate.text, "plate_score": round(plate.score, 3) if plate.read else None,
            "plate_status": "read" if plate.read else "unread", "plate_note": "" if plate.read else plate.note}


@dataclass(frozen=True, slots=True)
class Case:
    """One problem at one place, however many times it was seen."""

    case_id: str
    camera_id: str
    category: Category
    status: CaseStatus
    box: Box
    zone_id: str | None
    opened_pts: float  # stream seconds of the first event
    opened_at: datetime
    last_seen_pts: float
    last_seen_at: datetime
    score: float
    events: int = 1
    site: str = ""
    detail: str = ""
    model: str = ""
    history: tuple[Transition, ...] = field(default_factory=tuple)
    cue: str = DETECTOR_CUE  # the cue whose event opened the case (`cue_of`)
    plate: PlateRead | None = None  # parking: the vehicle's plate; None = not read (other categories)
