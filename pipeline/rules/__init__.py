"""citypatrol.pipeline.rules: one rule per problem, and the list the runner starts with.

`build_rules(model_classes)` builds every rule and splits them into those that can work with the
classes the active model(s) offer and those that cannot, each with a one-line reason, so start-up
can say e.g. "street_vending: the model offers no stall class ['stall'] and no stall cue …".
Per-camera switches (`rules.<name>.enabled`, camera overrides) are honoured at evaluation time.
Categories a city adds in its config (`categories:`) get one rule each, of their rule kind
(`configured.py`), checked against the model's classes the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from citypatrol.pipeline.config.models import CategoryDef, Rules
from citypatrol.pipeline.rules.base import DEFAULT_REFRESH_S, BaseRule, Refresher, Rule, RuleContext
from citypatrol.pipeline.rules.billboard import BillboardRule
from citypatrol.pipeline.rules.configured import ConfiguredRule, ConfiguredTextRule, configured_rule
from citypatrol.pipeline.rules.garbage import GarbageRule
from citypatrol.pipeline.rules.panel_region import PanelRule
from citypatrol.pipeline.rules.parking import IllegalParkingRule
from citypatrol.pipeline.rules.scene_change import SceneChangeRule
from citypatrol.pipeline.rules.text_region import TextRegionRule
from citypatrol.pipeline.rules.vending import StreetVendingRule
from citypatrol.pipeline.rules.vending_scene import VendingSceneRule

__all__ = [
    "BaseRule",
    "BillboardRule",
    "ConfiguredRule",
    "ConfiguredTextRule",
    "GarbageRule",
    "IllegalParkingRule",
    "PanelRule",
    "Refresher",
    "Rule",
    "RuleContext",
    "SceneChangeRule",
    "StreetVendingRule",
    "TextRegionRule",
    "VendingSceneRule",
    "build_rules",
]


def build_rules(
    model_classes: Iterable[str],
    rules: Rules | None = None,
    *,
    refresh_s: float = DEFAULT_REFRESH_S,
    categories: Sequence[CategoryDef] = (),
) -> tuple[list[Rule], list[tuple[Rule, str]]]:
    """(active rules, [(rule, reason)] disabled for lack of classes) for a model's canonical classes.

    `rules` are the global settings (default: `Rules()`); they say which classes each rule looks for.
    `categories`: the configured categories (`Config.categories`), one rule each.
    """
    settings = rules if rules is not None else Rules()
    classes = frozenset(model_classes)
    candidates: list[Rule] = [
        IllegalParkingRule(settings, refresh_s=refresh_s),
        StreetVendingRule(settings, refresh_s=refresh_s),
        VendingSceneRule(settings, refresh_s=refresh_s),
        GarbageRule(settings, refresh_s=refresh_s),
        BillboardRule(settings, refresh_s=refresh_s),
        SceneChangeRule(settings, refresh_s=refresh_s),
        TextRegionRule(settings, refresh_s=refresh_s),
        PanelRule(settings, refresh_s=refresh_s),
        *(configured_rule(c, refresh_s=refresh_s) for c in categories),
    ]
    active: list[Rule] = []
    disabled: list[tuple[Rule, str]] = []
    for rule in candidates:
        reason = rule.disabled_reason(classes)
        if reason is None:
            active.append(rule)
        else:
            disabled.append((rule, reason))
    return active, disabled
