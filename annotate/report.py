"""The HTML report of a batch run, for a supervisor, and `cases.json` beside it.

`render_report` writes one self-contained folder: `report.html`, `timeline.png` and thumbnails
of the evidence images, linking to the evidence files (already in that folder) by relative path,
so the folder can be zipped, mailed or opened from a share with nothing fetched from the internet.
Inputs are plain records (`ReportCase`, `ReportSummary`, or dicts with the same keys) that the
runner builds from the store; this module never reads the store itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import jinja2

from citypatrol.annotate.fonts import cjk_font_path
from citypatrol.annotate.labels import LABELS, category_label
from citypatrol.annotate.timeline import plot_timeline
from citypatrol.annotate.files import write_atomic

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
THUMB_WIDTH = 480


@dataclass(frozen=True, slots=True)
class ReportCase:
    """One case as the report shows it. Evidence paths are relative to the report folder."""

    case_id: str
    category: str  # Category value, e.g. "illegal_parking"
    category_zh: str  # e.g. "机动车乱停放"
    code: str  # the city's event code, e.g. "0505"
    camera_id: str
    camera_name: str
    address: str
    grid_code: str
    opened_at: datetime
    last_seen_at: datetime
    opened_pts: float  # stream seconds
    score: float
    status: str
    detail: str = ""
    image: str | None = None  # annotated full frame
    crop: str | None = None
    clip: str | None = None
    last_seen_pts: float | None = None  # stream seconds; draws the case as a span on the timeline
    code_name: str = ""  # the platform's name for the code when it differs, e.g. "无照经营游商"
    plate: str = ""  # parking: "皖A12345 (0.97)" or "unread: why"; "" = not read

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReportCase":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"case {data.get('case_id', '?')}: unknown keys {unknown}")
        values = dict(data)
        for key in ("opened_at", "last_seen_at"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What was analysed: shown in the report's header."""

    site: str
    model: str
    footage: tuple[str, ...] = ()  # files or streams analysed (names, not full paths with secrets)
    footage_seconds: float = 0.0  # stream time analysed, all cameras together
    span_start: datetime | None = None  # wall-clock span the footage covers
    span_end: datetime | None = None
    generated_at: datetime | None = None
    timezone: str = ""  # IANA name; times are shown in it (the site's time zone)
    cameras: Mapping[str, str] = field(default_factory=dict)  # camera id → name, so cameras without cases are listed
    title: str = "citypatrol 巡查报告 · inspection report"


def write_cases_json(cases: Iterable[ReportCase | Mapping[str, Any]], path: str | Path) -> Path:
    """Write the cases as a JSON list (UTF-8, Chinese kept readable, times ISO 8601)."""
    path = Path(path)
    rows = [_case_dict(_coerce(c)) for c in cases]
    data = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    write_atomic(path, data.encode("utf-8"))
    return path


def render_report(
    cases: Iterable[ReportCase | Mapping[str, Any]],
    summary: ReportSummary,
    out_dir: str | Path,
    filename: str = "report.html",
) -> Path:
    """Render the report into `out_dir` (which already holds the evidence) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tz = ZoneInfo(summary.timezone) if summary.timezone else None
    items = sorted((_coerce(c) for c in cases), key=lambda c: (c.opened_at, c.camera_id, c.case_id))
    cjk = cjk_font_path() is not None

    cards = [_card(c, out_dir, tz) for c in items]
    timeline = plot_timeline(items, out_dir / "timeline.png", cjk=cjk)
    html = _env().get_template("report.html").render(
        summary=summary,
        header=_header(summary, items, tz),
        by_category=_by_category(items),
        by_camera=_by_camera(items, summary.cameras),
        categories_seen=_categories_in(items),
        statuses=Counter(c.status for c in items).most_common(),
        timeline=timeline.name if timeline else None,
        cards=cards,
    )
    out = out_dir / filename
    write_atomic(out, html.encode("utf-8"))
    return out


# ---------------------------------------------------------------------------------------------
# view models: plain dicts the template renders, so the template holds no logic


def _header(s: ReportSummary, items: list[ReportCase], tz: ZoneInfo | None) -> dict[str, Any]:
    start = s.span_start or (min(c.opened_at for c in items) if items else None)
    end = s.span_end or (max(c.last_seen_at for c in items) if items else None)
    return {
        "site": s.site,
        "model": s.model,
        "footage": list(s.footage),
        "footage_time": _duration(s.footage_seconds) if s.footage_seconds else "",
        "span": f"{_fmt(start, tz)} — {_fmt(end, tz)}" if start and end else "",
        "generated": _fmt(s.generated_at, tz),
        "timezone": s.timezone,
        "cases": len(items),
        "cameras": len({c.camera_id for c in items} | set(s.cameras)),
    }


def _categories_in(items: list[ReportCase]) -> list[str]:
    """Known categories in enum order, then any others: the column order of the tables."""
    seen = {c.category for c in items}
    known = [cat.value for cat in LABELS if cat.value in seen]
    return known + sorted(seen - set(known))


def _by_category(items: list[ReportCase]) -> list[dict[str, Any]]:
    rows = []
    for cat in _categories_in(items):
        mine = [c for c in items if c.category == cat]
        lab = category_label(cat)
        rows.append({
            "zh": mine[0].category_zh or lab.zh,
            "en": lab.en,
            "color": lab.color,
            "codes": ", ".join(sorted({c.code for c in mine if c.code})),
            "count": len(mine),
            "cameras": len({c.camera_id for c in mine}),
        })
    return rows


def _by_camera(items: list[ReportCase], cameras: Mapping[str, str]) -> list[dict[str, Any]]:
    cats = _categories_in(items)
    names = dict(cameras)
    for c in items:
        names.setdefault(c.camera_id, c.camera_name)
    rows = []
    for cam_id, name in names.items():
        mine = [c for c in items if c.camera_id == cam_id]
        per = Counter(c.category for c in mine)
        rows.append({
            "id": cam_id,
            "name": name or cam_id,
            "address": next((c.address for c in mine if c.address), ""),
            "counts": [per.get(cat, 0) for cat in cats],
            "total": len(mine),
        })
    return sorted(rows, key=lambda r: (-r["total"], r["name"]))


def _card(c: ReportCase, out_dir: Path, tz: ZoneInfo | None) -> dict[str, Any]:
    lab = category_label(c.category)
    image = _local_link(c.image, out_dir, c.case_id)
    return {
        "case": c,
        "anchor": "case-" + _slug(c.case_id),
        "en": lab.en,
        "color": lab.color,
        "image": image,
        "thumb": _thumbnail(image, out_dir, c.case_id) if image else None,
        "crop": _local_link(c.crop, out_dir, c.case_id),
        "clip": _local_link(c.clip, out_dir, c.case_id),
        "opened": _fmt(c.opened_at, tz),
        "last_seen": _fmt(c.last_seen_at, tz),
        "lasted": _duration((c.last_seen_at - c.opened_at).total_seconds()),
        "pts": _duration(c.opened_pts),
        "status_class": _slug(c.status),
    }


def _local_link(rel: str | None, out_dir: Path, case_id: str) -> str | None:
    """A link the report can use: relative, inside the folder, present on disk; else None."""
    if not rel:
        return None
    p = Path(rel)
    if re.match(r"^[a-z][a-z0-9+.-]*://", str(rel), re.I):
        log.warning("case %s: evidence %s is a URL; the report links local files only", case_id, rel)
        return None
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(out_dir.resolve())
        except ValueError:
            log.warning("case %s: evidence %s is outside the report folder %s", case_id, rel, out_dir)
            return None
    if not (out_dir / p).is_file():
        log.warning("case %s: evidence %s is missing from %s", case_id, p, out_dir)
        return None
    return PurePosixPath(*p.parts).as_posix()


def _thumbnail(rel: str, out_dir: Path, case_id: str) -> str:
    """A small copy of the evidence image, so a page of hundreds of cases stays light."""
    thumb = PurePosixPath("thumbs", _slug(case_id) + ".jpg")
    img = cv2.imread(str(out_dir / rel))
    if img is None:
        log.warning("case %s: cannot read %s for a thumbnail; linking the full image", case_id, rel)
        return rel
    h, w = img.shape[:2]
    if w > THUMB_WIDTH:
        img = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return rel
    write_atomic(out_dir / thumb, buf.tobytes())
    return thumb.as_posix()


# ---------------------------------------------------------------------------------------------
# helpers


def _coerce(c: ReportCase | Mapping[str, Any]) -> ReportCase:
    if isinstance(c, ReportCase):
        return c
    if isinstance(c, Mapping):
        return ReportCase.from_dict(c)
    raise TypeError(f"expected ReportCase or a dict, got {type(c).__name__}")


def _case_dict(c: ReportCase) -> dict[str, Any]:
    d = dataclasses.asdict(c)
    for key in ("opened_at", "last_seen_at"):
        d[key] = d[key].isoformat()
    return d


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: f"{v:.2f}"
    return env


def _fmt(t: datetime | None, tz: ZoneInfo | None) -> str:
    if t is None:
        return ""
    if tz is not None and t.tzinfo is not None:
        t = t.astimezone(tz)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "case"

