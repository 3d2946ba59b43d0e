"""`citypatrol dataset export`: reviewer decisions in the case store → a training set.

What each decision becomes (the last decision by a person, `user:*`, in the period):

| decision (reject reason as the review center offers it) | detector (YOLO + COCO)          | verifier crop label                   |
|---------------------------------------------------------|---------------------------------|---------------------------------------|
| confirm                                                 | positive box                    | the category (a problem)              |
| reject 误报 / "False alarm: not a problem"               | hard negative (no box there)    | the category's "not a problem" class  |
| reject 合规 / "Compliant …" (or a reason naming e.g. 店内经营) | positive box (the object is real) | that "not a problem" class       |
| reject 画面不清 unclear, 不在管控区域 wrong place, merged, other | not used (counted as skipped)  | not used                              |

Box: the newest box a reviewer drew in the review center (`correct_box`), else the box the case
opened with (on the evidence the reviewer judged). Class: the detector class of the
case's final category (after any reclassification): the track class named at the start of the
case's detail line when it is a detector class ("truck stationary 320 s …" → truck), otherwise
`CATEGORY_CLASS` (illegal_parking → car, garbage_overflow → garbage_overflow, …).

Images come from the stored evidence, each checked against its sha256 in the store (a file that
differs is skipped and listed). The annotated frame has our drawing burned in, so it is never a
training image: the clean frame is taken from the case's clip (the clip frame whose box region
best matches the clean crop), else the clean crop itself with the box inside it. Cases whose clean
images are near-duplicates (same camera, 64-bit dHash within `DUP_BITS`) share one image with the
union of their boxes; near-duplicate verifier crops (same camera and label) are kept once.

Split: cases of one camera less than `window_s` (60 s) apart are chained into one group, and groups
joined by a near-duplicate image are merged; whole groups go to validation by a seeded hash. So the
same camera and minute (and any near-duplicate) never sits on both sides.

Pseudo-labels: an exported frame holds more than the decided object (the other cars in the lot).
Left unlabelled they would teach the model that they are background, so the detectors in use label
them (`pseudo_detector`, score ≥ `PSEUDO_MIN_SCORE`), except where a reviewer's box or a hard
negative already covers them; the manifest lists them apart (`pseudo_boxes`, `pseudo_labels`).
Detections it is less sure of (`UNSURE_MIN_SCORE` up to that) are greyed out in the exported
picture (`greyed_out`), so an unlabelled real object is not learnt as background either.

Out: `images/{train,val}`, `labels/{train,val}` (YOLO), `data.yaml`, `annotations/{train,val}.json`
(COCO), `crops/{train,val}/<label>/` (for `citypatrol verifier train`), and `manifest.json` (sources,
counts per class and split, date range, every image with its sha256 and the evidence it came from).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np
import yaml
from citypatrol.annotate.evidence import crop_bounds
from citypatrol.models.assets import sha256_file
from citypatrol.models.labelmaps import CITY, COCO, COCO_NAMES
from citypatrol.models.training.dataset import CITY_CLASSES
from citypatrol.models.verifier import NOT_A_PROBLEM, not_a_problem_label
from citypatrol.pipeline.boxes import box_iou
from citypatrol.pipeline.config.models import Category
from citypatrol.pipeline.store.records import CaseRecord, EvidenceKind
from citypatrol.pipeline.types import CaseStatus

log = logging.getLogger(__name__)

FORMAT = "citypatrol-export/1"
DUP_BITS = 6  # dHash bits: the same camera's frames this close are the same picture (re-encoded, a passer-by)
MATCH_MAX_DIFF = 12.0  # mean abs grey difference (0-255) where the crop sits for a clip frame to count as its frame
WINDOW_S = 60.0
PSEUDO_MIN_SCORE = 0.5  # detections this sure label the objects in an exported frame that no reviewer judged
UNSURE_MIN_SCORE = 0.25  # less sure ones (down to this) are greyed out: neither labelled nor background

CATEGORY_CLASS: dict[Category, str] = {
    Category.illegal_parking: "car",
    Category.nonmotor_parking: "bicycle",
    Category.street_vending: "stall",
    Category.garbage_overflow: "garbage_overflow",
    Category.exposed_garbage: "garbage_pile",
    Category.billboard: "billboard",
}
DETECTOR_CLASSES = frozenset(COCO.values()) | frozenset(CITY_CLASSES) | {"stall"}


# -- decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewerDecision:
    case_id: str
    action: str  # confirm | reject
    reason_kind: str  # confirm | not_problem | compliant | unclear | wrong_place | duplicate | other
    actor: str
    at: datetime
    reason: str


def reason_kind(reason: str, category: Category) -> str:
    """What a reject reason says, from the review center's fixed reasons (zh or en) or named classes."""
    r = reason.lower()
    if r.startswith("merged into"):
        return "duplicate"
    if "误报" in reason or "false alarm" in r or "not a problem" in r:
        return "not_problem"
    if "合规" in reason or "compliant" in r:
        return "compliant"
    if "不清" in reason or "unclear" in r:
        return "unclear"
    if "管控区域" in reason or "outside the controlled zone" in r or "wrong place" in r:
        return "wrong_place"
    names = NOT_A_PROBLEM.get(category, ())
    if any(zh in reason or label in r or label.replace("_", " ") in r for label, zh in names):
        return "compliant"
    return "other"


def reviewer_decision(record: CaseRecord) -> ReviewerDecision | None:
    """The last confirm/reject by a person: a transition to approved/rejected by `user:*`."""
    for t in reversed(record.case.history):
        if not t.actor.startswith("user:"):
            continue
        if t.to_status is CaseStatus.approved:
            return ReviewerDecision(record.case_id, "confirm", "confirm", t.actor, t.at, t.reason)
        if t.to_status is CaseStatus.rejected:
            return ReviewerDecision(record.case_id, "reject", reason_kind(t.reason, record.case.category), t.actor, t.at, t.reason)
    return None


def detector_class(record: CaseRecord) -> str:
    first = record.case.detail.split(" ", 1)[0].strip() if record.case.detail else ""
    return first if first in DETECTOR_CLASSES else CATEGORY_CLASS[record.case.category]


# -- images ---------------------------------------------------------------------------------------


def dhash_array(image: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of a BGR image (as `dataset.dhash` does for files)."""
    g = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return int(bin(a ^ b).count("1"))


def frame_from_clip(clip: Path, crop: np.ndarray, box: tuple[float, float, float, float],
                    frame_size: tuple[int, int] | None = None) -> tuple[np.ndarray, float] | None:
    """The clip frame that contains the clean crop, and the mean grey difference where it sits.

    The crop is found by template matching around the case's box (the stored box is the case's
    latest, a few pixels from where it was when the crop was cut); `frame_size` (w, h) of the
    original frame scales the crop to the clip, which may be smaller.
    """
    grey_crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    best: tuple[float, np.ndarray] | None = None
    try:
        with av.open(str(clip)) as c:
            for fr in c.decode(video=0):
                img = fr.to_ndarray(format="bgr24")
                h, w = img.shape[:2]
                scale = w / frame_size[0] if frame_size else 1.0
                tmpl = grey_crop if abs(scale - 1.0) < 1e-3 else cv2.resize(
                    grey_crop, (max(1, round(grey_crop.shape[1] * scale)), max(1, round(grey_crop.shape[0] * scale))),
                    interpolation=cv2.INTER_AREA)
                th, tw = tmpl.shape
                x1, y1, x2, y2 = crop_bounds(box, w, h)
                pad = max(th, tw) // 2 + 4
                sx1, sy1, sx2, sy2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
                search = cv2.cvtColor(img[sy1:sy2, sx1:sx2], cv2.COLOR_BGR2GRAY)
                if search.shape[0] < th or search.shape[1] < tw:
                    continue
                _, _, (mx, my), _ = cv2.minMaxLoc(cv2.matchTemplate(search, tmpl, cv2.TM_SQDIFF))  # least squared difference
                diff = float(np.abs(search[my : my + th, mx : mx + tw].astype(np.float32) - tmpl.astype(np.float32)).mean())
                if best is None or diff < best[0]:
                    best = (diff, img)
    except (av.FFmpegError, OSError) as exc:
        log.warning("%s: cannot decode the clip: %s", clip, exc)
        return None
    if best is None or best[0] > MATCH_MAX_DIFF:
        return None
    return best[1], best[0]


@dataclass
class DecidedCase:
    """One decided case with its clean image."""

    record: CaseRecord
    decision: ReviewerDecision
    cls: str
    image: np.ndarray  # clean frame, or the clean crop
    box: tuple[float, float, float, float]  # normalised in `image`
    crop: np.ndarray
    source: str  # clip | crop
    evidence: dict[str, str]  # evidence path -> sha256 used
    match_diff: float | None = None
    box_by_reviewer: bool = False
    dhash: int = 0
    crop_dhash: int = 0
    group: int = -1
    image_key: int = -1

    @property
    def camera(self) -> str:
        return self.record.case.camera_id


def _evidence(record: CaseRecord, kind: EvidenceKind) -> list:
    return [e for e in record.evidence if e.kind is kind]


def load_sample(record: CaseRecord, decision: ReviewerDecision, evidence_dir: Path, problems: Counter,
                opening_box: tuple[float, float, float, float] | None = None,
                reviewed_box: tuple[float, float, float, float] | None = None) -> DecidedCase | None:
    """The clean images of one case from its evidence (sha256-checked); None (with the reason counted) if unusable.

    The label box is the one a reviewer drew on the evidence frame, else the box the case opened
    with (drawn on its evidence, which the reviewer judged), else the case's latest box. The clean
    frame is found by the pipeline's box, where the evidence crop was cut.
    """
    crops = sorted(_evidence(record, EvidenceKind.crop), key=lambda e: (Path(e.path).name != "frame_crop.jpg", e.path))
    if not crops:
        problems["no crop evidence"] += 1
        return None
    used: dict[str, str] = {}

    def checked(e) -> Path | None:  # noqa: ANN001
        p = evidence_dir / e.path
        if not p.is_file():
            problems["evidence file missing"] += 1
            return None
        if sha256_file(p) != e.sha256:
            problems["evidence sha256 differs from the store"] += 1
            log.warning("case %s: %s does not match its sha256 in the store; skipped", record.case_id, e.path)
            return None
        used[e.path] = e.sha256
        return p

    crop_path = checked(crops[0])
    if crop_path is None:
        return None
    crop = cv2.imread(str(crop_path))
    if crop is None:
        problems["crop unreadable"] += 1
        return None
    box = opening_box or record.case.box
    label = reviewed_box or box
    cls = detector_class(record)
    stem = Path(crops[0].path).name.removesuffix("_crop.jpg")
    frames = [e for e in _evidence(record, EvidenceKind.frame) if Path(e.path).name == f"{stem}.jpg"]
    frame_path = checked(frames[0]) if frames else None
    # only its size: the annotated frame is never a training image
    size = cv2.imread(str(frame_path)).shape[1::-1] if frame_path is not None else None
    clips = _evidence(record, EvidenceKind.clip)
    if clips and stem == "frame" and (clip_path := checked(clips[0])) is not None:
        found = frame_from_clip(clip_path, crop, box, size)
        if found is not None:
            used.pop(frames[0].path, None) if frames else None
            return DecidedCase(record, decision, cls, found[0], label, crop, "clip", used, round(found[1], 2), reviewed_box is not None)
        used.pop(clips[0].path, None)
    if size is None:
        problems["no clean frame and no frame size for the crop"] += 1
        return None
    w, h = size
    x1, y1, x2, y2 = crop_bounds(box, w, h)
    ch, cw = crop.shape[:2]
    bx = ((label[0] * w - x1) / cw, (label[1] * h - y1) / ch, (label[2] * w - x1) / cw, (label[3] * h - y1) / ch)
    bx = tuple(min(max(v, 0.0), 1.0) for v in bx)  # a reviewer's box reaching past the crop is cut at its edge
    return DecidedCase(record, decision, cls, crop, bx, crop, "crop", used, box_by_reviewer=reviewed_box is not None)  # type: ignore[arg-type]


# -- grouping and split ---------------------------------------------------------------------------


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_and_split(cameras: list[str], times: list[datetime], dhashes: list[int], *, window_s: float = WINDOW_S,
                    dup_bits: int = DUP_BITS, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int], list[str]]:
    """Image clusters, split groups and the split of each item.

    `image clusters`: same camera and dHash within `dup_bits` (one picture). `groups`: clusters plus
    same-camera items less than `window_s` apart (chained). Whole groups go to 'val' when a seeded
    hash of the group's first item falls under `val_fraction`; with two or more groups neither side
    is left empty.
    """
    n = len(cameras)
    images = _UnionFind(n)
    for i in range(n):
        for j in range(i + 1, n):
            if cameras[i] == cameras[j] and hamming(dhashes[i], dhashes[j]) <= dup_bits:
                images.union(i, j)
    groups = _UnionFind(n)
    for i in range(n):
        groups.union(i, images.find(i))
    by_cam: dict[str, list[int]] = defaultdict(list)
    for i, cam in enumerate(cameras):
        by_cam[cam].append(i)
    for idx in by_cam.values():
        idx.sort(key=lambda i: times[i])
        for a, b in zip(idx, idx[1:]):
            if (times[b] - times[a]).total_seconds() < window_s:
                groups.union(a, b)
    image_of = [images.find(i) for i in range(n)]
    group_of = [groups.find(i) for i in range(n)]
    roots = sorted(set(group_of), key=lambda g: (times[g], cameras[g]))

    def to_val(g: int) -> bool:
        key = f"{seed}:{cameras[g]}:{times[g].isoformat()}"
        return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64 < val_fraction

    val = {g for g in roots if to_val(g)}
    if len(roots) >= 2 and val_fraction > 0:
        if not val:
            val.add(roots[-1])  # the latest group: validation looks forward in time
        if len(val) == len(roots):
            val.discard(roots[0])
    split = ["val" if group_of[i] in val else "train" for i in range(n)]
    return image_of, group_of, split


# -- the export -----------------------------------------------------------------------------------


def pseudo_labels(detector, image: np.ndarray, names: list[str], to_label: dict[str, str],  # noqa: ANN001
                  min_score: float) -> tuple[list[tuple[str, tuple[float, float, float, float]]], list[tuple[float, float, float, float]]]:
    """The detector's boxes of the dataset's classes on `image`, normalised: (label, box) at
    `min_score` or more, and the unsure ones (`UNSURE_MIN_SCORE` up to it) to grey out."""
    dets = detector.detect([image])[0]
    w, h = dets.image_size
    sure, unsure = [], []
    for (x1, y1, x2, y2), score, name in zip(dets.xyxy, dets.confidence, dets.class_name):
        label = to_label.get(str(name), str(name))
        box = (float(x1) / w, float(y1) / h, float(x2) / w, float(y2) / h)
        if label in names and score >= min_score:
            sure.append((label, box))
        elif label in names and score >= UNSURE_MIN_SCORE:
            unsure.append(box)
    return sure, unsure


def grey_out(image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """`image` with each box filled with its mean grey: neither an object nor background to learn."""
    if not boxes:
        return image
    out = image.copy()
    h, w = out.shape[:2]
    for x1, y1, x2, y2 in boxes:
        a, b, c, d = int(x1 * w), int(y1 * h), int(np.ceil(x2 * w)), int(np.ceil(y2 * h))
        if c > a and d > b:
            out[b:d, a:c] = int(out[b:d, a:c].mean())
    return out


def class_names(classes: list[str] | None, positives: list[str]) -> tuple[list[str], dict[str, str]]:
    """The dataset's class names in id order, and canonical class → dataset label where they differ.

    `["coco"]`: the 80 COCO labels in COCO order, so fine-tuning the COCO detector keeps its whole
    head (and every class it had); canonical names map back to COCO's (table → dining table).
    `["city"]`: the city model's classes. A list: those names. None: the positives' classes.
    """
    if classes == ["coco"]:
        return list(COCO_NAMES), {canon: label for label, canon in COCO.items()}
    if classes == ["city"]:
        return list(CITY_CLASSES), {canon: label for label, canon in CITY.items() if canon != label}
    return (list(classes) if classes else positives), {}



@dataclass
class ExportResult:
    out: Path
    data_yaml: Path
    manifest: Path
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how: the decision period, the classes, the split, the pseudo-labels."""

    since: datetime | None = None  # decisions in [since, until)
    until: datetime | None = None
    classes: list[str] | None = None  # None: the classes of the decided cases; ["coco"]: the COCO names
    val_fraction: float = 0.2
    seed: int = 0
    window_s: float = WINDOW_S  # cases of one camera closer than this share a split group
    pseudo_detector: object | None = None  # a `MultiDetector` (e.g. the models in use) that labels what no reviewer judged
    pseudo_min_score: float = PSEUDO_MIN_SCORE


@dataclass(frozen=True)
class StoredCases:
    """What the case store holds for an export: the cases, their evidence and the boxes drawn on it."""

    records: list[CaseRecord]
    evidence_dir: Path
    source: str = ""  # the database, redacted, for the manifest
    opening_boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    reviewed_boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


@dataclass
class _Picked:
    samples: list[DecidedCase]
    decisions: Counter[str]
    skipped: Counter[str]
    problems: Counter[str]


@dataclass
class _DetectorSet:
    images: list[dict]
    boxes: dict[str, Counter[str]]
    n_images: Counter[str]
    negatives: Counter[str]
    pseudo: Counter[str]
    conflicts: int = 0
    not_in_classes: int = 0
    dup_images: int = 0


@dataclass
class _CropSet:
    crops: list[dict]
    counts: dict[str, Counter[str]]
    dup_crops: int = 0


def export_dataset(cases: StoredCases, out: Path, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Write the export for these stored cases (see the module doc), in steps: pick the decided
    cases and their clean images, split them by groups, write the detector set (YOLO + COCO), the
    verifier crops, and the manifest."""
    out = Path(out)
    picked = _pick_decided(cases, options)
    split = _split(picked.samples, options)
    positives = sorted({s.cls for s in picked.samples if s.decision.reason_kind in ("confirm", "compliant")})
    names, to_label = class_names(options.classes, positives)
    detector_set = _write_detector_set(picked.samples, split, names, to_label, out, options)
    crop_set = _write_verifier_crops(picked.samples, split, out)
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(out.resolve()), "train": "images/train", "val": "images/val",
                                         "nc": len(names), "names": dict(enumerate(names))}, sort_keys=False, allow_unicode=True))
    counts = {
        part: {"images": detector_set.n_images[part], "boxes": dict(detector_set.boxes[part]),
               "hard_negative_images": detector_set.negatives[part], "verifier_crops": dict(crop_set.counts[part])}
        for part in ("train", "val")
    }
    manifest_path = out / "manifest.json"
    manifest = _manifest(cases, options, picked, names, counts, detector_set, crop_set)
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    log.info("export at %s: %s", out, counts)
    return ExportResult(out, data_yaml, manifest_path, counts)


def _pick_decided(cases: StoredCases, options: ExportOptions) -> _Picked:
    """The cases a person decided in the period with a usable decision, each with its clean image."""
    evidence_dir = Path(cases.evidence_dir)
    picked = _Picked([], Counter(), Counter(), Counter())
    for r in sorted(cases.records, key=lambda r: (r.case.opened_at, r.case_id)):
        d = reviewer_decision(r)
        if d is None:
            continue
        if (options.since and d.at < options.since) or (options.until and d.at >= options.until):
            continue
        picked.decisions[d.action] += 1
        if d.reason_kind not in ("confirm", "not_problem", "compliant"):
            picked.skipped[f"reject: {d.reason_kind}"] += 1
            continue
        if r.case.category not in NOT_A_PROBLEM:  # a city's configured category: no detector class or verifier label of ours
            picked.skipped[f"configured category {r.case.category}"] += 1
            continue
        s = load_sample(r, d, evidence_dir, picked.problems, cases.opening_boxes.get(r.case_id), cases.reviewed_boxes.get(r.case_id))
        if s is None:
            picked.skipped["evidence unusable"] += 1
            continue
        s.dhash, s.crop_dhash = dhash_array(s.image), dhash_array(s.crop)
        picked.samples.append(s)
    return picked


def _split(samples: list[DecidedCase], options: ExportOptions) -> list[str]:
    """Each sample's split ("train" | "val"); sets its near-duplicate image key and group."""
    image_of, group_of, split = group_and_split(
        [s.camera for s in samples], [s.record.case.opened_at for s in samples], [s.dhash for s in samples],
        window_s=options.window_s, val_fraction=options.val_fraction, seed=options.seed)
    for s, img, grp in zip(samples, image_of, group_of):
        s.image_key, s.group = img, grp
    return split


def _write_detector_set(samples: list[DecidedCase], split: list[str], names: list[str], to_label: dict[str, str],
                        out: Path, options: ExportOptions) -> _DetectorSet:
    """images/ and labels/ (YOLO) and annotations/ (COCO): one image per near-duplicate cluster, the
    earliest case's picture with the union of the cluster's boxes (and pseudo-labels)."""
    for sub in ("images", "labels", "crops", "annotations"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for part in ("train", "val"):
        (out / "images" / part).mkdir(parents=True, exist_ok=True)
        (out / "labels" / part).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    pseudo_detector = options.pseudo_detector

    clusters: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        clusters[s.image_key].append(i)
    done = _DetectorSet([], {"train": Counter(), "val": Counter()}, Counter(), Counter(), Counter())
    coco = {p: {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}
            for p in ("train", "val")}
    for key in sorted(clusters):
        members = [samples[i] for i in clusters[key]]
        first = members[0]
        part = split[clusters[key][0]]
        done.dup_images += len(members) - 1
        pos = [(m.cls, m.box, m) for m in members if m.decision.reason_kind in ("confirm", "compliant")]
        neg = [(m.cls, m.box, m) for m in members if m.decision.reason_kind == "not_problem"]
        labels: list[tuple[str, tuple]] = []
        for cls, box, m in pos:
            cls = to_label.get(cls, cls)
            if cls not in names:
                done.not_in_classes += 1
                continue
            if any(c == cls and box_iou(box, b) > 0.7 for c, b in labels):
                continue  # the same object decided twice (e.g. a reopened case)
            if any(to_label.get(c, c) == cls and box_iou(box, b) > 0.5 for c, b, _ in neg):
                done.conflicts += 1
                continue  # confirmed in one case, called a false alarm in another: leave it out
            labels.append((cls, box))
        if not labels and not neg:
            continue
        judged = len(labels)
        picture, masked = first.image, []
        if pseudo_detector is not None and first.source == "clip":  # a whole frame: other objects are in it too
            sure, unsure = pseudo_labels(pseudo_detector, first.image, names, to_label, options.pseudo_min_score)
            decided_boxes = [b for _, b in labels] + [b for _, b, _ in neg]
            for cls, box in sure:
                if not any(box_iou(box, b) > 0.3 for b in decided_boxes):  # else a reviewer said what is there
                    labels.append((cls, box))
                    done.pseudo[cls] += 1
            masked = [b for b in unsure if not any(box_iou(b, d) > 0.1 for d in decided_boxes + [x for _, x in labels])]
            picture = grey_out(first.image, masked)
        if not labels:
            done.negatives[part] += 1
        # boxes were normalised in each member's own image; members share the first's picture
        name = f"{first.record.case_id}.jpg".replace("/", "_")
        img_path = out / "images" / part / name
        cv2.imwrite(str(img_path), picture, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines = []
        h, w = first.image.shape[:2]
        image_id = len(coco[part]["images"]) + 1
        coco[part]["images"].append({"id": image_id, "file_name": f"images/{part}/{name}", "width": w, "height": h})
        for cls, (x1, y1, x2, y2) in labels:
            cid = names.index(cls)
            lines.append(f"{cid} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
            bw, bh = (x2 - x1) * w, (y2 - y1) * h
            coco[part]["annotations"].append({
                "id": len(coco[part]["annotations"]) + 1, "image_id": image_id, "category_id": cid,
                "bbox": [round(x1 * w, 2), round(y1 * h, 2), round(bw, 2), round(bh, 2)], "area": round(bw * bh, 2), "iscrowd": 0})
            done.boxes[part][cls] += 1
        (out / "labels" / part / f"{Path(name).stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        done.n_images[part] += 1
        done.images.append({
            "file": f"images/{part}/{name}", "sha256": sha256_file(img_path), "split": part, "group": first.group,
            "camera": first.camera, "opened_at": first.record.case.opened_at.isoformat(), "source": first.source,
            "match_diff": first.match_diff, "boxes": [c for c, _ in labels[:judged]], "pseudo_boxes": [c for c, _ in labels[judged:]],
            "greyed_out": [[round(v, 4) for v in b] for b in masked],
            "hard_negative_boxes": [c for c, _, _ in neg],
            "cases": [{"case_id": m.record.case_id, "decision": m.decision.action, "reason": m.decision.reason_kind,
                       "by": m.decision.actor, "at": m.decision.at.isoformat(), "category": m.record.case.category.value,
                       "model": m.record.case.model, "box_by_reviewer": m.box_by_reviewer, "evidence": m.evidence} for m in members],
        })
    for part in ("train", "val"):
        (out / "annotations" / f"{part}.json").write_text(json.dumps(coco[part], ensure_ascii=False))
    return done


def _write_verifier_crops(samples: list[DecidedCase], split: list[str], out: Path) -> _CropSet:
    """crops/<split>/<label>/: one crop per case, near-duplicates (same camera and label) kept once."""
    done = _CropSet([], {"train": Counter(), "val": Counter()})
    kept: list[tuple[str, str, int]] = []
    for i, s in enumerate(samples):
        label = s.record.case.category.value if s.decision.action == "confirm" else \
            not_a_problem_label(s.record.case.category, s.decision.reason)
        if any(cam == s.camera and lab == label and hamming(h, s.crop_dhash) <= DUP_BITS for cam, lab, h in kept):
            done.dup_crops += 1
            continue
        kept.append((s.camera, label, s.crop_dhash))
        part = split[i]
        d = out / "crops" / part / label
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{s.record.case_id}.jpg".replace("/", "_")
        cv2.imwrite(str(p), s.crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        done.counts[part][label] += 1
        done.crops.append({"file": p.relative_to(out).as_posix(), "sha256": sha256_file(p), "label": label, "split": part,
                           "case_id": s.record.case_id, "camera": s.camera, "group": s.group})
    return done


def _manifest(cases: StoredCases, options: ExportOptions, picked: _Picked, names: list[str], counts: dict,
              detector_set: _DetectorSet, crop_set: _CropSet) -> dict:
    samples = picked.samples
    times = [s.decision.at for s in samples]
    opened = [s.record.case.opened_at for s in samples]
    since, until = options.since, options.until
    return {
        "format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"database": cases.source, "evidence_dir": str(Path(cases.evidence_dir).resolve()),
                   "since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
        "decisions": {"confirm": picked.decisions["confirm"], "reject": picked.decisions["reject"], "used": len(samples),
                      "skipped": dict(picked.skipped), "evidence_problems": dict(picked.problems)},
        "date_range": {"decided_first": min(times).isoformat() if times else None, "decided_last": max(times).isoformat() if times else None,
                       "opened_first": min(opened).isoformat() if opened else None, "opened_last": max(opened).isoformat() if opened else None},
        "cameras": dict(Counter(s.camera for s in samples)),
        "classes": names, "class_rule": "detail's track class, else CATEGORY_CLASS of the final category",
        "split": {"rule": f"same camera within {options.window_s:g} s, or near-duplicate images, share a group; groups by seeded hash",
                  "val_fraction": options.val_fraction, "seed": options.seed, "window_s": options.window_s, "dup_bits": DUP_BITS},
        "counts": counts,
        "duplicates": {"images_merged": detector_set.dup_images, "crops_dropped": crop_set.dup_crops,
                       "conflicting_boxes_dropped": detector_set.conflicts, "boxes_not_in_classes": detector_set.not_in_classes},
        "pseudo_labels": {"model": getattr(options.pseudo_detector, "version", None), "min_score": options.pseudo_min_score,
                          "boxes": dict(detector_set.pseudo)} if options.pseudo_detector is not None else None,
        "images": detector_set.images, "crops": crop_set.crops,
    }


def export_from_store(db_url: str, evidence_dir: Path, out: Path, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Open the store at `db_url`, read every case decided before `options.until`, export (see `export_dataset`)."""
    from citypatrol.pipeline.store.case_store import open_store
    from citypatrol.pipeline.store.engine import redact

    with open_store(db_url) as store:
        until = options.until
        records = []
        offset = 0
        while True:  # decided cases were opened before `until`; page through them
            page = store.list_cases(until=until, limit=1000, offset=offset)
            records += page
            if len(page) < 1000:
                break
            offset += 1000
        opening, reviewed = opening_boxes(store.engine), reviewed_boxes(store.engine)
    cases = StoredCases(records, Path(evidence_dir), redact(db_url), opening, reviewed)
    return export_dataset(cases, out, options)


def opening_boxes(engine) -> dict[str, tuple[float, float, float, float]]:  # noqa: ANN001
    """Each case's first sighting box: where the problem was when the case opened and its evidence was cut."""
    from sqlalchemy import text

    out: dict[str, tuple[float, float, float, float]] = {}
    with engine.connect() as conn:
        for case_id, x1, y1, x2, y2 in conn.execute(text(
                "SELECT case_id, x1, y1, x2, y2 FROM case_sightings ORDER BY case_id, pts, id")):
            out.setdefault(case_id, (float(x1), float(y1), float(x2), float(y2)))
    return out


def reviewed_boxes(engine) -> dict[str, tuple[float, float, float, float]]:  # noqa: ANN001
    """Each case's newest box drawn by a signed-in reviewer (audit action `correct_box`) on the frame
    the case opened with (the export's picture); a box drawn on a reopening's frame is not used."""
    from sqlalchemy import select

    from citypatrol.pipeline.store.review_schema import AuditRow

    out: dict[str, tuple[float, float, float, float]] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(AuditRow.case_id, AuditRow.detail)
                            .where(AuditRow.action == "correct_box", AuditRow.actor.like("user:%")).order_by(AuditRow.id))
        for case_id, detail in rows:
            box, drawn_on = (detail or {}).get("to"), (detail or {}).get("evidence")
            if drawn_on is not None and Path(drawn_on).name != "frame.jpg":
                continue
            if case_id and isinstance(box, list) and len(box) == 4:
                out[case_id] = tuple(float(v) for v in box)  # type: ignore[assignment]
    return out
