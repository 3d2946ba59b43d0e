"""Picture measures behind camera health: is the picture still, blind, or off its preset?

Pure functions and one small class over numpy arrays; no I/O, no clock. `HealthMonitor`
(`pipeline/health/monitor.py`) turns their readings into start/end events over time.

- `still_difference`: how much the picture changed between two frames, robust to a small
  changing area (an OSD clock). Frozen = this stays at a fraction of a grey level.
- `view_stats` / `covered_reason`: mean, brightest highlights, spread and sharpness of the
  picture; dark, uniform or blurred = covered.
- `ReferenceMatcher`: where the picture sits against the reference image its zones were drawn
  on (ORB features + a RANSAC similarity transform); `moved_reason` compares that with the
  tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from citypatrol.pipeline.config.models import HealthSettings

WORK_PX = 640  # long side of the picture used for stillness and feature matching
STATS_PX = 160  # long side used for covered measures: averaging 4×4 pixels hides sensor noise
GRID = 16  # stillness is judged per block of a GRID × GRID grid
ORB_FEATURES = 1000
RANSAC_PX = 3.0  # reprojection tolerance at WORK_PX
MIN_SCALE, MAX_SCALE = 0.5, 2.0  # a "match" outside this zoom range is a coincidence


def _resized(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = long_side / max(h, w)
    if f >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2GRAY)


@dataclass(frozen=True, slots=True)
class Views:
    """A frame prepared once for every measure."""

    gray: np.ndarray  # uint8, long side ≤ WORK_PX
    small: np.ndarray  # float32, long side ≤ STATS_PX


def prepare(image: np.ndarray) -> Views:
    """Grey work pictures of a BGR (or grey) frame."""
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {image.shape}")
    gray = _resized(_gray(image), WORK_PX)
    return Views(gray=gray, small=_resized(gray, STATS_PX).astype(np.float32))


# -- frozen -----------------------------------------------------------------------------------

def still_difference(a: np.ndarray, b: np.ndarray, ignore_share: float = 0.1) -> float:
    """Grey levels by which picture `b` differs from `a` (same-size grey arrays).

    Per block of a 16×16 grid, the mean absolute difference; the result is the block value
    that all but `ignore_share` of the blocks stay under, so a running OSD clock or a blinking
    light (a few blocks) does not count as change. A live camera, even on an empty street,
    measures ≥ 0.3 here from sensor noise alone; repeated frames measure 0.
    """
    if a.shape != b.shape:
        return float("inf")
    d = cv2.absdiff(a, b).astype(np.float32)
    blocks = cv2.resize(d, (GRID, GRID), interpolation=cv2.INTER_AREA)
    return float(np.quantile(blocks, 1.0 - ignore_share))


# -- covered ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ViewStats:
    mean: float  # mean brightness, 0–255
    peak: float  # 99.5th brightness percentile: lamps, lit windows, headlights
    spread: float  # brightness std on the STATS_PX picture (noise averaged out)
    sharpness: float  # Laplacian variance / brightness variance on the STATS_PX picture


def view_stats(views: Views) -> ViewStats:
    small = views.small
    var = float(small.var())
    lap = cv2.Laplacian(small, cv2.CV_32F)
    return ViewStats(
        mean=float(views.gray.mean()),
        peak=float(np.percentile(views.gray, 99.5)),
        spread=float(np.sqrt(var)),
        sharpness=float(lap.var()) / max(var, 1e-6),
    )


def _severity(value: float, limit: float) -> float:
    return float(np.clip(1.0 - value / limit, 0.0, 1.0)) if limit > 0 else 1.0


def covered_reason(st: ViewStats, s: HealthSettings) -> tuple[str, float, str] | None:
    """('dark' | 'uniform' | 'blurred', severity 0..1, detail) when the camera sees nothing; else None.

    - dark: mean below `dark_mean` AND no highlight above `dark_peak`. A night street keeps its
      lamps, windows and headlights (its 99.5th percentile stays high), so darkness alone never
      counts; a lens cap or a black bag has no highlight.
    - uniform: spread below `uniform_std`, or below `uniform_contrast` × mean (a white cloth is
      bright but flat). Measured on a 160-px picture so sensor noise, strongest at night, does
      not pass for structure.
    - blurred: Laplacian variance relative to brightness variance below `blur_sharpness`: the
      ratio ignores exposure and contrast, so dim or foggy scenes keep their score; a smeared or
      misted lens, or a hand in front of it, loses fine structure.
    """
    if st.mean < s.dark_mean and st.peak < s.dark_peak:
        return "dark", _severity(st.mean, s.dark_mean), f"dark picture (mean brightness {st.mean:.1f}, brightest {st.peak:.0f})"
    limit = max(s.uniform_std, s.uniform_contrast * st.mean)
    if st.spread < limit:
        return "uniform", _severity(st.spread, limit), f"uniform picture (spread {st.spread:.2f} at brightness {st.mean:.0f})"
    if st.sharpness < s.blur_sharpness:
        return "blurred", _severity(st.sharpness, s.blur_sharpness), f"blurred picture (sharpness {st.sharpness:.3f})"
    return None


# -- moved ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Motion:
    """Where the picture sits against the reference. Shifts are of the picture centre, as a share of width/height."""

    matched: bool  # enough features agree on one transform
    inliers: int
    matches: int
    shift_x: float = 0.0
    shift_y: float = 0.0
    rotation_deg: float = 0.0
    scale: float = 1.0

    @property
    def shift(self) -> float:
        return max(abs(self.shift_x), abs(self.shift_y))


class ReferenceMatcher:
    """ORB features of a camera's reference image, to measure how far a frame is off that view.

    The reference is scaled to each frame's work size (its features are cached per size), so a
    reference taken at another resolution still works. `usable` is False for a reference with too
    little texture to match (then the moved check is off).
    """

    def __init__(self, reference: np.ndarray, min_inliers: int = 20) -> None:
        self.reference = reference
        self.min_inliers = min_inliers
        self._orb = cv2.ORB_create(ORB_FEATURES)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self._cache: dict[tuple[int, int], tuple[tuple, np.ndarray | None]] = {}

    def _features(self, shape: tuple[int, int]) -> tuple[tuple, np.ndarray | None]:
        if shape not in self._cache:
            ref = cv2.resize(_gray(self.reference), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            self._cache = {shape: self._orb.detectAndCompute(ref, None)}
        return self._cache[shape]

    def usable(self, shape: tuple[int, int]) -> bool:
        kp, desc = self._features(shape)
        return desc is not None and len(kp) >= self.min_inliers

    def motion(self, gray: np.ndarray) -> Motion:
        """The similarity transform (shift, rotation, zoom) from the reference to `gray` (a Views.gray)."""
        h, w = gray.shape[:2]
        kr, dr = self._features((h, w))
        kc, dc = self._orb.detectAndCompute(gray, None)
        if dr is None or dc is None or len(kc) < 3:
            return Motion(False, 0, 0)
        matches = self._matcher.match(dr, dc)
        if len(matches) < self.min_inliers:
            return Motion(False, 0, len(matches))
        src = np.float32([kr[m.queryIdx].pt for m in matches])
        dst = np.float32([kc[m.trainIdx].pt for m in matches])
        m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000)
        inliers = int(inl.sum()) if inl is not None else 0
        if m is None or inliers < self.min_inliers:
            return Motion(False, inliers, len(matches))
        scale = float(np.hypot(m[0, 0], m[1, 0]))
        if not MIN_SCALE <= scale <= MAX_SCALE:
            return Motion(False, inliers, len(matches))
        cx, cy = w / 2.0, h / 2.0
        nx, ny = m @ np.array([cx, cy, 1.0])
        return Motion(
            True, inliers, len(matches),
            shift_x=float((nx - cx) / w), shift_y=float((ny - cy) / h),
            rotation_deg=float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), scale=scale,
        )


def moved_reason(mo: Motion, s: HealthSettings) -> tuple[float, str] | None:
    """(severity 0..1, detail) when the view is off its reference beyond the tolerances; else None.

    Severity is how far past the tolerance the worst measure is (1.0 = twice the tolerance or
    more, or no match at all).
    """
    if not mo.matched:
        if not s.moved_when_unmatched:
            return None
        return 1.0, f"view does not match the reference image ({mo.inliers} of {mo.matches} features agree)"
    over = max(mo.shift / s.moved_shift, abs(mo.rotation_deg) / s.moved_rotation_deg, abs(mo.scale - 1.0) / s.moved_scale)
    if over <= 1.0:
        return None
    return float(min(1.0, over - 1.0)), (
        f"view off its reference: shift {mo.shift_x:+.1%} x {mo.shift_y:+.1%} y, "
        f"rotation {mo.rotation_deg:+.1f}°, zoom {mo.scale:.2f}× ({mo.inliers} features agree)"
    )
