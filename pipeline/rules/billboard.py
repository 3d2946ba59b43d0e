"""Unauthorized billboards (违章张贴悬挂广告牌匾): the detector cue.

A billboard track (`billboard.classes`) at rest ≥ dwell with score ≥ `min_score`, whose box centre
is not approved by the camera's ads register (`register.py`: an active `approved_ad` zone whose
permit has not run out and whose approved sign it still looks like), is an unauthorized billboard. Where the camera has `ad_area` zones, only billboards whose centre lies in
an active one count (and the event carries it): walls where ads are judged, excluding e.g. shop
signs the register does not cover. The scene-change cue against the reference image is
`scene_change.py`.
"""

from __future__ import annotations

from citypatrol.pipeline.config.models import Category, Rules, Zone, ZoneKind
from citypatrol.pipeline.rules.register import Register
from citypatrol.pipeline.rules.base import DEFAULT_REFRESH_S, EPS, BaseRule, RuleContext, dwell_for, effective_since, zone_label
from citypatrol.pipeline.types import Event
from citypatrol.pipeline.zones import Anchor, box_in_zone


class BillboardRule(BaseRule):
    name = "billboard"
    categories = (Category.billboard,)

    def __init__(self, rules: Rules | None = None, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        super().__init__(rules, refresh_s=refresh_s)
        self.register = Register()

    @property
    def required_classes(self) -> frozenset[str]:
        return frozenset(self.settings.billboard.classes)

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.billboard
        if not s.enabled:
            return []
        approved = ctx.zones(ZoneKind.approved_ad)
        has_areas = bool(ctx.zones(ZoneKind.ad_area, active=False))
        areas = ctx.zones(ZoneKind.ad_area)
        classes = set(s.classes)
        events: list[Event] = []
        for t in ctx.seen_now():
            if t.class_name not in classes or t.score < s.min_score or t.stationary_since is None:
                continue
            approval = self.register.check(ctx.camera.id, approved, t.box, ctx.image, ctx.today(), ctx.pts, s.dwell_s)
            if approval.approved:
                continue
            zone: Zone | None = None
            if has_areas:
                zone = next((z for z in areas if box_in_zone(z, t.box, anchor=Anchor.center)), None)
                if zone is None:
                    continue
            since = effective_since(t.stationary_since, zone, ctx.local_time, ctx.pts)
            if since is None or ctx.pts - since + EPS < dwell_for(zone, s.dwell_s):
                continue
            if self.refresh.due((ctx.camera.id, t.track_id, zone.id if zone else None), since, ctx.pts):
                where = f" in ad area {zone_label(zone)}" if zone is not None else ""
                unapproved = f": {approval.why}" if approval.why else " outside approved ad zones"
                events.append(self.event(
                    ctx, Category.billboard, t.box, zone, since, t.score, [t.track_id], [t.class_name],
                    f"{t.class_name} present {ctx.pts - since:.0f} s{where}{unapproved}",
                ))
        return events
