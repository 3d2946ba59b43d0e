"""`citypatrol evaluate --candidate`: a candidate detector against the current one, before promotion.

Two measures, the same for both models:
  * detection: on the export's validation split (its data.yaml), each model runs through
    citypatrol's own `Detector` (label map → canonical classes, as in production) at a low
    confidence, predictions are matched to the labels at IoU 0.50:0.95, and precision, recall,
    mAP50 and mAP50-95 per class come from ultralytics' `ap_per_class` (what `yolo val` computes).
    Going through canonical classes lets a COCO model (80 labels) and a fine-tuned one (only the
    exported classes) be compared on the same boxes; `yolo val` would compare class ids;
  * events: `evaluate_samples` on the sample footage's truth files with each model in the
    detector slot (event-level precision/recall per category, false cases, misses).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from citypatrol.pipeline.boxes import iou_matrix
from citypatrol.pipeline.config.models import Config

log = logging.getLogger(__name__)

IOUS = np.linspace(0.5, 0.95, 10)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def match(pred_xyxy: np.ndarray, pred_cls: np.ndarray, conf: np.ndarray, gt_xyxy: np.ndarray, gt_cls: np.ndarray) -> np.ndarray:
    """(N, 10) true-positive flags at IoU 0.50:0.95: each label matched once, by the highest-confidence prediction first."""
    tp = np.zeros((len(pred_xyxy), len(IOUS)), dtype=bool)
    if len(pred_xyxy) == 0 or len(gt_xyxy) == 0:
        return tp
    iou = iou_matrix(pred_xyxy, gt_xyxy) * (pred_cls[:, None] == gt_cls[None, :])
    order = np.argsort(-conf)
    for k, t in enumerate(IOUS):
        used = np.zeros(len(gt_xyxy), dtype=bool)
        for i in order:
            cand = np.where((iou[i] >= t) & ~used)[0]
            if len(cand):
                j = cand[np.argmax(iou[i, cand])]
                used[j] = True
                tp[i, k] = True
    return tp


def read_split(data_yaml: Path, split: str = "val") -> tuple[list[str], list[tuple[Path, np.ndarray, np.ndarray]]]:
    """Class names and (image, normalised xyxy boxes, class ids) of a YOLO dataset split."""
    data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8"))
    names = data["names"]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    root = Path(data.get("path") or Path(data_yaml).parent)
    img_dir = root / data[split]
    out = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        lbl = Path(str(img.parent).replace("/images", "/labels")) / f"{img.stem}.txt"
        rows = [line.split() for line in lbl.read_text().splitlines() if line.strip()] if lbl.is_file() else []
        arr = np.array([[float(v) for v in r[:5]] for r in rows if len(r) >= 5], dtype=np.float64).reshape(-1, 5)
        xyxy = np.stack([arr[:, 1] - arr[:, 3] / 2, arr[:, 2] - arr[:, 4] / 2, arr[:, 1] + arr[:, 3] / 2, arr[:, 2] + arr[:, 4] / 2], 1) \
            if len(arr) else np.zeros((0, 4))
        out.append((img, xyxy, arr[:, 0].astype(int)))
    return names, out


def detection_metrics(detector, data_yaml: Path, split: str = "val") -> dict:  # noqa: ANN001  (a MultiDetector)
    """Precision, recall, mAP50, mAP50-95 (overall and per class) of `detector` on the split's labels."""
    import cv2
    from citypatrol.models.labelmaps import COCO, COCO_NAMES
    from ultralytics.utils.metrics import ap_per_class

    names, items = read_split(Path(data_yaml), split)
    # detectors speak canonical classes; a COCO-labelled set's names are COCO's (dining table → table)
    canon = [COCO.get(n, "") for n in names] if names == list(COCO_NAMES) else list(names)
    tps, confs, pcls, tcls = [], [], [], []
    for img_path, gt, gt_cls in items:
        image = cv2.imread(str(img_path))
        det = detector.detect([image])[0]
        keep = np.array([bool(c) and c in canon for c in det.class_name], dtype=bool)
        det = det[keep]
        cls = np.array([canon.index(c) for c in det.class_name], dtype=int)
        tps.append(match(det.xyxyn.astype(np.float64), cls, det.confidence, gt, gt_cls))
        confs.append(det.confidence)
        pcls.append(cls)
        tcls.append(gt_cls)
    target = np.concatenate(tcls) if tcls else np.zeros(0, int)
    result = {"split": split, "images": len(items), "labels": int(len(target)), "classes": names}
    if len(target) == 0:
        return {**result, "precision": None, "recall": None, "mAP50": None, "mAP50-95": None, "per_class": {}}
    tp, conf, pred = np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls)
    if len(tp) == 0:
        zero = {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0}
        return {**result, **zero, "per_class": {names[c]: dict(zero) for c in sorted(set(target.tolist()))}}
    _, _, p, r, _, ap, classes, *_ = ap_per_class(tp, conf, pred, target, names=dict(enumerate(names)))
    per_class = {names[int(c)]: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                                 "mAP50": round(float(ap[i, 0]), 4), "mAP50-95": round(float(ap[i].mean()), 4)}
                 for i, c in enumerate(classes)}
    return {**result, "precision": round(float(p.mean()), 4), "recall": round(float(r.mean()), 4),
            "mAP50": round(float(ap[:, 0].mean()), 4), "mAP50-95": round(float(ap.mean()), 4), "per_class": per_class}


def event_metrics(evaluation) -> dict:  # noqa: ANN001  (an evaluate_run.Evaluation)
    cats = {}
    for cat, s in evaluation.categories.items():
        cats[cat.value] = {"true_cases": s.true_positives, "false_cases": s.false_positives, "missed": s.false_negatives,
                           "precision": s.precision, "recall": s.recall}
    tp = sum(c["true_cases"] for c in cats.values())
    fp = sum(c["false_cases"] for c in cats.values())
    fn = sum(c["missed"] for c in cats.values())
    return {"per_category": cats, "true_cases": tp, "false_cases": fp, "missed": fn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None, "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "model": evaluation.batch.model}


@dataclass
class Comparison:
    current: dict
    candidate: dict
    path: Path | None = None

    def as_dict(self) -> dict:
        return {"current": self.current, "candidate": self.candidate}


def compare(config: Config, current, candidate, out: Path, *, data_yaml: Path | None = None,  # noqa: ANN001
            samples: list[str] | None = None, events: bool = True) -> Comparison:
    """Both measures for both detectors (MultiDetectors); writes `<out>/comparison.json`."""
    from citypatrol.pipeline.evaluation.run import evaluate_samples

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sides = {}
    for side, det in (("current", current), ("candidate", candidate)):
        res: dict = {"model": det.version, "classes": sorted(det.classes)}
        if data_yaml is not None:
            low = _low_conf(det)
            try:
                res["detection"] = detection_metrics(det, data_yaml)
            finally:
                _restore_conf(det, low)
        if events:
            ev = evaluate_samples(config, det, out / side, names=samples, show_progress=False)
            res["events"] = event_metrics(ev)
        sides[side] = res
    lost = sorted(set(sides["current"]["classes"]) - set(sides["candidate"]["classes"]))
    sides["candidate"]["classes_lost"] = lost
    cmp = Comparison(sides["current"], sides["candidate"], out / "comparison.json")
    cmp.path.write_text(json.dumps(cmp.as_dict(), ensure_ascii=False, indent=1))
    return cmp


def _low_conf(multi) -> list[float]:  # noqa: ANN001
    """mAP needs the whole precision-recall curve: run at conf 0.01 while measuring."""
    old = [d.cfg.conf for d in multi.detectors]
    for d in multi.detectors:
        d.cfg = d.cfg.model_copy(update={"conf": 0.01})
    return old


def _restore_conf(multi, old: list[float]) -> None:  # noqa: ANN001
    for d, c in zip(multi.detectors, old):
        d.cfg = d.cfg.model_copy(update={"conf": c})
