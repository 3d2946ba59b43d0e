"""Shadow mode: a candidate detector runs beside the current one on a sample of frames, and every
disagreement is listed for an analyst before anyone promotes it.

`disagreements(current, candidate)` is pure: detections at or above `min_score` (the score that
matters to the rules and the review policy) are matched by class and IoU ≥ `iou`; what one model
sees and the other does not is a disagreement ("candidate misses" or "candidate adds"), with the
class, box and both scores. `run_shadow` feeds footage (files, folders or stream URLs) at the
cameras' cadence, compares every `every`-th frame, and writes `disagreements.jsonl`, side-by-side
pictures of the frames that disagree (current left, candidate right; at most `max_images`) and
`summary.json` (frames compared, frames that agree, counts per class and kind).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from citypatrol.models.detections import Detections
from citypatrol.pipeline.boxes import iou_matrix


@dataclass(frozen=True)
class Disagreement:
    kind: str  # "candidate misses" | "candidate adds"
    class_name: str
    box: tuple[float, float, float, float]  # normalised
    score: float  # of the model that saw it
    other_best: float  # the other model's best score for that class at IoU ≥ 0.3 (0 = nothing there)


def disagreements(current: Detections, candidate: Detections, *, min_score: float = 0.5, iou: float = 0.5,
                  classes: frozenset[str] | None = None) -> list[Disagreement]:
    """What one model reports (score ≥ min_score) that the other does not (same class, IoU ≥ iou, any score)."""
    out: list[Disagreement] = []
    for kind, a, b in (("candidate misses", current, candidate), ("candidate adds", candidate, current)):
        an, bn = a.xyxyn, b.xyxyn
        m = iou_matrix(an, bn) * (a.class_name[:, None] == b.class_name[None, :]) if len(a) and len(b) else np.zeros((len(a), len(b)))
        for i in range(len(a)):
            cls = str(a.class_name[i])
            if a.confidence[i] < min_score or (classes is not None and cls not in classes):
                continue
            if len(b) and m[i].max() >= iou:
                continue
            near = b.confidence[m[i] >= 0.3] if len(b) else np.zeros(0)
            out.append(Disagreement(kind, cls, tuple(round(float(v), 4) for v in an[i]), round(float(a.confidence[i]), 3),
                                    round(float(near.max()), 3) if len(near) else 0.0))
    return out


def _draw(image: np.ndarray, det: Detections, title: str) -> np.ndarray:
    img = image.copy()
    for (x1, y1, x2, y2), c, s in zip(det.xyxy.astype(int), det.class_name, det.confidence):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 255), 2)
        cv2.putText(img, f"{c} {s:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 255), 1)
    cv2.putText(img, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return img


def run_shadow(config, current, candidate, footage: list[str], out: Path, *, every: int = 1,  # noqa: ANN001
               min_score: float = 0.5, max_images: int = 50) -> dict:
    """Compare the two detectors on every `every`-th analysed frame of `footage`; see the module doc."""
    from citypatrol.pipeline.batch.runner import cameras_for_paths
    from citypatrol.pipeline.config.models import Camera
    from citypatrol.streams.open import open_source

    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    urls = [f for f in footage if "://" in f]
    cams = cameras_for_paths([f for f in footage if "://" not in f], config)
    cams += [Camera(id=f"stream{i + 1}", source=u) for i, u in enumerate(urls)]
    shared = frozenset(current.classes) & frozenset(candidate.classes)
    counts: Counter[str] = Counter()
    frames = agree = images = 0
    with (out / "disagreements.jsonl").open("w", encoding="utf-8") as log:
        for cam in cams:
            src = open_source(cam.id, cam.source, cam.cadence_s, **cam.stills_args())
            try:
                for n, frame in enumerate(src.frames()):
                    if n % every:
                        continue
                    cur, cand = current.detect([frame.image])[0], candidate.detect([frame.image])[0]
                    diff = disagreements(cur, cand, min_score=min_score, classes=shared or None)
                    frames += 1
                    if not diff:
                        agree += 1
                        continue
                    picture = None
                    if images < max_images:
                        picture = f"frames/{cam.id}_{frame.pts:08.1f}.jpg"
                        both = np.hstack([_draw(frame.image, cur, f"current {current.version}"),
                                          _draw(frame.image, cand, f"candidate {candidate.version}")])
                        cv2.imwrite(str(out / picture), both, [cv2.IMWRITE_JPEG_QUALITY, 85])
                        images += 1
                    for d in diff:
                        counts[f"{d.kind}: {d.class_name}"] += 1
                    log.write(json.dumps({"camera": cam.id, "pts": round(frame.pts, 2), "wall": frame.wall.isoformat(),
                                          "picture": picture, "disagreements": [asdict(d) for d in diff]}, ensure_ascii=False) + "\n")
            finally:
                src.close()
    summary = {"current": current.version, "candidate": candidate.version, "frames_compared": frames,
               "frames_agreeing": agree, "agreement": round(agree / frames, 4) if frames else None,
               "min_score": min_score, "compared_classes": sorted(shared), "disagreements": dict(counts),
               "pictures": images, "disagreements_file": str(out / "disagreements.jsonl")}
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1))
    return summary
