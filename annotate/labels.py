"""Names and colours of the problem categories, as reviewers and supervisors read them.

One place for the Chinese and English wording (what the supervision center calls each problem)
and a colour per category, so evidence images, the HTML report and its timeline agree. The
dispatch code and the platform's official name (e.g. 0501 无照经营游商) are configuration and
live in `Config.codes`; these labels are for people looking at a picture.
"""

from __future__ import annotations

from dataclasses import dataclass

from citypatrol.pipeline.config.models import Category


@dataclass(frozen=True, slots=True)
class CategoryLabel:
    zh: str  # what the supervision center calls it
    en: str
    color: str  # "#rrggbb", drawn on evidence and in the report

    @property
    def rgb(self) -> tuple[int, int, int]:
        h = self.color.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)

    @property
    def bgr(self) -> tuple[int, int, int]:
        r, g, b = self.rgb
        return b, g, r


LABELS: dict[Category, CategoryLabel] = {
    Category.illegal_parking: CategoryLabel("机动车乱停放", "illegal parking", "#e53935"),
    Category.nonmotor_parking: CategoryLabel("非机动车乱停放", "non-motor parking", "#fb8c00"),
    Category.street_vending: CategoryLabel("占道经营", "street vending", "#8e24aa"),
    Category.garbage_overflow: CategoryLabel("垃圾箱满溢", "overflowing bin", "#2e7d32"),
    Category.exposed_garbage: CategoryLabel("暴露垃圾", "exposed garbage", "#6d4c41"),
    Category.billboard: CategoryLabel("违规广告牌", "unauthorized billboard", "#1e88e5"),
}

_UNKNOWN_COLOR = "#546e7a"


def category_label(category: Category | str, title: str = "", title_en: str = "") -> CategoryLabel:
    """The label of a category; another (configured) one gets its `title` (the city's name for it,
    e.g. its code name) or its own name, in grey."""
    try:
        return LABELS[Category(category)]
    except ValueError:
        name = str(category)
        return CategoryLabel(title or name, title_en or name.replace("_", " "), _UNKNOWN_COLOR)


def label_zh(category: Category | str, title: str = "") -> str:
    """Chinese name; `title` (the city's code name) for a configured category."""
    return category_label(category, title).zh


def label_en(category: Category | str) -> str:
    return category_label(category).en


def label_text(category: Category | str, score: float | None = None, *, cjk: bool = True, title: str = "") -> str:
    """'机动车乱停放 illegal parking 0.82'; English only when no CJK font can draw it."""
    lab = category_label(category, title)
    text = f"{lab.zh} {lab.en}" if cjk else lab.en
    return text if score is None else f"{text} {score:.2f}"
