"""The second-stage check: a small classifier on a case's crop that says "a problem" or "not a problem".

The detector finds a bin; whether it overflows, or whether a billboard is an approved ad, is a finer
question that reviewers answer every day. Their decisions train this classifier (`citypatrol
verifier train` on a `citypatrol dataset export`), and the review policy uses its score as
`check_score` (`review.*.min_check_score`): a case the verifier doubts is held for a reviewer
instead of being auto-submitted.

Classes: per category, the problem itself (label = the category, e.g. `garbage_overflow`) and one
or more explicit "not a problem" classes (`NOT_A_PROBLEM`: 合规广告 approved ad, 垃圾桶未满溢 bin not
overflowing, 店内经营 in-shop business, 废弃摊位 abandoned stall, …). One multinomial logistic
regression over every label it was trained with; a case's check score is the probability of its
category's problem label against that category's labels only, so an unrelated class never dilutes it.
A category without both kinds of label in the model gets no score (None: the policy holds).

Features (measured on the garbage_cn bin/overflow crops, held-out groups of the city split, 2 cores):
  * `hog-colour`: a 64×64 gradient-orientation histogram (8×8 cells × 9 bins) + an HSV histogram
    (8×4×4): 704 numbers, ~1 ms a crop, nothing to load;
  * `hog-colour+backbone` (default): the above + the COCO yolo11n's pooled 256-channel features at
    160 px (`YOLO.embed`), ~10 ms a crop on CPU; the backbone's sha256 is recorded with the model.
No scikit-learn: the classifier is 40 lines of numpy (full-batch gradient descent on the
standardised features, L2, balanced class weights), deterministic, and saved as one small .npz.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from citypatrol.models.assets import sha256_file
from citypatrol.pipeline.config.models import Category

log = logging.getLogger(__name__)

FEATURES = ("hog-colour", "hog-colour+backbone")
BACKBONE = "models/yolo11n_coco_recovered.pt"  # relative to the asset mirror
BACKBONE_IMGSZ = 160

# Explicit "not a problem" classes per category: (label, 中文 name). The first is what a plain
# "false alarm" / "compliant" rejection of that category becomes; a rejection whose reason names
# another (e.g. "其他: 店内经营") becomes that one.
NOT_A_PROBLEM: dict[Category, tuple[tuple[str, str], ...]] = {
    Category.billboard: (("approved_ad", "合规广告"),),
    Category.garbage_overflow: (("bin_not_full", "垃圾桶未满溢"),),
    Category.street_vending: (("in_shop_business", "店内经营"), ("abandoned_stall", "废弃摊位")),
    Category.illegal_parking: (("allowed_parking", "合规停放"),),
    Category.nonmotor_parking: (("allowed_nonmotor_parking", "非机动车合规停放"),),
    Category.exposed_garbage: (("not_garbage", "非暴露垃圾"),),
}


def label_category(label: str) -> tuple[Category, bool] | None:
    """(category, is_problem) of a verifier label; None for a label citypatrol does not know."""
    if label in Category.__members__:
        return Category(label), True
    for cat, names in NOT_A_PROBLEM.items():
        if any(label == n for n, _ in names):
            return cat, False
    return None


def not_a_problem_label(category: Category, reason: str = "") -> str:
    """The "not a problem" label for a rejection of `category`, from its reason text where it names one."""
    names = NOT_A_PROBLEM[Category(category)]
    text = reason.lower()
    for label, zh in names:
        if zh in reason or label.replace("_", " ") in text or label in text:
            return label
    return names[0][0]


# -- features -------------------------------------------------------------------------------------


def hog_colour(crop: np.ndarray) -> np.ndarray:
    """704 numbers: 8×8 cells × 9 unsigned gradient orientations (per-cell L2) + an 8×4×4 HSV histogram."""
    g = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(g, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=1)
    mag = np.hypot(gx, gy)
    bins = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * 9).astype(int), 8)
    hog = np.stack([(mag * (bins == k)).reshape(8, 8, 8, 8).sum(axis=(1, 3)) for k in range(9)], axis=2)
    hog /= np.linalg.norm(hog, axis=2, keepdims=True) + 1e-3
    hsv = cv2.cvtColor(g, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return np.concatenate([hog.ravel(), hist / (hist.sum() + 1e-6)]).astype(np.float32)


def backbone_path() -> Path:
    from citypatrol.models.training.dataset import asset_mirror

    p = asset_mirror() / BACKBONE
    if not p.is_file():
        raise FileNotFoundError(f"verifier backbone {BACKBONE} not found under {asset_mirror()}; set CITYPATROL_ASSET_MIRROR")
    return p


_BACKBONES: dict[str, object] = {}


def _backbone(path: Path):
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    key = str(path)
    if key not in _BACKBONES:
        _BACKBONES[key] = YOLO(key, task="detect")
    return _BACKBONES[key]


def features(crops: Sequence[np.ndarray], kind: str = "hog-colour+backbone", backbone: Path | None = None) -> np.ndarray:
    """One feature row per BGR crop."""
    if kind not in FEATURES:
        raise ValueError(f"unknown verifier features {kind!r}; known: {', '.join(FEATURES)}")
    if not crops:
        return np.zeros((0, 0), np.float32)
    rows = np.stack([hog_colour(c) for c in crops])
    if kind == "hog-colour":
        return rows
    model = _backbone(backbone or backbone_path())
    emb: list[np.ndarray] = []
    for i in range(0, len(crops), 32):
        out = model.embed(list(crops[i : i + 32]), imgsz=BACKBONE_IMGSZ, verbose=False, device="cpu")
        emb += [o.detach().cpu().numpy().astype(np.float32).ravel() for o in out]
    return np.hstack([rows, np.stack(emb)])


# -- the classifier -------------------------------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-2, iters: int = 500,
                lr: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised features; balanced class weights. Returns mu, sd, W, b."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weight = (len(y) / (n_classes * np.maximum(counts, 1)))[y][:, None]
    onehot = np.eye(n_classes)[y]
    w = np.zeros((z.shape[1], n_classes))
    b = np.zeros(n_classes)
    norm = weight.sum()
    for _ in range(iters):
        g = weight * (_softmax(z @ w + b) - onehot) / norm
        w -= lr * (z.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    return mu.astype(np.float32), sd.astype(np.float32), w.astype(np.float32), b.astype(np.float32)


@dataclass
class CropVerifier:
    """A trained second-stage check. `score(category, crops)` → check scores in 0..1 (or None)."""

    labels: list[str]
    feature_kind: str
    mu: np.ndarray
    sd: np.ndarray
    w: np.ndarray
    b: np.ndarray
    meta: dict = field(default_factory=dict)

    def proba(self, x: np.ndarray) -> np.ndarray:
        return _softmax(((x - self.mu) / self.sd) @ self.w + self.b)

    def checks(self, category: Category) -> bool:
        """True when the model has both the problem and a "not a problem" label of this category
        (never for a configured category: the verifier is trained on the built-in ones)."""
        if category not in Category._value2member_map_:
            return False
        kinds = {label_category(lab) for lab in self.labels}
        return (Category(category), True) in kinds and (Category(category), False) in kinds

    def score_features(self, category: Category, x: np.ndarray) -> np.ndarray | None:
        if not self.checks(category):
            return None
        p = self.proba(x)
        idx = [i for i, lab in enumerate(self.labels) if (lc := label_category(lab)) and lc[0] == Category(category)]
        problem = [i for i in idx if self.labels[i] == Category(category).value]
        return p[:, problem].sum(axis=1) / np.maximum(p[:, idx].sum(axis=1), 1e-9)

    def score(self, category: Category, crops: Sequence[np.ndarray]) -> np.ndarray | None:
        if not self.checks(category) or not crops:
            return None
        return self.score_features(category, features(crops, self.feature_kind, self._backbone()))

    def check(self, case, frame: np.ndarray) -> float | None:  # noqa: ANN001  (a pipeline Case)
        """The check score of a case on the frame it opened on (its box cut out as the evidence crop is)."""
        from citypatrol.annotate.evidence import crop_box

        scores = self.score(case.category, [crop_box(frame, case.box)])
        return None if scores is None else float(scores[0])

    def _backbone(self) -> Path | None:
        if self.feature_kind != "hog-colour+backbone":
            return None
        path = backbone_path()
        want = self.meta.get("backbone_sha256")
        if want and _sha256(path) != want:
            raise ValueError(f"verifier was trained on backbone sha256 {want[:12]}…, {path} differs")
        return path

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "labels": self.labels, "features": self.feature_kind}
        tmp = path.with_name(f".{path.name}.part.npz")
        np.savez_compressed(tmp, mu=self.mu, sd=self.sd, w=self.w, b=self.b, meta=np.array(json.dumps(meta, ensure_ascii=False)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> CropVerifier:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(list(meta["labels"]), meta["features"], z["mu"], z["sd"], z["w"], z["b"], meta)


_SHA: dict[tuple[str, float], str] = {}


def _sha256(path: Path) -> str:
    key = (str(path), path.stat().st_mtime)
    if key not in _SHA:
        _SHA[key] = sha256_file(path)
    return _SHA[key]


def train_verifier(crops: Sequence[np.ndarray], labels: Sequence[str], *, feature_kind: str = "hog-colour+backbone",
                   l2: float = 1e-2, iters: int = 500, meta: dict | None = None) -> CropVerifier:
    """Fit on crops with their labels (categories and NOT_A_PROBLEM names)."""
    unknown = sorted({lab for lab in labels if label_category(lab) is None})
    if unknown:
        raise ValueError(f"unknown verifier labels {unknown}; a label is a category or one of NOT_A_PROBLEM")
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError(f"the verifier needs at least two labels to tell apart, got {names}")
    x = features(crops, feature_kind)
    y = np.array([names.index(lab) for lab in labels])
    mu, sd, w, b = fit_softmax(x, y, len(names), l2=l2, iters=iters)
    info = {"trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "l2": l2, "iters": iters,
            "train_counts": dict(Counter(labels)), **(meta or {})}
    if feature_kind == "hog-colour+backbone":
        info.update(backbone=BACKBONE, backbone_sha256=_sha256(backbone_path()), backbone_imgsz=BACKBONE_IMGSZ)
    return CropVerifier(names, feature_kind, mu, sd, w, b, info)


# -- measuring it ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """What the check does to one category's cases at one threshold on a held-out set."""

    category: str
    threshold: float
    true_cases: int  # held-out crops of real problems
    false_cases: int  # held-out crops of "not a problem"
    false_removed: int  # false cases scoring below the threshold (held for a reviewer instead of auto-submitted)
    true_lost: int  # real problems scoring below it

    @property
    def removed_share(self) -> float | None:
        return self.false_removed / self.false_cases if self.false_cases else None

    @property
    def lost_share(self) -> float | None:
        return self.true_lost / self.true_cases if self.true_cases else None

    def as_dict(self) -> dict:
        return {"category": self.category, "threshold": round(self.threshold, 4), "true_cases": self.true_cases,
                "false_cases": self.false_cases, "false_removed": self.false_removed, "true_lost": self.true_lost,
                "removed_share": _r(self.removed_share), "lost_share": _r(self.lost_share)}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def measure(verifier: CropVerifier, crops: Sequence[np.ndarray], labels: Sequence[str], thresholds: Sequence[float] = (0.5,),
            *, max_loss: float | None = 0.05, x: np.ndarray | None = None) -> list[CheckResult]:
    """Per category and threshold: false cases removed and true cases lost on held-out labelled crops.

    With `max_loss`, one more row per category at the highest threshold that loses at most that
    share of the true cases (the operating point to put in `min_check_score`).
    """
    x = features(crops, verifier.feature_kind, verifier._backbone()) if x is None else x
    labels = list(labels)
    out: list[CheckResult] = []
    for cat in sorted({lc[0] for lab in labels if (lc := label_category(lab))}, key=str):
        rows = [i for i, lab in enumerate(labels) if label_category(lab)[0] == cat]
        s = verifier.score_features(cat, x[rows])
        if s is None:
            continue
        real = np.array([label_category(labels[i])[1] for i in rows])
        ts = list(thresholds)
        if max_loss is not None and real.any():
            ts.append(threshold_for_loss(s[real], max_loss))
        for t in ts:
            out.append(CheckResult(cat.value, float(t), int(real.sum()), int((~real).sum()),
                                   int(((s < t) & ~real).sum()), int(((s < t) & real).sum())))
    return out


def threshold_for_loss(true_scores: np.ndarray, max_loss: float) -> float:
    """The highest threshold below which at most `max_loss` of these true-case scores fall."""
    s = np.sort(np.asarray(true_scores, dtype=np.float64))
    k = int(np.floor(max_loss * len(s)))  # this many may fall below
    return float(s[k]) if k < len(s) else 1.0


CheckFn = Callable[..., float | None]
