"""Run the pipeline over the sample footage and score its cases against the truth files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from citypatrol.models.detector import MultiDetector
from citypatrol.pipeline.batch.runner import BatchResult, run_batch
from citypatrol.pipeline.config.models import Camera, Category, Config, Rules
from citypatrol.pipeline.evaluation.scoring import CategoryScore, ScoredCase, Truth, VideoScore, per_category, score_video
from citypatrol.pipeline.evaluation.samples import SAMPLES_DIR, SampleVideo, fetch_samples, load_samples


def dwell_by_category(rules: Rules, camera: Camera) -> dict[Category, float]:
    """The dwell each category needs on this camera (a zone override can shorten it)."""
    base = {
        Category.illegal_parking: rules.illegal_parking.dwell_s,
        Category.nonmotor_parking: rules.illegal_parking.dwell_s,
        Category.street_vending: rules.street_vending.dwell_s,
        Category.garbage_overflow: rules.garbage.dwell_s,
        Category.exposed_garbage: rules.garbage.dwell_s,
        Category.billboard: rules.billboard.dwell_s,
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


@dataclass
class Evaluation:
    batch: BatchResult
    videos: list[VideoScore]
    categories: dict[Category, CategoryScore]


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
    pairs = sample_cameras(samples)
    cameras = [cam for cam, _ in pairs]
    run_config = config.model_copy(update={"cameras": cameras})
    batch = run_batch(run_config, cameras, out_dir, detector, console=console, show_progress=show_progress)
    videos = []
    for cam, truth in pairs:
        cases = [
            ScoredCase(r.case.case_id, r.case.camera_id, r.case.category, r.case.box, r.case.opened_pts)
            for r in batch.cases
            if r.case.camera_id == cam.id
        ]
        tolerance = 2 * cam.cadence_s + 0.5
        videos.append(score_video(truth, cases, dwell_by_category(run_config.rules_for(cam), cam), tolerance))
    return Evaluation(batch, videos, per_category(videos))
