"""The one case writer: a case change becomes store rows and evidence files, the same way in batch,
live and the casekeeper.

`persist` writes the change in one transaction: the case and its sighting, the audit row, and with
a review policy the decision (auto-submit or hold) and its outbox message. `evidence` writes the
annotated frame and crop of an opened or reopened case, and the clip of an opened one, then their
rows. Every write is idempotent (case ids, event ids, audit rows, evidence keyed by case and path),
so a caller may retry a call that failed half-way.

Errors: database errors are raised (the caller decides: the recorder retries while the database is
unreachable, the casekeeper waits and then sets the message aside). A picture that cannot be
written is logged and counted and costs only that case's evidence; a clip that cannot be written
costs only the clip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from citypatrol.annotate.evidence import (
    EvidenceFile,
    write_case_images,
    write_clip_from_file,
    write_clip_from_frames,
    write_evidence_bytes,
)
from citypatrol.models.plates import read_plate
from citypatrol.models.text import RapidTextReader, TextReader, TextReaderError
from citypatrol.pipeline.cases.builder import CaseChange, ChangeKind
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.config.models import Camera, Category, Config
from citypatrol.pipeline.sinks.second_stage import Check, check_score
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.types import Case, Event, PlateRead

log = logging.getLogger("citypatrol.cases")

_KIND = {"image": "frame", "crop": "crop", "clip": "clip"}


@dataclass(frozen=True)
class ClipSource:
    """Where a case's clip comes from: a recorded file (re-decoded), recent live frames, or an MP4
    a worker already encoded."""

    file: Path | None = None
    frames: Sequence[np.ndarray] = ()
    fps: float = 1.0
    mp4: bytes | None = None


class CaseWriter:
    def __init__(self, store: Store, config: Config, cameras: Sequence[Camera] = (), *, evidence_dir: Path | None = None,
                 policy: ReviewPolicy | None = None, check: Check | None = None, plate_reader: TextReader | None = None) -> None:
        """`plate_reader`: the OCR for parking cases' plates (default: RapidOCR, built when a plate is first read)."""
        self.store = store
        self.config = config
        self.cameras = {c.id: c for c in cameras}
        self.evidence_dir = Path(evidence_dir if evidence_dir is not None else config.storage.evidence_dir)
        self.policy = policy
        self.check = check  # the second-stage check on the case's frame → the policy's check_score
        self.tz = ZoneInfo(config.site.timezone)
        self.opened = 0
        self.evidence_errors = 0
        self.case_ids: set[str] = set()  # every case this writer wrote a change of
        self.plate_reader = plate_reader

    def persist(self, change: CaseChange, image: np.ndarray | None = None) -> bool:
        """One change (`image`: the case's frame, for the second-stage check); True if the store did
        not have it yet. Raises on database errors."""
        case = change.case
        cam = self.cameras.get(case.camera_id)
        codes, location = self.config.codes[case.category], cam.location if cam else None
        opening = change.kind in (ChangeKind.opened, ChangeKind.reopened)
        if opening and image is not None and self._reads_plate(case, cam):
            case = replace(case, plate=self.read_plate(image, case))
            change = replace(change, case=case)
        score = check_score(self.check, case, image) if opening and self.policy is not None else None
        if self.policy is not None and change.kind is ChangeKind.opened:
            # the policy's decision (and its outbox message) go in with the new case, one transaction
            decided, message, _ = self.policy.apply(case, at=case.opened_at, dwell_s=_dwell(change.event), check_score=score)
            new = self.store.open_case(decided, change.event, codes=codes, location=location, outbox=message)
        else:
            new = self.store.apply_change(change, codes=codes, location=location)
        self.case_ids.add(case.case_id)
        if new and change.kind is ChangeKind.opened:
            self.opened += 1
        if self.policy is not None and change.kind is ChangeKind.reopened:
            self._decide_reopened(change, score)
        return new

    def _reads_plate(self, case: Case, cam: Camera | None) -> bool:
        if case.category is not Category.illegal_parking or case.plate is not None:
            return False
        return (self.config.rules_for(cam) if cam else self.config.rules).illegal_parking.read_plates

    def read_plate(self, image: np.ndarray, case: Case) -> PlateRead:
        """The plate of the case's vehicle in its evidence frame; an OCR that cannot be built or fails
        leaves the plate unread with the reason and never holds up the case."""
        if self.plate_reader is None:
            try:
                self.plate_reader = RapidTextReader()
            except TextReaderError as exc:
                log.error("case %s: plate not read: %s", case.case_id, exc)
                return PlateRead.unread(f"no OCR: {exc}")
        plate = read_plate(self.plate_reader, image, case.box)
        log.info("case %s: plate %s", case.case_id, f"read ({plate.score:.2f})" if plate.read else plate.describe())  # not the text: logs travel further than the store
        return plate

    def _decide_reopened(self, change: CaseChange, check_score: float | None) -> None:
        """A case the builder reopened is decided again (auto-submit or hold), like a new one."""
        stored = self.store.get_case(change.case.case_id).case
        decided, message, decision = self.policy.apply(stored, at=change.case.last_seen_at, dwell_s=_dwell(change.event),
                                                       check_score=check_score)
        if decided is stored:
            return  # the stored status (e.g. dispatched meanwhile) is not one the policy decides from
        try:
            self.store.set_status(stored.case_id, decision.status, at=decided.history[-1].at, actor=decided.history[-1].actor,
                                  reason=decision.reason, outbox=message)  # fmt: skip
        except InvalidTransition as exc:  # moved on between the read and the write
            log.warning("%s; keeping the stored status", exc)

    def evidence(self, change: CaseChange, image: np.ndarray | None, clip: ClipSource | None = None) -> None:
        """The annotated frame and crop of an opened or reopened case, and the clip of an opened one.
        A missing image or an unwritable picture is logged and counted; database errors are raised."""
        case = change.case
        if image is None:
            self.evidence_errors += 1
            log.error("case %s: no readable evidence frame came with its event", case.case_id)
            return
        folder = self.evidence_dir / case.case_id
        try:
            files = list(self._images(change, image, folder))
        except (OSError, ValueError, cv2.error) as exc:
            self.evidence_errors += 1
            log.error("case %s: evidence could not be written: %s", case.case_id, exc)
            return
        if clip is not None and change.kind is ChangeKind.opened and self.config.storage.clip_seconds > 0:
            try:
                written = self._clip(case, clip, folder / "clip.mp4")
            except Exception as exc:  # any decoder or encoder failure: the frame and crop still go in
                self.evidence_errors += 1
                log.error("case %s: evidence clip not written: %s", case.case_id, exc)
            else:
                files += [written] if written is not None else []
        for f in files:
            rel = f.path.relative_to(self.evidence_dir).as_posix()
            self.store.add_evidence(case.case_id, _KIND[f.kind], rel, f.sha256, f.bytes)

    def _images(self, change: CaseChange, image: np.ndarray, folder: Path) -> Sequence[EvidenceFile]:
        case = change.case
        cam = self.cameras.get(case.camera_id)
        zones = [z for z in (cam.zones if cam else []) if z.id == case.zone_id]
        stem = "frame" if change.kind is ChangeKind.opened else f"reopened_{int(case.last_seen_pts)}"
        return write_case_images(
            folder, stem, image, case.box, case.category, case.score,
            camera_name=(cam.name or cam.id) if cam else case.camera_id,
            local_time=case.last_seen_at.astimezone(self.tz),
            polygons=[z.polygon for z in zones], zone_names=[z.name or z.id for z in zones], detail=case.detail,
            title=code.name if (code := self.config.codes.get(case.category)) else "",
        )  # fmt: skip

    def _clip(self, case: Case, clip: ClipSource, out: Path) -> EvidenceFile | None:
        if clip.mp4 is not None:
            if clip.mp4[4:8] != b"ftyp":
                raise ValueError("the evidence clip from the worker is not an MP4 file")
            return write_evidence_bytes(clip.mp4, out, "clip")
        if clip.file is not None:
            seconds = self.config.storage.clip_seconds
            start = max(0.0, case.opened_pts - seconds * 2 / 3)
            return write_clip_from_file(clip.file, start, start + seconds, out)
        if len(clip.frames) >= 2:
            return write_clip_from_frames(list(clip.frames), clip.fps, out)
        return None


def _dwell(event: Event | None) -> float:
    """How long the problem had persisted when its rule fired (stream seconds)."""
    return max(0.0, event.pts - event.since_pts) if event is not None else 0.0
