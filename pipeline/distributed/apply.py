"""A casekeeper's writes: case changes into the store, evidence frames onto disk, and which
failures mean "wait and retry" (the database is down) versus "set this message aside" (a bug).

Like the live runner's `CaseRecorder`, but synchronous and strict: the casekeeper acknowledges a
message only after everything it caused is committed, so a write error is raised, not logged
and counted. Every write is idempotent (case ids, event ids, audit rows, evidence keyed by case
and path), so a retry after a partial failure repeats nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from sqlalchemy.exc import DBAPIError, IntegrityError

from citypatrol.annotate.evidence import EvidenceFile, write_case_images, write_evidence_bytes
from citypatrol.pipeline.cases.states import InvalidTransition
from citypatrol.pipeline.cases.builder import CaseChange, ChangeKind
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.sinks.second_stage import Check, check_score
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.records import StoreUnavailable
from citypatrol.pipeline.types import Event

log = logging.getLogger("citypatrol.casekeeper")

_KIND = {"image": "frame", "crop": "crop", "clip": "clip"}


def db_transient(exc: BaseException) -> bool:
    """True for errors that pass when the database is back (connection refused, lost, locked)."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, IntegrityError):
        return False
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or type(exc).__name__ in ("OperationalError", "InterfaceError"))


class CaseWriter:
    def __init__(self, store: Store, config: Config, cameras: Sequence[Camera] = (), check: Check | None = None) -> None:
        self.store = store
        self.check = check  # the second-stage check (second_stage.load_check) → the policy's check_score
        self.config = config
        self.cameras = {c.id: c for c in cameras}
        self.tz = ZoneInfo(config.site.timezone)
        self.policy = ReviewPolicy(config.review) if config.dispatch.enabled else None
        self.opened = 0
        self.evidence_errors = 0

    def persist(self, change: CaseChange, image: np.ndarray | None = None) -> bool:
        """One change, in one transaction (with the review decision and outbox message when dispatch
        is on; `image`, the case's frame, for the second-stage check); True if the store did not
        have it yet. Raises on database errors."""
        case = change.case
        cam = self.cameras.get(case.camera_id)
        codes, location = self.config.codes[case.category], cam.location if cam else None
        opening = change.kind in (ChangeKind.opened, ChangeKind.reopened)
        score = check_score(self.check, case, image) if opening and self.policy is not None else None
        if self.policy is not None and change.kind is ChangeKind.opened:
            decided, message, _ = self.policy.apply(case, at=case.opened_at, dwell_s=_dwell(change.event), check_score=score)
            new = self.store.open_case(decided, change.event, codes=codes, location=location, outbox=message)
        else:
            new = self.store.apply_change(change, codes=codes, location=location)
        if new and change.kind is ChangeKind.opened:
            self.opened += 1
        if self.policy is not None and change.kind is ChangeKind.reopened:
            self._decide_reopened(change, score)
        return new

    def _decide_reopened(self, change: CaseChange, check_score: float | None = None) -> None:
        stored = self.store.get_case(change.case.case_id).case
        decided, message, decision = self.policy.apply(stored, at=change.case.last_seen_at, dwell_s=_dwell(change.event),
                                                       check_score=check_score)
        if decided is stored:
            return
        try:
            self.store.set_status(stored.case_id, decision.status, at=decided.history[-1].at, actor=decided.history[-1].actor,
                                  reason=decision.reason, outbox=message)  # fmt: skip
        except InvalidTransition as exc:
            log.warning("%s; keeping the stored status", exc)

    def evidence(self, change: CaseChange, image: np.ndarray | None, clip: bytes | None = None, *, sent: bool = True) -> None:
        """The annotated frame and crop of an opened or reopened case (`image`: its frame, decoded
        by `decode_frame`), and the clip of an opened one when its worker sent one. A frame that is
        missing (`sent` false: expired in Redis) or unreadable is logged and counted; database
        errors are raised."""
        case = change.case
        if image is None:
            self.evidence_errors += 1
            if sent:
                log.error("case %s: the evidence frame is not a readable JPEG", case.case_id)
            else:
                log.warning("case %s: no evidence frame came with its event (expired in Redis?)", case.case_id)
            return
        cam = self.cameras.get(case.camera_id)
        zones = [z for z in (cam.zones if cam else []) if z.id == case.zone_id]
        evidence_dir = self.config.storage.evidence_dir
        stem = "frame" if change.kind is ChangeKind.opened else f"reopened_{int(case.last_seen_pts)}"
        try:
            files = write_case_images(
                evidence_dir / case.case_id, stem, image, case.box, case.category, case.score,
                camera_name=(cam.name or cam.id) if cam else case.camera_id,
                local_time=case.last_seen_at.astimezone(self.tz),
                polygons=[z.polygon for z in zones], zone_names=[z.name or z.id for z in zones], detail=case.detail,
            )  # fmt: skip
        except (OSError, ValueError, cv2.error) as exc:
            self.evidence_errors += 1
            log.error("case %s: evidence could not be written: %s", case.case_id, exc)
            return
        if clip is not None and change.kind is ChangeKind.opened:
            try:
                files += (_clip_file(evidence_dir / case.case_id / "clip.mp4", clip),)
            except (OSError, ValueError) as exc:  # the frame and crop still go in
                self.evidence_errors += 1
                log.error("case %s: evidence clip not written: %s", case.case_id, exc)
        for f in files:
            rel = f.path.relative_to(evidence_dir).as_posix()
            self.store.add_evidence(case.case_id, _KIND[f.kind], rel, f.sha256, f.bytes)


def decode_frame(jpeg: bytes | None) -> np.ndarray | None:
    """A worker's evidence JPEG as a BGR image; None when missing or unreadable."""
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg is not None else None


def _clip_file(path: Path, data: bytes) -> EvidenceFile:
    if data[4:8] != b"ftyp":
        raise ValueError("the evidence clip from the worker is not an MP4 file")
    return write_evidence_bytes(data, path, "clip")


def _dwell(event: Event | None) -> float:
    return max(0.0, event.pts - event.since_pts) if event is not None else 0.0
