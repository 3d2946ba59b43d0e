"""Camera health on real frames: a fixed street camera (intersection clip) and a fixed camera over
a whole day (PKLot UFPR05 stills), with faults made from those frames: repeated, covered,
blurred, shifted and rotated, silent. Healthy footage, dusk and early morning must stay quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from citypatrol.pipeline.config.models import HealthKind, HealthSettings
from citypatrol.pipeline.health.monitor import HealthEvent, HealthMonitor, health_blocks_rules, health_case
from citypatrol.pipeline.health.measures import (
    ReferenceMatcher,
    ViewStats,
    covered_reason,
    moved_reason,
    prepare,
    still_difference,
)
from citypatrol.streams import open_source
from citypatrol.streams.source import SourceState
from footage import encode

T0 = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)
DEFAULT = HealthSettings()


def at(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def decode(path: Path, step: float = 1.0, limit: int | None = None) -> list[np.ndarray]:
    """One frame every `step` seconds of the file."""
    out: list[np.ndarray] = []
    nxt = 0.0
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            if fr.time is not None and fr.time + 1e-6 >= nxt:
                out.append(fr.to_ndarray(format="bgr24"))
                nxt += step
                if limit and len(out) >= limit:
                    break
    return out


@pytest.fixture(scope="module")
def street(sample_video) -> list[np.ndarray]:
    """The intersection camera, one frame a second for 30 s (traffic, pedestrians)."""
    return decode(sample_video("intersection"))


@pytest.fixture(scope="module")
def pklot_day(assets):
    """A fixed camera over a parking lot from 06:15 to 18:50, one still every 5 minutes."""
    day = assets / "sequences/pklot_ufpr05_polo/day_2013-02-24_sunday"
    with open_source("ufpr05", str(day), 60.0, max_side=640) as src:
        frames = list(src.frames())
    assert len(frames) > 140
    return frames


def feed(monitor: HealthMonitor, images, start: float = 0.0, step: float = 1.0) -> list[tuple[float, HealthEvent]]:
    """Observe each image at T0 + start + i·step; the events with the stream second they came at."""
    out = []
    for i, img in enumerate(images):
        t = start + i * step
        out += [(t, ev) for ev in monitor.observe(img, t, at(t))]
    return out


def assert_paired(events: list[HealthEvent]) -> None:
    """Every end closes an open start of the same fault; a kind is never started twice at once."""
    open_: dict[HealthKind, HealthEvent] = {}
    for ev in events:
        if ev.active:
            assert ev.kind not in open_, f"{ev.kind} started twice"
            open_[ev.kind] = ev
        else:
            start = open_.pop(ev.kind)
            assert (ev.case_id, ev.started_at, ev.camera_id) == (start.case_id, start.started_at, start.camera_id)
            assert ev.ended_at >= ev.started_at


def noisy(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def darker(img: np.ndarray, gain: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return noisy((img.astype(np.float32) * gain).astype(np.uint8), sigma, rng)


def night(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Underexposed with a dark gamma and sensor noise: a street at night without the lamps' glare."""
    x = (img.astype(np.float32) / 255) ** 2.2 * 80
    return noisy(x.astype(np.uint8), 3, rng)


def shifted(img: np.ndarray, fx: float, fy: float, deg: float, zoom: float = 1.0) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, zoom)
    m[0, 2] += fx * w
    m[1, 2] += fy * h
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


# -- frozen ----------------------------------------------------------------------------------

def test_repeated_frame_is_frozen_after_the_threshold_and_ends_when_the_picture_moves(street):
    m = HealthMonitor("cam-1", None)
    events = feed(m, [street[5]] * 90)
    assert [(t, ev.kind, ev.active) for t, ev in events] == [(60.0, HealthKind.frozen, True)]
    start = events[0][1]
    assert start.started_at == at(0) and start.score == 1.0 and "unchanged" in start.detail
    assert m.rules_suspended  # a frozen picture would keep a parked car parked forever
    after = feed(m, street, start=90)
    assert [(t, ev.kind, ev.active) for t, ev in after] == [(100.0, HealthKind.frozen, False)]
    assert after[0][1].ended_at == at(90) and not m.rules_suspended
    assert_paired([ev for _, ev in events + after])


def test_moving_street_is_never_frozen(street):
    m = HealthMonitor("cam-1", None, HealthSettings(frozen_after_s=3))
    assert feed(m, street) == []
    diffs = []
    for i, img in enumerate(street):
        m.observe(img, i, at(i))
        if m.last.still_diff is not None:
            diffs.append(m.last.still_diff)
    assert min(diffs) > 4 * DEFAULT.frozen_max_diff


@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_static_scene_with_sensor_noise_through_h264_is_not_frozen(street, tmp_path, sigma):
    """Nothing moves, but a live sensor's noise (σ 0.8: a clean daytime sensor) survives the
    encoder, in keyframes and in the frames between them: not frozen."""
    rng = np.random.default_rng(7)
    still = street[5]
    clip = encode(tmp_path / "static.mp4", 30, lambda s: noisy(still, sigma, rng), fps=1, gop=10)
    m = HealthMonitor("cam-1", None, HealthSettings(frozen_after_s=15))
    assert feed(m, decode(clip)) == []
    assert m.last.still_diff > DEFAULT.frozen_max_diff


def test_hung_camera_stream_through_h264_is_frozen(street, tmp_path):
    """The same picture encoded over and over (a stuck sensor, an NVR holding its last frame):
    the decoded frames repeat. (An encoder that re-codes every keyframe at a new quality makes
    each keyframe differ like noise; see the module's limits.)"""
    clip = encode(tmp_path / "hung.mp4", 75, lambda s: street[5], fps=1, gop=120)
    m = HealthMonitor("cam-1", None)
    events = feed(m, decode(clip))
    assert [(t, ev.kind) for t, ev in events] == [(60.0, HealthKind.frozen)]


def test_running_osd_clock_does_not_hide_a_frozen_picture(street):
    def with_clock(second: int) -> np.ndarray:
        img = street[5].copy()
        text = (T0 + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")
        cv2.putText(img, text, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return img

    frames = [with_clock(s) for s in range(70)]
    assert still_difference(prepare(frames[0]).gray, prepare(frames[1]).gray, 0.0) > DEFAULT.frozen_max_diff
    m = HealthMonitor("cam-1", None)
    assert [ev.kind for _, ev in feed(m, frames)] == [HealthKind.frozen]


@pytest.mark.parametrize(
    ("changed_share", "ignore_share", "frozen"),
    [
        (0.0, 0.1, True),  # identical
        (0.05, 0.1, True),  # a clock, a blinking light
        (0.2, 0.1, False),  # real change in a fifth of the picture
        (0.05, 0.0, False),  # nothing ignored: any change counts
    ],
)
def test_still_difference_table(street, changed_share, ignore_share, frozen):
    a = prepare(street[5]).gray
    b = a.copy()
    rows = int(round(a.shape[0] * changed_share))
    b[:rows] = 255 - b[:rows]
    assert (still_difference(a, b, ignore_share) <= DEFAULT.frozen_max_diff) is frozen


# -- covered ---------------------------------------------------------------------------------

def _hand(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.GaussianBlur(cv2.resize(img, (w // 8, h // 8), interpolation=cv2.INTER_AREA), (0, 0), 5)
    blurred = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) * 0.25
    yy, xx = np.mgrid[:h, :w]
    vignette = 1 - ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * w / 2)
    return noisy((blurred * vignette[..., None]).astype(np.uint8), 2, rng)


FAULTS = {
    "black": ("dark", lambda img, rng: np.zeros_like(img)),
    "lens cap": ("dark", lambda img, rng: noisy(np.full_like(img, 2), 3, rng)),
    "painted grey": ("uniform", lambda img, rng: noisy(np.full_like(img, 128), 2, rng)),
    "white cloth": ("uniform", lambda img, rng: noisy(np.full_like(img, 225), 2, rng)),
    "smeared lens": ("blurred", lambda img, rng: cv2.GaussianBlur(img, (0, 0), img.shape[1] * 0.0125)),
    "hand": ("blurred", _hand),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_covered_picture_is_reported_then_ends(street, fault):
    reason, make = FAULTS[fault]
    rng = np.random.default_rng(3)
    m = HealthMonitor("cam-1", None)
    events = feed(m, street[:10])
    events += feed(m, [make(street[10 + i % 10], rng) for i in range(40)], start=10)
    events += feed(m, street[:12], start=50)
    kinds = [(t, ev.kind, ev.active) for t, ev in events]
    assert kinds == [(40.0, HealthKind.covered, True), (60.0, HealthKind.covered, False)], kinds
    start, end = events[0][1], events[1][1]
    assert start.started_at == at(10) and reason in start.detail and 0 <= start.score <= 1
    assert end.ended_at == at(50)
    assert not m.rules_suspended  # a blind camera fires no rules anyway; it is not a zone problem


def test_real_day_dusk_and_night_are_not_covered(street, pklot_day):
    rng = np.random.default_rng(5)
    early = [f.image for f in pklot_day[:12]]  # 06:15–07:15
    scenes = {
        "street": street,
        "parking lot, whole day": [f.image for f in pklot_day],
        "street at dusk": [darker(img, 0.3, 2, rng) for img in street[::3]],
        "parking lot early morning, underexposed": [darker(img, 0.12, 3, rng) for img in early],
        "street at night": [night(img, rng) for img in street[::3]],
        "parking lot at night": [night(img, rng) for img in early],
    }
    for name, images in scenes.items():
        m = HealthMonitor("cam-1", None, HealthSettings(covered_after_s=1))
        for i, img in enumerate(images):
            assert m.observe(img, i, at(i)) == [], name
            assert m.last.covered is None, (name, i, m.last.stats)


@pytest.mark.parametrize(
    ("mean", "peak", "spread", "sharpness", "reason"),
    [
        (110, 245, 45, 2.1, None),  # daytime street
        (12, 30, 3.0, 2.0, None),  # badly underexposed but structured
        (9, 70, 6.0, 3.0, None),  # night: dark on average, lamps bright
        (5, 60, 5.0, 2.0, None),  # very dark night, one lamp
        (5, 20, 5.0, 2.0, "dark"),  # no light at all
        (0, 0, 0, 0, "dark"),
        (128, 131, 1.5, 20, "uniform"),  # painted: noise makes it look "sharp", spread says flat
        (225, 230, 6.0, 1.0, "uniform"),  # bright flat cloth: 6 < 0.04 · 225
        (60, 120, 2.5, 1.0, None),  # dim flat wall, still above both limits
        (100, 200, 30, 0.05, "blurred"),
        (100, 200, 30, 0.2, None),
    ],
)
def test_covered_thresholds_table(mean, peak, spread, sharpness, reason):
    got = covered_reason(ViewStats(mean, peak, spread, sharpness), DEFAULT)
    assert (got[0] if got else None) == reason


# -- moved -----------------------------------------------------------------------------------

def test_shifted_and_rotated_camera_is_moved_suspends_rules_and_returns(street):
    m = HealthMonitor("cam-1", street[0])
    assert m.moved_check_enabled
    log = feed(m, street[:30])
    assert log == [] and not m.rules_suspended
    off = [shifted(street[i % 30], 0.08, 0.0, 3.0) for i in range(30, 110)]
    log += feed(m, off, start=30)
    log += feed(m, street, start=110)
    events = [ev for _, ev in log]
    assert [(t, ev.kind, ev.active) for t, ev in log] == [(90.0, HealthKind.moved, True), (120.0, HealthKind.moved, False)]
    assert events[0].started_at == at(30) and "shift +8" in events[0].detail and "rotation" in events[0].detail
    assert events[1].ended_at == at(110) and not m.rules_suspended
    assert_paired(events)

    # the runner's view, frame by frame: the property and the event replay agree
    m2 = HealthMonitor("cam-1", street[0])
    seen: list[HealthEvent] = []
    for i, img in enumerate(street[:30] + off + street):
        seen += m2.observe(img, i, at(i))
        assert m2.rules_suspended == health_blocks_rules(seen) == (90 <= i < 120), i


@pytest.mark.parametrize(
    ("fx", "fy", "deg", "zoom", "moved"),
    [
        (0.0, 0.0, 0.0, 1.0, False),
        (0.02, -0.01, 0.5, 1.0, False),  # within tolerance: zones still fit
        (0.0, 0.0, 1.5, 1.0, False),
        (0.08, 0.0, 0.0, 1.0, True),
        (0.0, -0.08, 0.0, 1.0, True),
        (0.0, 0.0, 4.0, 1.0, True),
        (0.0, 0.0, 0.0, 1.15, True),  # zoomed in
        (-0.08, 0.02, -3.0, 1.0, True),
    ],
)
def test_moved_tolerance_table_on_real_frames(street, fx, fy, deg, zoom, moved):
    matcher = ReferenceMatcher(street[0])
    mo = matcher.motion(prepare(shifted(street[15], fx, fy, deg, zoom)).gray)
    assert mo.matched
    assert mo.shift_x == pytest.approx(fx, abs=0.01) and mo.shift_y == pytest.approx(fy, abs=0.01)
    assert mo.rotation_deg == pytest.approx(-deg, abs=0.3) and mo.scale == pytest.approx(zoom, abs=0.02)
    assert (moved_reason(mo, DEFAULT) is not None) is moved


def test_a_day_of_sun_and_shadow_is_not_moved(pklot_day):
    m = HealthMonitor("ufpr05", pklot_day[0].image, HealthSettings(moved_check_s=0))
    worst = 0.0
    for f in pklot_day[::2]:  # every 10 minutes, 06:15 to 18:50
        assert m.observe(f.image, f.pts, f.wall) == [], f.wall
        mo = m.last.motion
        assert mo is not None and mo.matched, f.wall
        assert moved_reason(mo, m.settings) is None, (f.wall, mo)
        worst = max(worst, mo.shift)
    assert worst < DEFAULT.moved_shift / 4  # the real drift over a day is well inside the tolerance


def test_camera_turned_to_another_view_is_moved(street, sample_video):
    other = decode(sample_video("parking_lot"), step=0.5)
    mo = ReferenceMatcher(street[0]).motion(prepare(other[0]).gray)
    assert not mo.matched and mo.inliers < DEFAULT.moved_min_inliers
    assert moved_reason(mo, DEFAULT)[0] == 1.0
    m = HealthMonitor("cam-1", street[0])
    events = feed(m, [other[i % len(other)] for i in range(70)])
    assert [(t, ev.kind) for t, ev in events] == [(60.0, HealthKind.moved)]
    assert "does not match" in events[0][1].detail
    quiet = HealthMonitor("cam-1", street[0], HealthSettings(moved_when_unmatched=False))
    assert feed(quiet, [other[i % len(other)] for i in range(70)]) == []


def test_covered_camera_is_not_checked_for_moved(street):
    m = HealthMonitor("cam-1", street[0])
    events = feed(m, [np.zeros_like(street[0])] * 90)
    assert [ev.kind for _, ev in events] == [HealthKind.covered]
    assert m.last.motion is None


# -- offline ---------------------------------------------------------------------------------

def test_no_frames_is_offline_then_healthy_when_frames_return(street):
    m = HealthMonitor("cam-1", street[0])
    log = feed(m, street[:10])
    for t in range(10, 100, 5):
        log += [(t, ev) for ev in m.observe_source(SourceState.offline, at(t))]
    log += feed(m, street[:5], start=100)
    assert [(t, ev.kind, ev.active) for t, ev in log] == [(70, HealthKind.offline, True), (100.0, HealthKind.offline, False)]
    start, end = log[0][1], log[1][1]
    assert start.started_at == at(9) and "reconnecting" in start.detail
    assert end.ended_at == at(100) and end.duration_s == 91
    assert not m.rules_suspended
    assert_paired([start, end])


def test_offline_source_states():
    failed = HealthMonitor("cam-1", None)
    failed.observe(np.full((48, 64, 3), 90, np.uint8), 0, at(0))
    assert [ev.kind for ev in failed.observe_source(SourceState.failed, at(1))] == [HealthKind.offline]
    never = HealthMonitor("cam-2", None)
    assert never.observe_source(SourceState.opening, at(0)) == []
    assert never.tick(at(59)) == []
    assert [ev.started_at for ev in never.tick(at(60))] == [at(0)]
    assert never.tick(at(120)) == []  # one start, not one per tick
    done = HealthMonitor("cam-3", None)
    assert done.observe_source(SourceState.finished, at(0)) == [] and done.tick(at(3600)) == []


def test_recording_played_in_real_time_uses_the_runners_clock(street):
    """Frames carry the recording's clock (years ago); `now` keeps offline on the runner's clock."""
    old = datetime(2019, 1, 1, tzinfo=UTC)
    m = HealthMonitor("cam-1", None)
    for i, img in enumerate(street[:5]):
        m.observe(img, i, old + timedelta(seconds=i), now=at(i))
    assert m.tick(at(30)) == []
    assert [ev.started_at for ev in m.tick(at(64))] == [at(4)]


# -- cases, rules, settings ------------------------------------------------------------------

def test_health_case_mapping():
    start = HealthEvent("cam-1", HealthKind.moved, at(30), None, "view off its reference", 0.8)
    end = HealthEvent("cam-1", HealthKind.moved, at(30), at(300), "view back on its reference", 0.8)
    s = HealthSettings(maintenance_code="0999", maintenance_codes={HealthKind.offline: "950"})
    opened, closed = health_case(start, s), health_case(end, s)
    assert opened["category"] == "camera_fault" and opened["kind"] == "moved" and opened["code"] == "0999"
    assert opened["status"] == "open" and opened["resolved_at"] is None and opened["name"] == "镜头偏移"
    assert closed["case_id"] == opened["case_id"] and closed["event_id"] != opened["event_id"]
    assert closed["status"] == "resolved" and closed["duration_s"] == 270
    offline = HealthEvent("cam-1", HealthKind.offline, at(0), None, "no frames", 1.0)
    assert health_case(offline, s)["code"] == "950"
    assert health_case(start, HealthSettings(cases=False)) is None


def test_health_blocks_rules_replay():
    mv = HealthEvent("c", HealthKind.moved, at(0), None, "", 1.0)
    cov = HealthEvent("c", HealthKind.covered, at(5), None, "", 1.0)
    assert health_blocks_rules([mv])
    assert not health_blocks_rules([mv, HealthEvent("c", HealthKind.moved, at(0), at(9), "", 1.0)])
    assert not health_blocks_rules([cov])
    assert health_blocks_rules([cov], HealthSettings(suspend_rules=[HealthKind.covered]))
    assert not health_blocks_rules([mv], HealthSettings(suspend_rules=[]))


@pytest.mark.parametrize(
    "bad",
    [
        {"moved_check_s": 120, "moved_after_s": 60},
        {"frozen_ignore_share": 0.9},
        {"dark_mean": -1},
        {"offline_after_s": 0},
        {"moved_min_inliers": 2},
        {"suspend_rules": ["tilted"]},
        {"frozen_after": 60},  # unknown key
    ],
)
def test_health_settings_bounds(bad):
    with pytest.raises(ValidationError):
        HealthSettings(**bad)


def test_disabled_health_reports_nothing(street):
    m = HealthMonitor("cam-1", street[0], HealthSettings(enabled=False))
    assert feed(m, [np.zeros_like(street[0])] * 90) == [] and m.tick(at(1000)) == []


def test_flat_reference_turns_the_moved_check_off(street):
    m = HealthMonitor("cam-1", np.full_like(street[0], 128))
    assert m.moved_check_enabled
    assert feed(m, street[:20]) == []
    assert not m.moved_check_enabled and m.last.motion is None


# -- the live runner's adapter ---------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> datetime:
        return at(self.t)


def _status(cam_id: str, state: str):
    from citypatrol.pipeline.live.status import CameraStatus, LiveStatus

    now = at(0).isoformat()
    return LiveStatus("running", 1, now, now, cameras=(CameraStatus(cam_id, "", "rtsp://cam", state),))


def test_live_adapter_withholds_a_moved_camera_and_reports_offline(street, tmp_path):
    from citypatrol.pipeline.config.models import Camera, Config
    from citypatrol.pipeline.health.live import LiveHealth
    from citypatrol.pipeline.live.runner import _health_hooks
    from citypatrol.streams.frame import Frame

    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), street[0])
    cams = [Camera(id="cam-1", source="rtsp://cam", reference_image=ref), Camera(id="cam-2", source="rtsp://x", reference_image=tmp_path / "missing.png")]
    hooks = _health_hooks(Config(cameras=cams), cams, None)  # the runner finds the adapter by itself
    assert len(hooks) == 1 and isinstance(hooks[0], LiveHealth)
    hook = hooks[0]
    assert hook.monitors["cam-1"].moved_check_enabled and not hook.monitors["cam-2"].moved_check_enabled
    clock, got = _Clock(), []
    hook.clock = clock
    hook.sinks = [lambda ev: 1 / 0, got.append]  # a failing sink does not stop the next

    admitted = []
    for i in range(110):
        clock.t = i
        img = street[i % 30] if i < 30 else shifted(street[i % 30], 0.08, 0.0, 3.0)
        admitted.append(hook.admit(Frame("cam-1", float(i), at(i), img)))
    assert admitted == [True] * 90 + [False] * 20  # moved from 30 s, reported at 90 s
    assert [(ev.kind, ev.active) for ev in got] == [(HealthKind.moved, True)]

    for t in range(110, 200, 2):  # the frames stop; the source reconnects
        clock.t = t
        hook.on_status(_status("cam-1", "offline"))
    assert [(ev.kind, ev.started_at) for ev in got[1:]] == [(HealthKind.offline, at(109))]
    assert set(hook.active("cam-1")) == {HealthKind.moved, HealthKind.offline}
    assert list(hook.recent) == got


def test_live_hook_is_off_when_health_is_disabled():
    from citypatrol.pipeline.config.models import Camera, Config
    from citypatrol.pipeline.health.live import live_hook

    cams = [Camera(id="cam-1", source="rtsp://cam")]
    assert live_hook(Config(cameras=cams, health=HealthSettings(enabled=False)), cams) is None
    assert live_hook(Config(cameras=cams), cams) is not None
