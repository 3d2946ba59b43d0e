"""Run the pipeline over footage with truth files and score its cases against them.

Two ways in: the bundled samples (`evaluate_samples`), or a city's own footage described by its
own truth files (`evaluate_truth_files`). Every truth file is read and its footage found before
anything runs, so a bad file stops the evaluation instead of leaving it half scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from citypatrol.models.detector import MultiDetector
from citypatrol.pipeline.batch.runner import BatchResult, run_batch
from citypatrol.pipeline.config.loading import ConfigError, ConfigIssue
from citypatrol.pipeline.config.models import Camera, Category, CategoryDef, Config, Rules, category_of
from citypatrol.pipeline.evaluation.samples import SAMPLES_DIR, SampleVideo, fetch_samples, load_samples
from citypatrol.pipeline.evaluation.scoring import (
    CategoryScore, ScoredCase, Truth, VideoScore, load_truth, per_category, score_video,
)
from citypatrol.streams.media import is_image, is_video


def dwell_by_category(rules: Rules, camera: Camera, categories: Sequence[CategoryDef] = ()) -> dict[Category | str, float]:
    """The dwell each category (built-in, or configured in `categories`) needs on this camera (a zone override can shorten it)."""
    base = {
        Category.illegal_parking: rules.illegal_parking.dwell_s,
        Category.nonmotor_parking: rules.illegal_parking.dwell_s,
        Category.street_vending: rules.street_vending.dwell_s,
        Category.garbage_overflow: rules.garbage.dwell_s,
        Category.exposed_garbage: rules.garbage.dwell_s,
        Category.billboard: rules.billboard.dwell_s,
        **{category_of(c.name): c.dwell_s for c in categories},
    }
    zone_dwells = [z.dwell_s for z in camera.zones if z.dwell_s is not None]
    if zone_dwells:
        base = {k: min(v, min(zone_dwells)) for k, v in base.items()}
    return base


def sample_cameras(samples: list[SampleVideo], folder: Path = SAMPLES_DIR) -> list[tuple[Camera, Truth]]:
    """Each sample's judged camera config, pointed at its file in `folder`."""
    out = []
    for s in samples:
        truth = s.truth()
        out.append((truth.camera.model_copy(update={"source": str(folder / s.filename)}), truth))
    return out


def truth_footage(truth_path: Path, truth: Truth) -> Path:
    """The footage a truth file judges: its `camera.source` (relative to the file), else a file or
    folder named after its `video` beside it. ConfigError (key path camera.source) if neither exists."""
    given = Path(truth.camera.source)
    path = given if given.is_absolute() else truth_path.parent / given
    if path.exists():
        return path
    for cand in sorted(truth_path.parent.glob(f"{truth.video}*")):
        named = cand.name == truth.video or cand.stem == truth.video
        if named and (cand.is_dir() or is_video(cand) or is_image(cand)):
            return cand
    raise ConfigError(str(truth_path), [ConfigIssue(
        "camera.source", f"no footage at {path}, and no file or folder named {truth.video!r} beside the truth file")])


def load_truth_files(paths: Sequence[Path]) -> list[tuple[Path, Camera, Truth]]:
    """Every truth file read, its footage found and its camera id made unique; all problems at once."""
    loaded: list[tuple[Path, Camera, Truth]] = []
    issues: list[str] = []
    seen: set[str] = set()
    for p in paths:
        try:
            truth = load_truth(p)
            footage = truth_footage(Path(p), truth)
        except ConfigError as exc:
            issues.append(str(exc))
            continue
        cam_id, n = truth.camera.id, 2
        while cam_id in seen:
            cam_id, n = f"{truth.camera.id}-{n}", n + 1
        seen.add(cam_id)
        loaded.append((Path(p), truth.camera.model_copy(update={"id": cam_id, "source": str(footage)}), truth))
    if issues:
        raise TruthFilesError(issues)
    return loaded


class TruthFilesError(Exception):
    """One or more truth files cannot be used; nothing was run."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Evaluation:
    batch: BatchResult
    videos: list[VideoScore]
    categories: dict[Category, CategoryScore]
    footage: dict[str, str]  # video → the footage it was judged on


def undeclared_categories(config: Config, truths: Sequence[Truth]) -> list[str]:
    """Truth items whose category is neither built in nor declared in the config: one line each."""
    declared = {c.name for c in config.categories}
    return [f"{t.video}: problems[{i}].category: {item.category.value!r} is not a built-in category and the config "
            f"declares no such category (declared: {sorted(declared) or 'none'})"
            for t in truths for i, item in enumerate(t.problems)
            if not isinstance(item.category, Category) and item.category not in declared]


def _evaluate(config: Config, detector: MultiDetector, out_dir: Path, pairs: list[tuple[Camera, Truth]],
              console: Console | None, show_progress: bool) -> Evaluation:
    problems = undeclared_categories(config, [truth for _, truth in pairs])
    if problems:
        raise TruthFilesError(problems)  # before anything runs
    cameras = [cam for cam, _ in pairs]
    run_config = config.model_copy(update={"cameras": cameras})
    batch = run_batch(run_config, cameras, out_dir, detector, console=console, show_progress=show_progress)
    evidence_dir = run_config.storage.evidence_dir if run_config.storage.evidence_dir.is_absolute() else out_dir / run_config.storage.evidence_dir
    videos = []
    for cam, truth in pairs:
        cases = [
            ScoredCase(r.case.case_id, r.case.camera_id, r.case.category, r.case.box, r.case.opened_pts,
                       evidence=next((str(evidence_dir / e.path) for e in r.evidence if e.kind.value == "frame"), ""))
            for r in batch.cases
            if r.case.camera_id == cam.id
        ]
        tolerance = 2 * cam.cadence_s + 0.5
        videos.append(score_video(truth, cases, dwell_by_category(run_config.rules_for(cam), cam, run_config.categories), tolerance))
    return Evaluation(batch, videos, per_category(videos), {truth.video: cam.source for cam, truth in pairs})


def evaluate_samples(
    config: Config,
    detector: MultiDetector,
    out_dir: Path,
    *,
    names: list[str] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> Evaluation:
    samples = [s for s in load_samples() if not names or s.name in names]
    fetch_samples(names=[s.name for s in samples])
    return _evaluate(config, detector, out_dir, sample_cameras(samples), console, show_progress)


def evaluate_truth_files(
    config: Config,
    detector: MultiDetector,
    out_dir: Path,
    truths: list[tuple[Path, Camera, Truth]],
    *,
    console: Console | None = None,
    show_progress: bool = True,
) -> Evaluation:
    """Score the cases on each truth file's footage (`truths` from `load_truth_files`)."""
    return _evaluate(config, detector, out_dir, [(cam, truth) for _, cam, truth in truths], console, show_progress)
