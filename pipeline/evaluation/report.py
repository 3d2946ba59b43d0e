"""An evaluation as plain data (`--json`) and where a person should look at each miss."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from citypatrol.pipeline.evaluation.scoring import TruthItem
from citypatrol.streams.media import is_image, list_media
from citypatrol.streams.still_times import StillsTimeError, read_stills


@lru_cache(maxsize=32)
def _stills(folder: str) -> tuple[tuple[float, str], ...]:
    try:
        reading = read_stills([p for p in list_media(Path(folder)) if is_image(p)])
    except StillsTimeError:
        return ()
    return tuple((s.pts, str(s.path)) for s in reading.stills)


def look_at(ev, video: str, item: TruthItem) -> str:
    """The picture of a missed problem: for stills, the last still in its time span (where the case
    should have been open); for a video, the file and the time."""
    footage = ev.footage.get(video, "")
    if not footage:
        return "(footage unknown)"
    end = item.end_s if item.end_s is not None else float("inf")
    if Path(footage).is_dir():
        inside = [path for pts, path in _stills(footage) if item.start_s <= pts <= end]
        if inside:
            return inside[-1]
    return f"{footage} at {item.start_s:g} s"


def evaluation_dict(ev) -> dict:
    """Scores per category, then per video every matched, false and missed case, for scripts."""
    rnd = lambda v: None if v is None else round(v, 4)  # noqa: E731
    categories = {
        cat.value: {"true_cases": s.true_positives, "false_cases": s.false_positives, "missed": s.false_negatives,
                    "precision": rnd(s.precision), "recall": rnd(s.recall)}
        for cat, s in ev.categories.items()
    }
    videos = []
    for v in ev.videos:
        case = lambda c: {"case_id": c.case_id, "camera_id": c.camera_id, "category": c.category.value,  # noqa: E731
                          "box": [round(x, 4) for x in c.box], "opened_pts": round(c.opened_pts, 2), "evidence": c.evidence}
        item = lambda i: {"category": i.category.value, "box": list(i.box), "start_s": i.start_s,  # noqa: E731
                          "end_s": i.end_s, "note": i.note}
        videos.append({
            "video": v.video,
            "footage": ev.footage.get(v.video, ""),
            "matched": [{**case(c), "truth": item(i)} for c, i in v.matched],
            "false_cases": [{**case(c), "why": why} for c, why in v.false_cases],
            "missed": [{**item(i), "look_at": look_at(ev, v.video, i)} for i in v.missed],
            "ignored": [case(c) for c in v.ignored],
        })
    return {"categories": categories, "videos": videos, "out_dir": str(ev.batch.out_dir)}
