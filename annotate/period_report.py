"""综合评价: how a period's cases went through the closed loop, per category, district/grid and camera.

`period_stats` (pure) counts, for the cases opened in [start, end) and followed to now, from their
audit trail (the transition rows) and SLA clocks:

- detected: cases opened;  auto_submitted: detected → approved by the review policy;
- held: → pending_review;  confirmed: pending_review → approved by a reviewer;
- rejected: refused by a reviewer (→ rejected from detected / pending_review);
  reviewer precision = confirmed / (confirmed + rejected), the share of held cases reviewers
  judged real;  declined: rejected by the dispatch system after dispatch (不予立案);
- dispatched, closed (by verification or without), reopened (a camera re-check found the
  problem still there: verifying → reopened), overdue (past the handling deadline, by
  citypatrol's SLA clock or reported by the dispatch system);
- median time to dispatch (opened → first dispatched), to handle (first dispatched → first
  handled) and to close (opened → closed), in seconds.

`render_period_report` writes `period_report.html` (with two matplotlib plots), `summary.csv`
(one row per group: the total, each category, each district/grid, each camera) and `cases.csv`
(one row per case with its milestones). Like `report.py`, it never reads the store: the command
hands in plain `PeriodCase` records (`period_cases` builds them from store records).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from citypatrol.annotate.labels import category_label
from citypatrol.annotate.timeline import _font_family
from citypatrol.pipeline.types import CaseStatus, Transition
from citypatrol.annotate.files import write_atomic

S = CaseStatus
TEMPLATES = Path(__file__).resolve().parent / "templates"
POLICY_ACTOR = "review_policy"
COUNTS = ("detected", "auto_submitted", "held", "confirmed", "rejected", "declined", "dispatched", "closed", "reopened", "overdue")
TIMES = ("to_dispatch_s", "to_handle_s", "to_close_s")


@dataclass(frozen=True, slots=True)
class PeriodCase:
    """One case as the period report needs it."""

    case_id: str
    category: str
    camera_id: str
    camera_name: str
    district: str
    grid_code: str
    opened_at: datetime
    status: str
    history: tuple[Transition, ...]
    overdue: bool = False


@dataclass
class Row:
    """Counts and median times of one group of cases."""

    group_by: str  # "total" | "category" | "district" | "camera"
    key: str
    label: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    times: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TIMES})

    @property
    def precision(self) -> float | None:
        judged = self.counts["confirmed"] + self.counts["rejected"]
        return self.counts["confirmed"] / judged if judged else None

    def median(self, name: str) -> float | None:
        values = self.times[name]
        return statistics.median(values) if values else None


def period_cases(records: Iterable, overdue_ids: set[str], camera_names: Mapping[str, str] | None = None) -> list[PeriodCase]:
    """PeriodCases from the store's `CaseRecord`s and the ids of the cases found overdue."""
    names = camera_names or {}
    return [
        PeriodCase(r.case_id, r.case.category.value, r.case.camera_id, names.get(r.case.camera_id, r.case.camera_id),
                   r.location.district, r.location.grid_code, r.case.opened_at, r.case.status.value, r.case.history,
                   r.case_id in overdue_ids)
        for r in records
    ]


def case_facts(c: PeriodCase) -> tuple[dict[str, int], dict[str, float]]:
    """One case's counts (0/1 each) and durations, from its audit trail."""
    h = c.history
    first = {}
    for t in h:
        first.setdefault(t.to_status, t.at)
    counts = dict.fromkeys(COUNTS, 0)
    counts["detected"] = 1
    counts["auto_submitted"] = int(any(t.to_status is S.approved and t.from_status is S.detected and t.actor == POLICY_ACTOR for t in h))
    counts["held"] = int(S.pending_review in first)
    counts["confirmed"] = int(any(t.to_status is S.approved and t.from_status is S.pending_review for t in h))
    counts["rejected"] = int(any(t.to_status is S.rejected and t.from_status in (S.detected, S.pending_review) for t in h))
    counts["declined"] = int(any(t.to_status is S.rejected and t.from_status is S.dispatched for t in h))
    counts["dispatched"] = int(S.dispatched in first)
    counts["closed"] = int(c.status == S.closed.value)
    counts["reopened"] = int(any(t.to_status is S.reopened and t.from_status is S.verifying for t in h))
    counts["overdue"] = int(c.overdue)
    times: dict[str, float] = {}
    if S.dispatched in first:
        times["to_dispatch_s"] = (first[S.dispatched] - c.opened_at).total_seconds()
        if S.handled in first:
            times["to_handle_s"] = (first[S.handled] - first[S.dispatched]).total_seconds()
    if S.closed in first:
        times["to_close_s"] = (first[S.closed] - c.opened_at).total_seconds()
    return counts, times


def period_stats(cases: Sequence[PeriodCase]) -> list[Row]:
    """Rows: the total, then per category, per district/grid, per camera (each sorted by key)."""
    groupings: list[tuple[str, Callable[[PeriodCase], tuple[str, str]]]] = [
        ("total", lambda c: ("all", "合计 all")),
        ("category", lambda c: (c.category, f"{category_label(c.category).zh} {category_label(c.category).en}")),
        ("district", lambda c: (f"{c.district}/{c.grid_code}", " / ".join(p for p in (c.district, c.grid_code) if p) or "—")),
        ("camera", lambda c: (c.camera_id, c.camera_name or c.camera_id)),
    ]
    rows: list[Row] = []
    facts = [(c, *case_facts(c)) for c in cases]
    for group_by, key_of in groupings:
        groups: dict[str, Row] = {}
        for c, counts, times in facts:
            key, label = key_of(c)
            row = groups.setdefault(key, Row(group_by, key, label))
            for k, v in counts.items():
                row.counts[k] += v
            for k, v in times.items():
                row.times[k].append(v)
        if group_by == "total" and not groups:
            groups["all"] = Row("total", "all", "合计 all")
        rows.extend(groups[k] for k in sorted(groups))
    return rows


def summary_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["group_by", "group", "label", *COUNTS, "reviewer_precision", *(f"median_{t}" for t in TIMES)])
    for r in rows:
        p = r.precision
        w.writerow([r.group_by, r.key, r.label, *(r.counts[k] for k in COUNTS), "" if p is None else f"{p:.4f}",
                    *("" if r.median(t) is None else f"{r.median(t):.1f}" for t in TIMES)])
    return out.getvalue()


def cases_csv(cases: Sequence[PeriodCase], tz: ZoneInfo) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["case_id", "category", "camera_id", "district", "grid_code", "opened_at", "status", *COUNTS, *TIMES])
    for c in sorted(cases, key=lambda c: (c.opened_at, c.case_id)):
        counts, times = case_facts(c)
        w.writerow([c.case_id, c.category, c.camera_id, c.district, c.grid_code, c.opened_at.astimezone(tz).isoformat(timespec="seconds"),
                    c.status, *(counts[k] for k in COUNTS), *("" if t not in times else f"{times[t]:.1f}" for t in TIMES)])
    return out.getvalue()


def render_period_report(cases: Sequence[PeriodCase], out_dir: Path, *, site: str, start: datetime, end: datetime,
                         timezone: str, generated_at: datetime) -> Path:
    """Write the HTML report, its plots and the two CSV files into `out_dir`; returns the HTML path."""
    tz = ZoneInfo(timezone)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = period_stats(cases)
    write_atomic(out_dir / "summary.csv", summary_csv(rows).encode("utf-8-sig"))  # BOM: Excel opens Chinese correctly
    write_atomic(out_dir / "cases.csv", cases_csv(cases, tz).encode("utf-8-sig"))
    plots = {"outcomes": _plot_outcomes([r for r in rows if r.group_by == "category"], out_dir / "outcomes.png"),
             "daily": _plot_daily(cases, tz, out_dir / "daily.png")}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("period_report.html").render(
        site=site, start=_fmt(start, tz), end=_fmt(end, tz), timezone=timezone, generated=_fmt(generated_at, tz),
        total=rows[0], sections=[(g, title, [r for r in rows if r.group_by == g]) for g, title in
                                 (("category", "按类别 by category"), ("district", "按区域/网格 by district / grid"), ("camera", "按摄像头 by camera"))],
        counts=COUNTS, plots={k: (v.name if v else None) for k, v in plots.items()}, fmt_s=_duration, pct=_pct,
    )
    path = out_dir / "period_report.html"
    write_atomic(path, html.encode("utf-8"))
    return path


def _plot_outcomes(rows: Sequence[Row], out: Path) -> Path | None:
    if not rows:
        return None
    family = _font_family()
    shown = ("detected", "auto_submitted", "held", "rejected", "dispatched", "closed", "reopened", "overdue")
    with matplotlib.rc_context({"font.family": [family, "DejaVu Sans"] if family else ["DejaVu Sans"], "font.size": 9}):
        fig = Figure(figsize=(10, 3.6), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        width = 0.8 / len(rows)
        for i, r in enumerate(rows):
            lab = category_label(r.key)
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(shown))]
            ax.bar(xs, [r.counts[k] for k in shown], width, color=lab.color, label=f"{lab.zh} {lab.en}" if family else lab.en)
        ax.set_xticks(range(len(shown)), [k.replace("_", " ") for k in shown])
        ax.set_ylabel("cases")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False, fontsize=8, loc="upper right")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.savefig(out, format="png")
    return out


def _plot_daily(cases: Sequence[PeriodCase], tz: ZoneInfo, out: Path) -> Path | None:
    if not cases:
        return None
    opened: dict = {}
    closed: dict = {}
    for c in cases:
        day = c.opened_at.astimezone(tz).date()
        opened[day] = opened.get(day, 0) + 1
        for t in c.history:
            if t.to_status is S.closed:
                d = t.at.astimezone(tz).date()
                closed[d] = closed.get(d, 0) + 1
    days = sorted(set(opened) | set(closed))
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"], "font.size": 9}):
        fig = Figure(figsize=(10, 2.8), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(days, [opened.get(d, 0) for d in days], marker="o", color="#e53935", label="opened")
        ax.plot(days, [closed.get(d, 0) for d in days], marker="s", color="#2e7d32", label="closed")
        ax.set_ylabel("cases per day")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False)
        ax.grid(axis="y", color="#dddddd", lw=0.8)
        fig.autofmt_xdate()
        fig.savefig(out, format="png")
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f} %"


def _fmt(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M")

