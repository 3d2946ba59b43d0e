"""核查结案: re-check a handled case on its camera, then close it or reopen it.

When the dispatch system reports a case handled, the verifier moves it handled → verifying, takes
frames from the camera's source (the live stream, or for tests and archives a recorded file or a
folder of stills) every `verify.cadence_s`, re-runs the cue that opened the case at the case's
place (the detector and the case's rule, `judge.cues`; for a billboard opened by printed text, OCR
on the case's box, `judge.text_cues`; for one opened by the scene-change cue, the ad area against
the camera's reference image, `judge.scene_cues`; for a picture poster found by the panel cue, the
same panel search on its ad area, `judge.panel_cues`) and lets `judge.Judge` decide:

- gone for `verify.confirm_s` → closed, with an after-image (the last frame, the case's box drawn)
  stored beside a before-image (a copy of the case's original evidence frame), and a
  `case.verified` message to the dispatch system carrying both;
- still there for `verify.confirm_s` → reopened, with fresh evidence (the current frame) and a
  `case.reopen` message, in the same transaction; the dispatcher re-dispatches it;
- neither (footage ended, or `verify.max_watch_s` passed) → it stays verifying, tried again later.

With verification off, or no camera source for the case, a handled case is closed without a check
(the state machine allows it) and the audit row says why.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from citypatrol.annotate.evidence import render_annotated, write_image
from citypatrol.models.detector import MultiDetector
from citypatrol.models.text import RapidTextReader, TextReader, TextReaderError, TextRegion
from citypatrol.pipeline.config.models import Camera, Category, CategoryDef, Config, RuleKind, Rules, Zone, ZoneKind
from citypatrol.pipeline.dispatch import message as dm
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.detection.panels import find_panels
from citypatrol.pipeline.rules.scene_change import SceneChangeRule
from citypatrol.pipeline.rules.vending_scene import new_objects, people_boxes
from citypatrol.pipeline.store.records import CaseRecord, EvidenceKind, OutboxMessage
from citypatrol.pipeline.detection.text_schedule import read_area
from citypatrol.pipeline.types import PANEL_CUE, SCENE_CUE, TEXT_CUE, Box, Case, CaseStatus
from citypatrol.pipeline.verify.judge import Cue, Judge, Verdict, configured_cues, cues, object_cues, panel_cues, scene_cues, text_cues
from citypatrol.pipeline.zones import zone_geometry, zones_of_kind
from citypatrol.streams.frame import Frame
from citypatrol.streams.open import open_source
from citypatrol.streams.source import SourceError

log = logging.getLogger("citypatrol.verify")

ACTOR = "verifier"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    case_id: str
    verdict: Verdict | None  # None: closed without a check
    status: CaseStatus  # the case's status afterwards
    frames: int = 0
    watched_s: float = 0.0
    evidence: tuple[str, ...] = ()
    reason: str = ""


class Verifier:
    """Re-checks handled cases. `sources(camera_id)` may override where a camera's frames come from."""

    def __init__(self, store: Store, config: Config, detector: MultiDetector, evidence_dir: Path, *,
                 sources: Callable[[str], str | None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 text_reader: TextReader | None = None) -> None:
        """`text_reader`: the OCR that re-reads text-cue cases (default: RapidOCR, built on first need)."""
        self.store = store
        self.config = config
        self.detector = detector
        self.evidence_dir = Path(evidence_dir)
        self.sources = sources
        self.clock = clock
        self.tz = ZoneInfo(config.site.timezone)
        self.cameras = {c.id: c for c in config.cameras}
        self.text_reader = text_reader

    def run_pending(self, *, limit: int = 20, retry_verifying: bool = True) -> list[VerifyResult]:
        """Verify the cases reported handled (and, by default, those left verifying before)."""
        statuses = [str(CaseStatus.handled)] + ([str(CaseStatus.verifying)] if retry_verifying else [])
        results = []
        for record in self.store.list_cases(status=statuses, limit=limit):
            try:
                results.append(self.verify_case(record.case_id))
            except (SourceError, OSError) as exc:  # one camera failing does not stop the others
                log.error("case %s: verification could not read the camera: %s", record.case_id, exc)
        return results

    def verify_case(self, case_id: str, *, source: str | None = None) -> VerifyResult:
        record = self.store.get_case(case_id)
        case = record.case
        if case.status not in (CaseStatus.handled, CaseStatus.verifying):
            raise ValueError(f"case {case_id} is {case.status.value}; only handled cases are verified")
        source = source or self._source(case.camera_id)
        now = self.clock()
        if not self.config.verify.enabled or not source:
            why = "verification is off" if not self.config.verify.enabled else f"no camera source for {case.camera_id}"
            if case.status is CaseStatus.handled:
                self.store.set_status(case_id, CaseStatus.closed, at=now, actor=ACTOR, reason=f"closed without a camera check: {why}")
                return VerifyResult(case_id, None, CaseStatus.closed, reason=why)
            return VerifyResult(case_id, None, case.status, reason=why)
        if case.status is CaseStatus.handled:
            self.store.set_status(case_id, CaseStatus.verifying, at=now, actor=ACTOR, reason=f"re-checking on camera {case.camera_id}")
        rounds = 1 + sum(1 for t in record.case.history if t.to_status is CaseStatus.verifying)
        return self._watch(record, source, rounds)

    def _source(self, camera_id: str) -> str | None:
        if self.sources is not None:
            found = self.sources(camera_id)
            if found:
                return found
        cam = self.cameras.get(camera_id)
        return cam.source if cam is not None and cam.enabled else None

    def _watch(self, record: CaseRecord, source: str, rounds: int) -> VerifyResult:
        case = record.case
        v = self.config.verify
        cam = self.cameras.get(case.camera_id) or Camera(id=case.camera_id, source=source)
        rules = self.config.rules_for(cam)
        judge = Judge(v)
        verdict: Verdict | None = None
        last_image: np.ndarray | None = None
        last_cues: list[Cue] = []
        pts = 0.0
        src = open_source(case.camera_id, source, v.cadence_s)
        try:
            check = self._check(case, cam, rules)
            for frame in src.frames():
                found = check(frame)
                pts, last_image = frame.pts, frame.image
                if found:
                    last_cues = found
                verdict = judge.add(frame.pts, bool(found))
                if verdict is not None:
                    break
        finally:
            src.close()
        verdict = verdict or judge.finish()
        watched = judge.watched_s(pts)
        seen = f"{judge.present_frames}/{judge.frames} frames over {watched:.0f} s, by the {self._cue_name(case)}"
        if verdict is Verdict.inconclusive or last_image is None:
            reason = f"no verdict yet ({seen}); stays verifying"
            log.info("case %s: %s", case.case_id, reason)
            return VerifyResult(case.case_id, Verdict.inconclusive, CaseStatus.verifying, judge.frames, watched, reason=reason)
        folder = f"{case.case_id}/verify-{rounds}"
        now = self.clock()
        if verdict is Verdict.gone:
            files = [*self._before(record, folder), self._image(last_image, case, folder, "after.jpg", EvidenceKind.after, now)]
            reason = f"核查通过: cause gone for {v.confirm_s:.0f} s on camera ({seen})"
            message = OutboxMessage(dm.VERIFIED, {"note": reason, "evidence": files}, dm.idempotency_key(case.case_id, dm.VERIFIED, rounds))
            self.store.set_status(case.case_id, CaseStatus.closed, at=now, actor=ACTOR, reason=reason, outbox=message)
            status = CaseStatus.closed
        else:
            box = last_cues[0].box if last_cues else case.box
            files = [self._image(last_image, case, folder, "still_there.jpg", EvidenceKind.after, now, box=box)]
            reason = f"核查未通过: still there after handling, seen for {v.confirm_s:.0f} s ({seen})"
            paths = files + [e.path for e in record.evidence if e.kind is EvidenceKind.frame][:1]
            message = OutboxMessage(dm.REOPEN, {"note": reason, "evidence": paths}, dm.idempotency_key(case.case_id, dm.REOPEN, rounds))
            self.store.set_status(case.case_id, CaseStatus.reopened, at=now, actor=ACTOR, reason=reason, outbox=message)
            status = CaseStatus.reopened
        log.info("case %s: %s → %s", case.case_id, reason, status.value)
        return VerifyResult(case.case_id, verdict, status, judge.frames, watched, tuple(files), reason)

    def _cue_name(self, case: Case) -> str:
        defn = self.config.category(case.category)
        if defn is not None:
            return {RuleKind.scene_change: "scene-change cue", RuleKind.text_region: "text cue"}.get(defn.rule, "detector")
        if case.category is Category.billboard and case.cue == TEXT_CUE:
            return "text cue"
        if case.category is Category.billboard and case.cue == PANEL_CUE:
            return "panel cue"
        if case.cue == SCENE_CUE and case.category in (Category.billboard, Category.street_vending):
            return "scene-change cue"
        return "detector"

    def _check(self, case: Case, cam: Camera, rules) -> Callable[[Frame], list[Cue]]:
        """The per-frame check that re-runs the cue which opened the case."""
        v = self.config.verify
        defn = self.config.category(case.category)
        if defn is not None:
            return self._configured_check(case, cam, rules, defn)
        if case.category is Category.billboard and case.cue == TEXT_CUE:
            zone = [z for z in cam.zones if z.id == case.zone_id and z.kind is ZoneKind.ad_area]
            return self._text_check(case, zone, lambda regions: text_cues(rules, regions, case.box, v.match_iou))
        if case.category is Category.billboard and case.cue == PANEL_CUE:
            return self._panel_check(case, cam)
        if case.cue == SCENE_CUE and case.category in (Category.billboard, Category.street_vending):
            if case.category is Category.street_vending:  # the new object itself, people left out
                s = rules.street_vending
                return self._object_check(case, cam, s.min_score, s.scene_min_area)
            reference, zone = self._reference_and_zone(case, cam)
            rule = SceneChangeRule(rules)
            approved = zones_of_kind(cam.zones, ZoneKind.approved_ad)

            def scene(frame: Frame) -> list[Cue]:
                return scene_cues(rules, *rule.measure(frame.image, _sized(reference, frame), zone, approved))
            return scene
        return lambda frame: cues(case.category, rules, self.detector.detect([frame.image])[0], case.box, v.match_iou)

    def _configured_check(self, case: Case, cam: Camera, rules: Rules, defn: CategoryDef) -> Callable[[Frame], list[Cue]]:
        """A configured category is re-checked by its rule kind's cue."""
        v = self.config.verify
        if defn.rule is RuleKind.text_region:
            zone = [z for z in cam.zones if z.id == case.zone_id]
            return self._text_check(case, zone, lambda regions: text_cues(rules, regions, case.box, v.match_iou, defn.text_min_score))
        if defn.rule is RuleKind.scene_change:
            return self._object_check(case, cam, defn.min_score, defn.min_area)
        return lambda frame: configured_cues(defn, self.detector.detect([frame.image])[0], case.box, v.match_iou)

    def _text_check(self, case: Case, zone: list[Zone], judge: Callable[[tuple[TextRegion, ...]], list[Cue]]) -> Callable[[Frame], list[Cue]]:
        """Text read again where the case was found (its zone's area, else around its box)."""
        if self.text_reader is None:
            try:
                self.text_reader = RapidTextReader()
            except TextReaderError as exc:  # the case stays handled; the others are verified
                raise SourceError(f"case {case.case_id}: the text cue cannot be re-run: {exc}") from exc
        reader = self.text_reader
        area = read_area(zone) if zone else _around(case.box)
        return lambda frame: judge(reader.read(frame.image, area).regions)

    def _panel_check(self, case: Case, cam: Camera) -> Callable[[Frame], list[Cue]]:
        """The picture panel searched for again on the case's ad area (else around its box), people left out."""
        zone = next((z for z in cam.zones if z.id == case.zone_id), None)
        area = tuple(zone_geometry(zone).bounds) if zone is not None else _around(case.box)
        polygon = zone.polygon if zone is not None else None

        def panels(frame: Frame) -> list[Cue]:
            walkers = people_boxes(self.detector.detect([frame.image])[0], 0.0)
            found = find_panels(frame.image, area, polygon, walkers).panels
            return panel_cues((p.box for p in found), case.box, self.config.verify.match_iou)
        return panels

    def _reference_and_zone(self, case: Case, cam: Camera) -> tuple[np.ndarray, Zone]:
        reference = cv2.imread(str(cam.reference_image), cv2.IMREAD_COLOR) if cam.reference_image else None
        zone = next((z for z in cam.zones if z.id == case.zone_id), None)
        if reference is None or zone is None:
            why = "no readable reference image" if reference is None else f"zone {case.zone_id} no longer drawn"
            raise SourceError(f"case {case.case_id}: the scene-change cue cannot be re-run: {why}")
        return reference, zone

    def _object_check(self, case: Case, cam: Camera, min_score: float, min_area: float) -> Callable[[Frame], list[Cue]]:
        """A new object against the reference image still on the case's box, people left out."""
        reference, zone = self._reference_and_zone(case, cam)
        approved = zones_of_kind(cam.zones, ZoneKind.approved_ad)

        def objects(frame: Frame) -> list[Cue]:
            people = people_boxes(self.detector.detect([frame.image])[0], min_score)
            found = new_objects(frame.image, _sized(reference, frame), zone, people, ignore=approved, min_area=min_area)
            return object_cues(found, case.box, self.config.verify.match_iou)
        return objects

    def _before(self, record: CaseRecord, folder: str) -> list[str]:
        """A copy of the case's original frame as the before-image (none when it has no frame)."""
        frames = [e for e in record.evidence if e.kind is EvidenceKind.frame]
        if not frames:
            return []
        src = self.evidence_dir / frames[0].path
        rel = f"{folder}/before{src.suffix or '.jpg'}"
        dst = self.evidence_dir / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        except OSError as exc:
            log.warning("case %s: before-image not copied: %s", record.case_id, exc)
            return []
        self.store.add_evidence(record.case_id, EvidenceKind.before, rel, frames[0].sha256, frames[0].size)
        return [rel]

    def _image(self, image: np.ndarray, case: Case, folder: str, name: str, kind: EvidenceKind, at: datetime, *,
               box: Box | None = None) -> str:
        cam = self.cameras.get(case.camera_id)
        code = self.config.codes.get(case.category)
        annotated = render_annotated(image, box or case.box, case.category, case.score, title=code.name if code else "",
                                     camera_name=(cam.name or cam.id) if cam else case.camera_id,
                                     local_time=at.astimezone(self.tz), detail=f"核查 {name.removesuffix('.jpg')}")
        rel = f"{folder}/{name}"
        f = write_image(annotated, self.evidence_dir / rel, kind.value)
        self.store.add_evidence(case.case_id, kind, rel, f.sha256, f.bytes)
        return rel


def _sized(reference: np.ndarray, frame: Frame) -> np.ndarray:
    h, w = frame.image.shape[:2]
    return reference if reference.shape[:2] == (h, w) else cv2.resize(reference, (w, h), interpolation=cv2.INTER_AREA)


def _around(box: Box, pad: float = 0.2) -> Box:
    """The case's box with room around it, where its ad area is no longer drawn."""
    w, h = box[2] - box[0], box[3] - box[1]
    px, py = max(pad, w), max(pad, h)
    return (max(0.0, box[0] - px), max(0.0, box[1] - py), min(1.0, box[2] + px), min(1.0, box[3] + py))
