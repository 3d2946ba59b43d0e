"""Per-class figures a city can read: precision and recall at a threshold, the threshold that gives
the precision auto-submission needs, and which class a labelled object was taken for.

All at IoU ≥ 0.5, one prediction per label (highest confidence first), on a held-out YOLO split.
`predictions_on_split` runs a model once at a low confidence; everything else is pure arithmetic
on what it returned, so one run serves every threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citypatrol.pipeline.boxes import iou_matrix

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MATCH_IOU = 0.5
BACKGROUND = "background"  # a prediction on no labelled object / a label no prediction covers


@dataclass
class ImageResult:
    """Labels and predictions of one image, boxes in pixels (x1, y1, x2, y2)."""

    gt_xyxy: np.ndarray
    gt_cls: np.ndarray  # class names
    pred_xyxy: np.ndarray
    pred_cls: np.ndarray
    pred_conf: np.ndarray


@dataclass
class ClassFigures:
    name: str
    labels: int
    precision: float | None  # at the given threshold; None when nothing was predicted
    recall: float | None  # None when the split has no label of this class
    conf_for_precision: float | None  # lowest threshold with precision ≥ the goal; None = never reached
    recall_at_that: float | None
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (conf, precision, recall)


def read_yolo_labels(label: Path, names: dict[int, str], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    if label.exists():
        for line in label.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                rows.append((int(parts[0]), *map(float, parts[1:])))
    if not rows:
        return np.zeros((0, 4), np.float32), np.array([], dtype=object)
    a = np.array([r[1:] for r in rows], np.float32)
    xyxy = np.stack([(a[:, 0] - a[:, 2] / 2) * width, (a[:, 1] - a[:, 3] / 2) * height,
                     (a[:, 0] + a[:, 2] / 2) * width, (a[:, 1] + a[:, 3] / 2) * height], axis=1)
    return xyxy, np.array([names[r[0]] for r in rows], dtype=object)


def predictions_on_split(weights: Path, data_yaml: Path, imgsz: int, conf: float = 0.05, split: str = "val") -> list[ImageResult]:
    """Run `weights` (ultralytics) on every image of the split at a low confidence; labels beside."""
    import yaml
    from PIL import Image
    from ultralytics import YOLO

    spec = yaml.safe_load(data_yaml.read_text())
    root = Path(spec.get("path") or data_yaml.parent)
    names = {int(k): v for k, v in (spec["names"].items() if isinstance(spec["names"], dict) else enumerate(spec["names"]))}
    images = sorted(p for p in (root / spec[split]).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    model = YOLO(str(weights), task="detect")
    out = []
    for img in images:
        with Image.open(img) as im:
            w, h = im.size
        label = root / spec[split].replace("images", "labels") / (img.stem + ".txt")
        gt_xyxy, gt_cls = read_yolo_labels(label, names, w, h)
        r = model.predict(str(img), imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0]
        out.append(ImageResult(gt_xyxy, gt_cls, r.boxes.xyxy.numpy().astype(np.float32),
                               np.array([model.names[int(c)] for c in r.boxes.cls.tolist()], dtype=object),
                               r.boxes.conf.numpy().astype(np.float32)))
    return out


def _matches(res: ImageResult, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """(confidences of this class's predictions, whether each matched a label of the class)."""
    pm = res.pred_cls == cls
    conf = res.pred_conf[pm]
    hit = np.zeros(len(conf), dtype=bool)
    gm = res.gt_cls == cls
    if len(conf) and gm.any():
        iou = iou_matrix(res.pred_xyxy[pm], res.gt_xyxy[gm])
        used = np.zeros(iou.shape[1], dtype=bool)
        for i in np.argsort(-conf):
            cand = np.where(~used & (iou[i] >= MATCH_IOU), iou[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= MATCH_IOU:
                used[j] = True
                hit[i] = True
    return conf, hit


def class_figures(results: list[ImageResult], cls: str, conf: float, precision_goal: float = 0.95) -> ClassFigures:
    confs, hits = [], []
    for res in results:
        c, h = _matches(res, cls)
        confs.append(c)
        hits.append(h)
    conf_all = np.concatenate(confs) if confs else np.zeros(0, np.float32)
    hit_all = np.concatenate(hits) if hits else np.zeros(0, bool)
    n_labels = int(sum(int((r.gt_cls == cls).sum()) for r in results))

    def at(t: float) -> tuple[float | None, float | None]:
        keep = conf_all >= t
        tp = int(hit_all[keep].sum())
        p = tp / int(keep.sum()) if keep.any() else None
        r = tp / n_labels if n_labels else None
        return p, r

    p, r = at(conf)
    curve, best = [], None
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        pt, rt = at(float(t))
        if pt is None:
            continue
        curve.append((float(t), round(pt, 3), round(rt or 0.0, 3)))
        if best is None and pt >= precision_goal:
            best = (float(t), rt)
    return ClassFigures(cls, n_labels, None if p is None else round(p, 3), None if r is None else round(r, 3),
                        best[0] if best else None, None if best is None or best[1] is None else round(best[1], 3), curve)


def confusion(results: list[ImageResult], classes: list[str], conf: float) -> dict[str, dict[str, int]]:
    """rows: labelled class (+ background = predictions on nothing labelled); columns: what the model
    said (+ background = missed). A label counts once, for the prediction that overlaps it most."""
    table = {a: {b: 0 for b in [*classes, BACKGROUND]} for a in [*classes, BACKGROUND]}
    for res in results:
        keep = res.pred_conf >= conf
        pxy, pcls = res.pred_xyxy[keep], res.pred_cls[keep]
        iou = iou_matrix(res.gt_xyxy, pxy) if len(res.gt_xyxy) and len(pxy) else np.zeros((len(res.gt_xyxy), len(pxy)))
        for g, gcls in enumerate(res.gt_cls):
            j = int(np.argmax(iou[g])) if iou.shape[1] else -1
            said = pcls[j] if j >= 0 and iou[g, j] >= MATCH_IOU else BACKGROUND
            if gcls in table and said in table[gcls]:
                table[gcls][said] += 1
        on_label = (iou >= MATCH_IOU).any(axis=0) if iou.size else np.zeros(len(pxy), dtype=bool)
        for c in pcls[~on_label]:
            if c in table[BACKGROUND]:
                table[BACKGROUND][c] += 1
    return table
