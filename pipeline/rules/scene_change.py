"""Unauthorized billboards: the scene-change cue against the camera's reference image.

A detector only finds the billboards it was trained on; a banner or a painted board it has never
seen still changes the wall. For each active `ad_area` zone this rule compares the zone's region of
the current frame with the same region of the camera's reference image (the picture the zones
were drawn on, passed in by the runner as `RuleContext.reference`):

1. both crops to grayscale, downscaled to at most `work_px` on the long side, lightly blurred;
2. a pixel has changed when its local structure differs (the contrast·structure terms of SSIM
   below `cs_threshold`: texture appeared or vanished) or when its brightness differs after each
   crop is normalised by its median and interquartile spread (`z_threshold`: a flat board on a
   flat wall). Both measures ignore a global gain/offset, so dusk, clouds or auto-exposure do not count;
3. specks are removed (morphological opening); pixels inside `approved_ad` zones are ignored;
4. the changed share of the zone is compared with `billboard.scene_change_threshold`.

A share above the threshold that persists (dips shorter than `max_dip_s` are tolerated) for the
dwell (zone `dwell_s` or `billboard.dwell_s`) fires a billboard event, boxed around the changed
pixels, with the share as score. Passers-by and parked vans do not last the dwell. The state per
(camera, zone) is explicit (`SceneState`) and can be read with `state()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from citypatrol.pipeline.config.models import Category, Zone, ZoneKind
from citypatrol.pipeline.rules.base import EPS, BaseRule, RuleContext, dwell_for, effective_since, zone_label
from citypatrol.pipeline.types import SCENE_CUE, Box, Event
from citypatrol.pipeline.zones import zone_geometry

SCENE_CLASS = SCENE_CUE


@dataclass(slots=True)
class SceneState:
    """What the rule remembers about one ad_area of one camera."""

    since: float | None = None  # stream seconds since the change has persisted; None = no change
    last_above: float | None = None  # last frame whose share was above the threshold
    share: float = 0.0  # changed share in the last frame
    box: Box | None = None  # changed region in the last frame above the threshold, normalised


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    return img.astype(np.float32)


def change_mask(
    current: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    *,
    cs_threshold: float = 0.5,
    z_threshold: float = 1.2,
    min_spread: float = 12.0,
) -> np.ndarray:
    """Boolean map of pixels that differ beyond illumination; arrays of one shape, `mask` bool (H, W)."""
    x, y = _gray(reference), _gray(current)
    x = cv2.GaussianBlur(x, (0, 0), 1.0)
    y = cv2.GaussianBlur(y, (0, 0), 1.0)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), 2.0)

    mx, my = blur(x), blur(y)
    sxx = np.maximum(blur(x * x) - mx * mx, 0)
    syy = np.maximum(blur(y * y) - my * my, 0)
    sxy = blur(x * y) - mx * my
    c2 = (0.03 * 255) ** 2
    cs = (2 * sxy + c2) / (sxx + syy + c2)

    m = mask.astype(bool)
    if not m.any():
        return np.zeros_like(m)

    def z(a: np.ndarray) -> np.ndarray:
        # robust statistics: a board covering part of the area barely moves the median and IQR
        q1, med, q3 = np.percentile(a[m], [25, 50, 75])
        return (a - float(med)) / max(float(q3 - q1) / 1.349, min_spread)

    changed = (cs < cs_threshold) | (np.abs(z(y) - z(x)) > z_threshold)
    changed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    return changed & m


class SceneChangeRule(BaseRule):
    name = "scene_change"
    categories = (Category.billboard,)

    def __init__(self, rules=None, *, refresh_s: float = 60.0, work_px: int = 256, max_dip_s: float = 30.0) -> None:
        super().__init__(rules, refresh_s=refresh_s)
        self.work_px = work_px
        self.max_dip_s = max_dip_s
        self._states: dict[tuple[str, str], SceneState] = {}
        self._ref_cache: dict[str, tuple[np.ndarray, tuple[int, ...], np.ndarray]] = {}

    @property
    def required_classes(self) -> frozenset[str]:
        return frozenset()  # needs a reference image, not classes

    def disabled_reason(self, model_classes: frozenset[str]) -> str | None:
        if not self.settings.billboard.scene_change:
            return f"{self.name}: turned off (rules.billboard.scene_change: false)"
        return None

    def state(self, camera_id: str, zone_id: str) -> SceneState:
        return self._states.setdefault((camera_id, zone_id), SceneState())

    def _evaluate(self, ctx: RuleContext) -> list[Event]:
        s = ctx.rules.billboard
        if not (s.enabled and s.scene_change) or ctx.image is None or ctx.reference is None:
            return []
        reference = self._reference(ctx.camera.id, ctx.reference, ctx.image.shape)
        approved = ctx.zones(ZoneKind.approved_ad, active=False)
        events: list[Event] = []
        for z in ctx.zones(ZoneKind.ad_area):
            st = self.state(ctx.camera.id, z.id)
            share, box = self.measure(ctx.image, reference, z, approved)
            st.share = share
            if share >= s.scene_change_threshold:
                if st.since is None or st.last_above is None or ctx.pts - st.last_above > self.max_dip_s:
                    st.since = ctx.pts
                st.last_above, st.box = ctx.pts, box
            elif st.last_above is None or ctx.pts - st.last_above > self.max_dip_s:
                st.since = None
            since = effective_since(st.since, z, ctx.local_time, ctx.pts)
            if since is None or st.box is None or ctx.pts - since + EPS < dwell_for(z, s.dwell_s):
                continue
            if st.last_above != ctx.pts:  # in a dip: keep the dwell, report again when it is back
                continue
            if self.refresh.due((ctx.camera.id, "scene", z.id), since, ctx.pts):
                events.append(self.event(
                    ctx, Category.billboard, st.box, z, since, min(1.0, share), [], [SCENE_CLASS],
                    f"new object covering {share:.0%} of ad area {zone_label(z)} for {ctx.pts - since:.0f} s "
                    "(compared with the reference image)",
                ))
        return events

    def _reference(self, camera_id: str, reference: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        cached = self._ref_cache.get(camera_id)
        if cached is not None and cached[0] is reference and cached[1] == shape:
            return cached[2]
        h, w = shape[:2]
        resized = reference if reference.shape[:2] == (h, w) else cv2.resize(reference, (w, h), interpolation=cv2.INTER_AREA)
        self._ref_cache[camera_id] = (reference, shape, resized)
        return resized

    def measure(self, image: np.ndarray, reference: np.ndarray, zone: Zone, approved: list[Zone] = ()) -> tuple[float, Box | None]:
        """Changed share of `zone` between two same-size images, and the changed pixels' box (normalised)."""
        view = ZoneView.of(image, reference, zone, self.work_px, ignore=approved)
        if not view.mask.any():
            return 0.0, None
        changed = change_mask(view.current, view.reference, view.mask)
        share = float(changed.sum() / view.mask.sum())
        if not changed.any():
            return share, None
        ys, xs = np.nonzero(changed)
        return share, view.box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@dataclass(frozen=True, slots=True)
class ZoneView:
    """A zone's bounding region of the current and reference images at working size, and its mask."""

    current: np.ndarray
    reference: np.ndarray
    mask: np.ndarray  # bool (h, w): inside the zone and outside the ignored zones
    origin: tuple[float, float]  # normalised top-left of the region
    scale: tuple[float, float]  # working pixels per normalised unit (x, y)

    @classmethod
    def of(cls, image: np.ndarray, reference: np.ndarray, zone: Zone, work_px: int, ignore: list[Zone] = ()) -> "ZoneView":
        h, w = image.shape[:2]
        minx, miny, maxx, maxy = zone_geometry(zone).bounds
        x0, y0 = int(np.floor(minx * w)), int(np.floor(miny * h))
        x1, y1 = max(x0 + 1, int(np.ceil(maxx * w))), max(y0 + 1, int(np.ceil(maxy * h)))
        cur, ref = image[y0:y1, x0:x1], reference[y0:y1, x0:x1]
        f = min(1.0, work_px / max(x1 - x0, y1 - y0))
        size = (max(8, round((x1 - x0) * f)), max(8, round((y1 - y0) * f)))
        cur = cv2.resize(cur, size, interpolation=cv2.INTER_AREA)
        ref = cv2.resize(ref, size, interpolation=cv2.INTER_AREA)
        view = cls(cur, ref, np.zeros((size[1], size[0]), bool), (x0 / w, y0 / h),
                   (size[0] / ((x1 - x0) / w), size[1] / ((y1 - y0) / h)))
        mask = view.raster(zone.polygon)
        for a in ignore:
            mask &= ~view.raster(a.polygon)
        return cls(cur, ref, mask, view.origin, view.scale)

    def raster(self, polygon) -> np.ndarray:
        """A normalised polygon as a bool mask of the working region."""
        (ox, oy), (sx, sy) = self.origin, self.scale
        poly = np.array([[(px - ox) * sx, (py - oy) * sy] for px, py in polygon], dtype=np.float64)
        out = np.zeros(self.mask.shape, np.uint8)
        cv2.fillPoly(out, [np.round(poly).astype(np.int32)], 1)
        return out.astype(bool)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> Box:
        """Working-pixel box → normalised frame box."""
        (ox, oy), (sx, sy) = self.origin, self.scale
        b = (ox + x0 / sx, oy + y0 / sy, ox + x1 / sx, oy + y1 / sy)
        return tuple(float(np.clip(v, 0.0, 1.0)) for v in b)  # type: ignore[return-value]
