"""The report's timeline plot: when each camera's cases opened, over stream time, by category.

One row per camera, one mark per case at its opening (a bar to its last sighting when known),
coloured by category, so a supervisor sees at once which cameras are busy, with what, and when.
Drawn with matplotlib's object API on the Agg canvas (no pyplot global state: safe in a worker
thread and without a display), with a Chinese-capable font when one is installed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from citypatrol.annotate.fonts import cjk_font_path
from citypatrol.annotate.labels import LABELS, category_label

if TYPE_CHECKING:
    from citypatrol.annotate.report import ReportCase

log = logging.getLogger(__name__)


def plot_timeline(cases: Sequence["ReportCase"], out: Path, *, cjk: bool = True) -> Path | None:
    """Write the timeline PNG to `out` and return it; None when there is nothing to plot."""
    if not cases:
        return None
    family = _font_family() if cjk else None
    cjk = family is not None
    rc = {"font.family": [family, "DejaVu Sans"] if family else ["DejaVu Sans"], "font.size": 10}

    cameras = sorted({c.camera_id for c in cases}, key=lambda cid: min(c.opened_pts for c in cases if c.camera_id == cid))
    names = {c.camera_id: (c.camera_name or c.camera_id) for c in cases}
    row = {cid: i for i, cid in enumerate(cameras)}
    end = max(max(c.opened_pts, c.last_seen_pts or 0.0) for c in cases)
    scale, unit = (60.0, "min") if end > 600 else (1.0, "s")

    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(11, 1.4 + 0.55 * len(cameras)), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for c in cases:
            y, color = row[c.camera_id], category_label(c.category).color
            if c.last_seen_pts is not None and c.last_seen_pts > c.opened_pts:
                ax.plot([c.opened_pts / scale, c.last_seen_pts / scale], [y, y], color=color, lw=5, alpha=0.45, solid_capstyle="butt")
            ax.plot(c.opened_pts / scale, y, marker="o", ms=8, color=color, mec="white", mew=1)
        ax.set_yticks(range(len(cameras)), [_label(names[cid], cid, cjk) for cid in cameras])
        ax.set_ylim(len(cameras) - 0.5, -0.5)
        ax.set_xlim(0, max(end / scale * 1.03, 1.0 / scale))
        ax.set_xlabel(f"stream time ({unit})" if not cjk else f"视频时间 stream time ({unit})")
        ax.grid(axis="x", color="#dddddd", lw=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        seen = {c.category for c in cases}
        handles = [
            Line2D([], [], marker="o", ls="", ms=8, color=lab.color, label=f"{lab.zh} {lab.en}" if cjk else lab.en)
            for cat, lab in LABELS.items()
            if cat.value in seen
        ]
        handles += [
            Line2D([], [], marker="o", ls="", ms=8, color=category_label(v).color, label=v)
            for v in sorted(seen - {cat.value for cat in LABELS})
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    return out


@functools.lru_cache(maxsize=1)
def _font_family() -> str | None:
    path = cjk_font_path()
    if path is None:
        return None
    try:
        font_manager.fontManager.addfont(str(path))
        return font_manager.FontProperties(fname=str(path)).get_name()
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("matplotlib cannot use %s (%s); timeline labels will be English only", path, exc)
        return None


def _label(name: str, camera_id: str, cjk: bool) -> str:
    if cjk or name.isascii():
        return name
    return camera_id
