"""Ground truth and event-level scoring: do the cases citypatrol opened match what a person sees?

A truth file (`sample_videos/<name>.truth.yaml`) lists the problems in one video, each with a
category (built-in, or one the config evaluated under declares), a normalised box, and stream
times, plus the camera config the footage is judged under.
A case matches a truth item when the categories are equal, the boxes overlap, and the case opened
after the problem began plus the dwell (within a tolerance) and before it ended. Pure logic: the
runner that produces the cases lives in `evaluation/run.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from citypatrol.pipeline.boxes import box_iou, box_overlap_min
from citypatrol.pipeline.config.categories import ConfiguredCategory, category_of
from citypatrol.pipeline.config.models import Camera, Category
from citypatrol.pipeline.config.loading import ConfigError, ConfigIssue, format_path
from citypatrol.pipeline.types import Box
from pydantic import BaseModel, ConfigDict, Field, field_validator


class TruthItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Category | str = Field(
        description="A built-in category, or one the config evaluated under declares (`categories:`).")
    box: tuple[float, float, float, float] = Field(description="Normalised x1, y1, x2, y2.")
    start_s: float = Field(ge=0, description="Stream seconds when the problem is first visible.")
    end_s: float | None = Field(None, ge=0, description="Stream seconds when it ends; null = until the end.")
    optional: bool = Field(False, description="Hard to see: a match is not a false case, a miss is not counted.")
    note: str = ""

    @field_validator("category")
    @classmethod
    def _category(cls, category: Category | str) -> Category | ConfiguredCategory:
        return category_of(str(category.value if isinstance(category, Category) else category))

    @field_validator("box")
    @classmethod
    def _box(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise ValueError("box must be normalised x1 < x2, y1 < y2 within 0..1")
        return box


class Truth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    video: str = Field(description="SampleVideo name (manifest) the truth belongs to.")
    camera: Camera = Field(description="Camera config the footage is judged under; `source` is filled in at run time.")
    problems: list[TruthItem] = Field(default_factory=list)
    not_problems: list[str] = Field(default_factory=list, description="What a person saw that must not become a case.")


def load_truth(path: str | Path) -> Truth:
    """A truth file, validated; ConfigError names the file and the key path of every problem."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(str(p), [ConfigIssue("", f"cannot read it as YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), [ConfigIssue("", "expected a mapping with video, camera and problems")])
    camera = data.get("camera")
    if isinstance(camera, dict):
        camera.setdefault("source", f"{data.get('video', p.stem)}.mp4")
    try:
        return Truth.model_validate(data)
    except Exception as exc:  # pydantic ValidationError → file + key path
        errors = getattr(exc, "errors", None)
        if errors is None:
            raise
        raise ConfigError(str(p), [ConfigIssue(format_path(tuple(e["loc"])), e["msg"]) for e in errors()]) from None


@dataclass(frozen=True)
class ScoredCase:
    """The parts of a case that scoring needs."""

    case_id: str
    camera_id: str
    category: Category
    box: Box
    opened_pts: float
    evidence: str = ""  # the case's evidence frame, for a person to look at


def boxes_match(a: Box, b: Box, min_iou: float = 0.2, min_overlap: float = 0.5) -> bool:
    return box_iou(a, b) >= min_iou or box_overlap_min(a, b) >= min_overlap


@dataclass
class CategoryScore:
    category: Category
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float | None:
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else None

    @property
    def recall(self) -> float | None:
        n = self.true_positives + self.false_negatives
        return self.true_positives / n if n else None


@dataclass
class VideoScore:
    video: str
    matched: list[tuple[ScoredCase, TruthItem]] = field(default_factory=list)
    false_cases: list[tuple[ScoredCase, str]] = field(default_factory=list)  # case, why it did not match
    missed: list[TruthItem] = field(default_factory=list)
    ignored: list[ScoredCase] = field(default_factory=list)  # matched an optional item


def score_video(
    truth: Truth,
    cases: list[ScoredCase],
    dwell_s: dict[Category, float],
    tolerance_s: float,
) -> VideoScore:
    """Match cases to truth items one-to-one; a second case on a matched problem is a false (duplicate) case."""
    result = VideoScore(video=truth.video)
    taken: set[int] = set()
    for case in sorted(cases, key=lambda c: c.opened_pts):
        reason = "no problem of this category at this place"
        free: list[int] = []
        duplicate_of: int | None = None
        for i, item in enumerate(truth.problems):
            if item.category != case.category or not boxes_match(case.box, item.box):
                continue
            earliest = item.start_s + dwell_s.get(item.category, 0.0) - tolerance_s
            latest = (item.end_s if item.end_s is not None else float("inf")) + tolerance_s
            if not (earliest <= case.opened_pts <= latest):
                if duplicate_of is None:
                    reason = f"opened at {case.opened_pts:.1f} s, outside {max(earliest, 0):.1f}–{latest:.1f} s"
                continue
            if i in taken:
                reason = "duplicate: another case already matched this problem"
                if duplicate_of is None or item.optional:
                    duplicate_of = i
                continue
            free.append(i)
        # of the problems the case may be, the one its box overlaps most (neighbouring spaces overlap in perspective)
        best = max(free, key=lambda i: box_iou(case.box, truth.problems[i].box), default=None)
        if best is None and duplicate_of is not None and truth.problems[duplicate_of].optional:
            best = duplicate_of
        if best is None:
            result.false_cases.append((case, reason))
            continue
        item = truth.problems[best]
        taken.add(best)
        if item.optional:
            result.ignored.append(case)
            continue
        result.matched.append((case, item))
    result.missed = [item for i, item in enumerate(truth.problems) if i not in taken and not item.optional]
    return result


def per_category(scores: list[VideoScore]) -> dict[Category, CategoryScore]:
    out = {c: CategoryScore(c) for c in Category}
    for s in scores:
        for case, _ in s.matched:
            out.setdefault(case.category, CategoryScore(case.category)).true_positives += 1
        for case, _ in s.false_cases:  # a configured category's cases score too
            out.setdefault(case.category, CategoryScore(case.category)).false_positives += 1
        for item in s.missed:
            out.setdefault(item.category, CategoryScore(item.category)).false_negatives += 1
    return out
