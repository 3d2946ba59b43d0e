"""The batch runner: recorded footage → detections, cases, evidence and a report.

Reads top to bottom: open every camera's source, take frames round-robin so one detector call
batches images of several cameras, run the analyzer, hand the results to the sinks (detections
log, sample frames, case recorder), then write cases.json and the report. A file that cannot be
read is reported and the others go on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from citypatrol.annotate.labels import label_zh
from citypatrol.annotate.report import ReportCase, ReportSummary, render_report
from citypatrol.models.detections import Detections
from citypatrol.models.detector import MultiDetector
from citypatrol.pipeline.analyzer import Analyzer
from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.batch.footage import plan_cameras
from citypatrol.pipeline.batch.outputs import DetectionLog, SampleFrames
from citypatrol.pipeline.detection.schedule import DetectionSchedule
from citypatrol.pipeline.sinks.recorder import CaseRecorder, ClipSource
from citypatrol.pipeline.cases.review_policy import ReviewPolicy
from citypatrol.pipeline.cli.markup import esc
from citypatrol.pipeline.store.case_store import Store, open_store
from citypatrol.pipeline.store.records import CaseRecord
from citypatrol.pipeline.types import plate_fields
from citypatrol.streams.frame import Frame
from citypatrol.streams.open import open_source
from citypatrol.streams.probe import duration_s
from citypatrol.streams.source import Source, SourceError

log = logging.getLogger("citypatrol.batch")


@dataclass
class CameraOutcome:
    camera_id: str
    source: str
    frames: int = 0
    stream_seconds: float = 0.0
    detections: int = 0
    cases: int = 0
    corrupt_packets: int = 0
    error: str = ""
    reading: str = ""  # how the source was read, when it was a choice (a folder of stills)
    tiling: str = ""  # the tiles its frames were cut into (detector.tiles), empty = whole frame only


@dataclass
class BatchResult:
    out_dir: Path
    outcomes: list[CameraOutcome]
    cases: list[CaseRecord]
    report: Path | None
    cases_json: Path
    detections_jsonl: Path
    database_url: str
    disabled_rules: list[str] = field(default_factory=list)
    evidence_errors: int = 0
    model: str = ""
    looks: dict[str, int] = field(default_factory=dict)  # model name → frames it looked at (the rest reused its newest)
    frames_gated: int = 0  # frames no model looked at: nothing had changed in the zones

    @property
    def analysed_any(self) -> bool:
        return any(o.frames > 0 for o in self.outcomes)


def cameras_for_paths(paths: Sequence[str | Path], config: Config) -> list[Camera]:
    """The cameras for `paths` (see `footage.plan_cameras`, which also says how folders of stills were read)."""
    return plan_cameras(paths, config).cameras


def _start_wall(camera: Camera) -> datetime | None:
    return datetime.fromisoformat(camera.start_time) if camera.start_time else None


def run_batch(
    config: Config,
    cameras: Sequence[Camera],
    out_dir: Path,
    detector: MultiDetector,
    *,
    store: Store | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    sample_every_s: float = 10.0,
    frame_sink: Callable[[Frame, Detections], object] | None = None,
    check: Callable | None = None,
) -> BatchResult:
    """Analyse `cameras`; `frame_sink(frame, detections)` sees every analysed frame (e.g. active
    sampling), `check(case, image)` is the second-stage check the review policy uses (dispatch on)."""
    console = console or Console(stderr=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    own_store = store is None
    db_url = config.storage.database_url
    if own_store:
        if db_url == "sqlite:///citypatrol.db":  # the default: keep a batch's database with its outputs
            db_url = f"sqlite:///{(out_dir / 'citypatrol.db').resolve()}"
        store = open_store(db_url)
    evidence_dir = config.storage.evidence_dir if config.storage.evidence_dir.is_absolute() else out_dir / config.storage.evidence_dir

    analyzer = Analyzer(config, detector.classes)
    for rule in analyzer.rules:
        log.info("rule %s: active", rule.name)
    for _, reason in analyzer.disabled:  # a rule whose classes no configured model serves is off: say so
        log.warning("rule off: %s", reason)
    # with dispatch on, the review policy decides each new case (auto-submit → outbox, or hold for review)
    recorder = CaseRecorder(store, config, evidence_dir, cameras, policy=ReviewPolicy(config.review) if config.dispatch.enabled else None,
                            check=check)
    dlog = DetectionLog(out_dir / "detections.jsonl")
    samples = SampleFrames(out_dir / "frames", every_s=sample_every_s)
    outcomes = {c.id: CameraOutcome(c.id, Path(c.source).name) for c in cameras}
    schedule = DetectionSchedule(detector, config, cameras)  # each model at the cadence its rules need

    sources: dict[str, Source] = {}
    for cam in cameras:
        store.upsert_camera(cam)
        analyzer.add_camera(cam)
        try:
            sources[cam.id] = open_source(cam.id, cam.source, cam.cadence_s, start_wall=_start_wall(cam), **cam.stills_args())
            outcomes[cam.id].reading = sources[cam.id].reading
        except (SourceError, OSError, ValueError) as exc:
            outcomes[cam.id].error = str(exc)
            console.print(f"[red]✗[/red] {esc(cam.id)}: {esc(exc)}", highlight=False)

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not show_progress, transient=False,
    )
    tasks: dict[str, TaskID] = {}
    with progress:
        totals = {cid: _expected_frames(cameras, cid) for cid in sources}
        overall = progress.add_task("all footage", total=sum(t for t in totals.values() if t) or None)
        for cid in sources:
            tasks[cid] = progress.add_task(f"  {esc(outcomes[cid].source)}", total=totals[cid])
        batch_size = max(d.batch for d in config.models.detectors)
        for batch in _round_robin(sources, batch_size, outcomes):
            dets = schedule.detect(batch)
            for frame, d in zip(batch, dets):
                result = analyzer.process(frame, d)
                dlog.write(frame, d)
                samples.maybe_write(frame, d)
                if frame_sink is not None:
                    frame_sink(frame, d)
                cam = next(c for c in cameras if c.id == frame.camera_id)
                clip = ClipSource(file=Path(cam.source)) if Path(cam.source).is_file() else None
                recorder.record(result, clip)
                o = outcomes[frame.camera_id]
                o.frames += 1
                o.stream_seconds = max(o.stream_seconds, frame.pts)
                o.detections += len(d)
                progress.advance(tasks[frame.camera_id])
                progress.advance(overall)
        for cid, src in sources.items():
            st = src.stats
            outcomes[cid].corrupt_packets = st.corrupt_packets
            outcomes[cid].tiling = schedule.grids.describe(cid)
            if st.last_error and not outcomes[cid].error:
                outcomes[cid].error = st.last_error
            src.close()
            progress.update(tasks[cid], total=outcomes[cid].frames, completed=outcomes[cid].frames)
        done = sum(o.frames for o in outcomes.values())
        progress.update(overall, total=done, completed=done)
    recorder.close()
    dlog.close()

    # this run's cases only: the store may be shared with other runs and cameras
    records = sorted((store.get_case(case_id) for case_id in recorder.case_ids),
                     key=lambda r: (r.case.opened_at, r.case.case_id), reverse=True)
    for r in records:
        outcomes[r.case.camera_id].cases += 1
    cases_json = out_dir / "cases.json"
    write_cases(records, cases_json, evidence_dir)
    report = write_report(config, cameras, records, outcomes.values(), out_dir, evidence_dir, detector)
    if own_store:
        store.close()
    return BatchResult(
        out_dir=out_dir,
        outcomes=list(outcomes.values()),
        cases=records,
        report=report,
        cases_json=cases_json,
        detections_jsonl=dlog.path,
        database_url=db_url,
        disabled_rules=[reason for _, reason in analyzer.disabled],
        evidence_errors=recorder.evidence_errors,
        looks={d.name: n for d, n in zip(detector.detectors, schedule.runs)},
        frames_gated=sum(schedule.gated.values()),
        model=detector.version,
    )


def _expected_frames(cameras: Sequence[Camera], camera_id: str) -> int | None:
    cam = next(c for c in cameras if c.id == camera_id)
    d = duration_s(cam.source)
    return max(1, int(d / cam.cadence_s) + 1) if d else None


def _round_robin(sources: dict[str, Source], batch_size: int, outcomes: dict[str, CameraOutcome]) -> Iterator[list[Frame]]:
    """Batches of frames taken in turn from every camera still delivering; a failing one drops out."""
    iters = {cid: src.frames() for cid, src in sources.items()}
    batch: list[Frame] = []
    while iters:
        for cid in list(iters):
            try:
                batch.append(next(iters[cid]))
            except StopIteration:
                del iters[cid]
            except SourceError as exc:
                outcomes[cid].error = str(exc)
                log.error("%s", exc)
                del iters[cid]
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def case_to_dict(r: CaseRecord, evidence_dir: Path) -> dict:
    c = r.case
    return {
        "case_id": c.case_id,
        "camera_id": c.camera_id,
        "category": c.category.value,
        "category_zh": label_zh(c.category, r.codes.name),
        "code": r.codes.code,
        "code_name": r.codes.name,
        "code_major": r.codes.major,
        "status": c.status.value,
        "box": [round(v, 4) for v in c.box],
        "zone_id": c.zone_id,
        "opened_pts": round(c.opened_pts, 2),
        "opened_at": c.opened_at.isoformat(),
        "last_seen_pts": round(c.last_seen_pts, 2),
        "last_seen_at": c.last_seen_at.isoformat(),
        "score": round(c.score, 3),
        "events": c.events,
        "detail": c.detail,
        "model": c.model,
        "plate": plate_fields(c.plate),
        "location": {
            "lon": r.location.lon, "lat": r.location.lat, "address": r.location.address,
            "district": r.location.district, "grid_code": r.location.grid_code,
        },
        "evidence": [{"kind": e.kind.value, "path": str(evidence_dir / e.path), "sha256": e.sha256} for e in r.evidence],
        "history": [
            {"from": t.from_status.value if t.from_status else None, "to": t.to_status.value, "at": t.at.isoformat(),
             "actor": t.actor, "reason": t.reason}
            for t in c.history
        ],
    }


def write_cases(records: Sequence[CaseRecord], path: Path, evidence_dir: Path) -> None:
    path.write_text(json.dumps([case_to_dict(r, evidence_dir) for r in records], ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_report(
    config: Config,
    cameras: Sequence[Camera],
    records: Sequence[CaseRecord],
    outcomes,
    out_dir: Path,
    evidence_dir: Path,
    detector: MultiDetector,
) -> Path:
    names = {c.id: c.name or c.id for c in cameras}
    items = []
    for r in records:
        c = r.case
        ev = {e.kind.value: e.path for e in r.evidence}

        def rel(kind: str) -> str | None:
            p = ev.get(kind)
            if p is None:
                return None
            full = (evidence_dir / p).resolve()
            try:
                return full.relative_to(out_dir.resolve()).as_posix()
            except ValueError:
                return None  # evidence outside the report folder is not linked

        items.append(ReportCase(
            case_id=c.case_id, category=c.category.value, category_zh=label_zh(c.category, r.codes.name), code=r.codes.code,
            camera_id=c.camera_id, camera_name=names.get(c.camera_id, c.camera_id), address=r.location.address,
            grid_code=r.location.grid_code, opened_at=c.opened_at, last_seen_at=c.last_seen_at, opened_pts=c.opened_pts,
            score=c.score, status=c.status.value, detail=c.detail, image=rel("frame"), crop=rel("crop"), clip=rel("clip"),
            last_seen_pts=c.last_seen_pts, code_name=r.codes.name, plate=c.plate.describe() if c.plate is not None else "",
        ))
    outcomes = list(outcomes)
    walls = [r.case.opened_at for r in records] + [r.case.last_seen_at for r in records]
    summary = ReportSummary(
        site=config.site.name,
        model=", ".join(d.ref for d in detector.detectors),
        footage=tuple(o.source for o in outcomes),
        footage_seconds=sum(o.stream_seconds for o in outcomes),
        span_start=min(walls) if walls else None,
        span_end=max(walls) if walls else None,
        generated_at=datetime.now(UTC),
        timezone=config.site.timezone,
        cameras=names,
    )
    ZoneInfo(config.site.timezone)  # fail early with the zone's name if it is wrong
    return render_report(items, summary, out_dir)
