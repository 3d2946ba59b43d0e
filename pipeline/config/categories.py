"""Problem categories and zone kinds: the built-in ones, and those a city declares in its config.

The national scheme lists dozens of 城管 event types; citypatrol ships rules for six. A city adds
another without code by declaring it under `categories:` (`CategoryDef`): a name, the city's code,
the kind of zone it is judged in (a built-in kind or a new one, e.g. `door_front`), one of four
rule kinds and the detector classes it watches. The rule kinds are the machinery the built-in
rules already have:

- `stationary_object`: a tracked object of `classes` at rest ≥ dwell in the zone (like parking);
- `cue_cluster`: at least `min_cues` resting objects of `classes` close together, with
  `min_people` people at them (like the vending cue cluster);
- `scene_change`: an object that is not in the camera's reference image, at rest ≥ dwell in the
  zone (like vending's scene cue, people left out and not required unless `min_people`);
- `text_region`: printed text at rest ≥ dwell in the zone (like the billboard text cue).

Stored and received category strings become `Category` members for the built-ins and
`ConfiguredCategory` for the others (`category_of`), so both have `.value` and compare as strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,40}$"


class Category(StrEnum):
    """The problems citypatrol reports. Values are stable identifiers used in the store and API."""

    illegal_parking = "illegal_parking"  # 机动车乱停放
    nonmotor_parking = "nonmotor_parking"  # 非机动车乱停放
    street_vending = "street_vending"  # 无照经营游商 / 占道经营
    garbage_overflow = "garbage_overflow"  # 垃圾桶满溢
    exposed_garbage = "exposed_garbage"  # 暴露垃圾
    billboard = "billboard"  # 违章张贴悬挂广告牌匾


class ZoneKind(StrEnum):
    no_parking = "no_parking"
    no_vending = "no_vending"
    bin_area = "bin_area"
    ad_area = "ad_area"
    approved_ad = "approved_ad"


class ConfiguredCategory(str):
    """A category declared in the config (`CategoryDef.name`): a string that reads like a `Category` member."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"ConfiguredCategory({str.__repr__(self)})"


def category_of(name: str) -> Category | ConfiguredCategory:
    """A stored or received category string as a built-in `Category`, else as a configured one."""
    if isinstance(name, Category):
        return name
    try:
        return Category(name)
    except ValueError:
        return ConfiguredCategory(name)


def zone_kind_of(name: str) -> ZoneKind | str:
    """A zone kind string as a built-in `ZoneKind`, else as the configured kind's name."""
    if isinstance(name, ZoneKind):
        return name
    try:
        return ZoneKind(name)
    except ValueError:
        return str(name)


#: Zone kinds the configured categories of the config being validated declare; None outside a config.
_DECLARED_KINDS: ContextVar[frozenset[str] | None] = ContextVar("declared_zone_kinds", default=None)


@contextmanager
def declared_zone_kinds(kinds: frozenset[str]) -> Iterator[None]:
    """While a config is validated: the zone kinds its categories declare (see `checked_zone_kind`)."""
    token = _DECLARED_KINDS.set(kinds)
    try:
        yield
    finally:
        _DECLARED_KINDS.reset(token)


def checked_zone_kind(name: str) -> ZoneKind | str:
    """A zone's kind: built-in, or declared by a category of the config being validated (a zone
    validated on its own, e.g. from the zone editor, is checked against its config by the caller)."""
    kind = zone_kind_of(name)
    declared = _DECLARED_KINDS.get()
    if isinstance(kind, ZoneKind) or declared is None or kind in declared:
        return kind
    raise ValueError(
        f"kind {name!r} is neither a built-in zone kind ({', '.join(k.value for k in ZoneKind)}) "
        "nor the zone_kind of a category under `categories`")


def is_builtin(category: str) -> bool:
    return category in Category._value2member_map_


class RuleKind(StrEnum):
    stationary_object = "stationary_object"
    cue_cluster = "cue_cluster"
    scene_change = "scene_change"
    text_region = "text_region"


#: Fields that only some rule kinds read; giving one to another kind is a mistake worth naming.
KIND_FIELDS: dict[str, tuple[RuleKind, ...]] = {
    "min_cues": (RuleKind.cue_cluster,),
    "cluster_radius": (RuleKind.cue_cluster, RuleKind.scene_change),
    "min_people": (RuleKind.cue_cluster, RuleKind.scene_change),
    "min_area": (RuleKind.scene_change,),
    "text_min_score": (RuleKind.text_region,),
}


class CategoryDef(BaseModel):
    """A category a city adds by configuration: its code, the zones it is judged in, its rule kind and classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Stable identifier stored with each case, e.g. 'shop_front_business'; not a built-in category's name.")
    code: str = Field(min_length=1, max_length=32, description="Event code in the city's scheme, e.g. '0504'.")
    title: str = Field(min_length=1, max_length=100, description="Name in the city's scheme, e.g. '店外经营'; shown to reviewers.")
    major: str = Field("", max_length=100, description="大类 name, e.g. '街面秩序'.")
    title_en: str = Field("", max_length=100, description="English name for reviewers; empty = the name with spaces.")
    zone_kind: str = Field(
        pattern=NAME_PATTERN,
        description="Kind of the zones it is judged in: a built-in kind (no_parking, no_vending, bin_area, ad_area) or a new "
                    "one (e.g. 'door_front') that cameras' zones may then use.")
    rule: RuleKind = Field(description="How it is found: stationary_object, cue_cluster, scene_change or text_region.")
    classes: list[str] = Field(
        default_factory=list, max_length=64,
        description="Canonical detector classes it watches; required for stationary_object and cue_cluster.")
    enabled: bool = Field(True, description="Turn the category off without removing it (its zones stay valid).")
    dwell_s: float = Field(300, ge=0, le=86400, description="Seconds of stream time the problem must persist (a zone's dwell_s overrides).")
    min_score: float = Field(0.35, ge=0, le=1, description="Minimum detector confidence of a watched object (and of people counted at it).")
    min_cues: int = Field(2, ge=1, le=20, description="cue_cluster: resting objects needed in one cluster.")
    min_people: int = Field(0, ge=0, le=50, description="cue_cluster, scene_change: people needed at the objects (0 = none needed).")
    cluster_radius: float = Field(
        0.12, gt=0, le=1, description="cue_cluster, scene_change: how close objects (and people) must be, as a fraction of the frame diagonal.")
    min_area: float = Field(0.002, gt=0, le=1, description="scene_change: smallest new object, as a share of the frame's area.")
    text_min_score: float = Field(0.3, ge=0, le=1, description="text_region: recogniser confidence below which a text region is texture.")

    @model_validator(mode="after")
    def _consistent(self) -> CategoryDef:
        if is_builtin(self.name):
            raise ValueError(f"name {self.name!r} is a built-in category; configure it under rules.* and codes instead")
        if self.zone_kind == ZoneKind.approved_ad:
            raise ValueError("zone_kind approved_ad is the ads register, where nothing is a problem; choose another kind")
        if self.rule in (RuleKind.stationary_object, RuleKind.cue_cluster) and not self.classes:
            raise ValueError(f"classes: a {self.rule.value} category needs the detector classes it watches")
        for key in sorted(KIND_FIELDS):
            # a default value is fine (a dumped config gives every field)
            if self.rule not in KIND_FIELDS[key] and getattr(self, key) != type(self).model_fields[key].default:
                kinds = " or ".join(k.value for k in KIND_FIELDS[key])
                raise ValueError(f"{key}: applies to rule {kinds}, not {self.rule.value}")
        return self

    def watched_classes(self) -> list[str]:
        people = ["person"] if self.min_people > 0 or self.rule is RuleKind.scene_change else []
        return [*self.classes, *people]
