"""Illegal parking (机动车乱停放) and non-motor parking (非机动车乱停放).

A vehicle track (`illegal_parking.classes`) at rest for at least the dwell, with its bottom-centre
anchor (the wheels) inside a `no_parking` zone that is in its hours, and a best score of at least
`min_score`, is illegal parking. Bicycles / e-bikes in `nonmotor_classes` (empty = off) are
reported the same way as non-motor parking. The zone's `dwell_s` overrides the rule's, and dwell
only counts inside the zone's hours. A track in several zones fires for the first that qualifies,
in configuration order.
"""

from __future__ import annotations

from citypatrol.pipeline.config.models import Category, ZoneKind
from citypatrol.pipeline.rules.base import BaseRule, RuleContext, resting_in_zones, zone_label
from citypatrol.pipeline.types import Event


class IllegalParkingRule(BaseRule):
    name = "illegal_parking"
    categories = (Category.illegal_parking, Category.nonmotor_parking)

    @property
    def required_classes(self) -> frozenset[str]:
        s = self.settings.illegal_parking
        return frozenset(s.classes) | frozenset(s.nonmotor_classes)

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.illegal_parking
        zones = ctx.zones(ZoneKind.no_parking)
        if not s.enabled or not zones:
            return []
        motor, nonmotor = set(s.classes), set(s.nonmotor_classes)
        events: list[Event] = []
        for t in ctx.seen_now():
            if t.class_name in motor:
                category, what = Category.illegal_parking, "no-parking"
            elif t.class_name in nonmotor:
                category, what = Category.nonmotor_parking, "no-parking"
            else:
                continue
            if t.score < s.min_score or t.stationary_since is None:
                continue
            found = resting_in_zones(ctx, t, zones, s.dwell_s)
            if found is None:
                continue
            z, since = found
            if self.refresh.due((ctx.camera.id, t.track_id, z.id), since, ctx.pts):
                held = ctx.pts - since
                events.append(
                    self.event(
                        ctx, category, t.box, z, since, t.score, [t.track_id], [t.class_name],
                        f"{t.class_name} stationary {held:.0f} s in {what} zone {zone_label(z)}", look=t.look,
                    )
                )
        return events
