"""The clock jumping by hours, forwards and backwards, under the live runner.

Two clocks can jump: the camera's (frames arrive with wall times hours off, then back: a camera
whose NTP failed, an OSD clock reset) and the runner's own (the machine's clock stepped by NTP or
by hand). Rules, dwell, expiry and case ids run on stream time (`pts`), so neither changes which
cases are opened, when (in stream time) or how often; wall times only label the cases.

- camera clock: the same recording run twice through `run_live` (every sampled frame analysed),
  once with steady wall times, once with the frames' wall times jumping +3 h and then −6 h:
  the same case ids, opening stream times, sightings and statuses; no expiry, no reopen.
- runner clock: a recording played in real time while the runner's wall clock (what
  `time.time()` and `datetime.now()` give the live feeds, the status book and camera health)
  jumps back 3 h and then forward 5 h: playback neither stalls for hours nor rushes, every
  sampled frame is analysed, the cases are those of a steady run, and camera health reports no
  camera offline or frozen because of the jump.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import threading
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import citypatrol.pipeline.health.live as health_live
import citypatrol.pipeline.live.runner as live_mod
import citypatrol.pipeline.live.feeds as live_feeds
import citypatrol.pipeline.live.status as live_status
from citypatrol.pipeline.live.runner import run_live
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.streams.frame import Frame
from citypatrol.streams.open import open_source
from citypatrol.streams.source import Source, SourceStats

from fault_support import CADENCE_S, DWELL_S, live_config, parked_camera

pytestmark = pytest.mark.slow

START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


class WallJumps(Source):
    """A real source whose frames' wall times jump: `jumps` maps a frame index to the offset from then on."""

    def __init__(self, inner: Source, jumps: dict[int, timedelta]) -> None:
        super().__init__(inner.camera_id, inner.source)
        self.inner, self.jumps = inner, jumps

    def frames(self) -> Iterator[Frame]:
        offset = timedelta(0)
        for i, frame in enumerate(self.inner.frames()):
            offset = self.jumps.get(i, offset)
            yield dataclasses.replace(frame, wall=frame.wall + offset)

    @property
    def stats(self) -> SourceStats:
        return self.inner.stats

    def close(self) -> None:
        self.inner.close()


def _cases(url: str):
    with open_store(url) as store:
        return {r.case_id: r for r in store.list_cases(limit=1000)}


def _summary(records) -> dict:
    return {cid: (r.case.category, round(r.case.opened_pts, 3), r.case.events, r.sightings, r.case.status.value,
                  [t.to_status.value for t in r.case.history]) for cid, r in records.items()}


def test_camera_clock_jumping_hours_changes_no_case(tmp_path, parked_video, detector, monkeypatch):
    steady_cfg = live_config(tmp_path / "steady", [parked_camera(str(parked_video)).model_copy(
        update={"start_time": START.isoformat()})], realtime=False)
    steady = run_live(steady_cfg, steady_cfg.cameras, detector)
    expected = _cases(steady_cfg.storage.database_url)
    assert len(expected) >= 2 and steady.errors == 0

    jumps = {6: timedelta(hours=3), 14: timedelta(hours=-3)}  # frame 6: +3 h; frame 14: 3 h before the start
    real_open = live_mod.open_source

    def jumping(*args, **kwargs) -> Source:
        return WallJumps(real_open(*args, **kwargs), jumps)

    monkeypatch.setattr(live_mod, "open_source", jumping)
    jumped_cfg = live_config(tmp_path / "jumped", steady_cfg.cameras, realtime=False)
    jumped = run_live(jumped_cfg, jumped_cfg.cameras, detector)
    got = _cases(jumped_cfg.storage.database_url)

    assert jumped.errors == 0 and jumped.status.cameras[0].frames_analysed == steady.status.cameras[0].frames_analysed
    assert _summary(got) == _summary(expected)  # same ids, stream times, sightings, statuses, history
    for cid, r in got.items():
        # wall times only label the case: opened_at is the (jumped) wall time of the opening frame
        pts_at_jump = 6 * CADENCE_S
        if r.case.opened_pts >= 14 * CADENCE_S:
            shift = timedelta(hours=-3)
        elif r.case.opened_pts >= pts_at_jump:
            shift = timedelta(hours=3)
        else:
            shift = timedelta(0)
        assert r.case.opened_at == expected[cid].case.opened_at + shift


class JumpingClock:
    """The runner's wall clock: real time plus an offset that changes `steps` seconds after start."""

    def __init__(self, steps: list[tuple[float, float]]) -> None:
        self.t0 = time.monotonic()
        self.steps = steps

    def offset(self) -> float:
        elapsed = time.monotonic() - self.t0
        return sum(off for after, off in self.steps if elapsed >= after)

    def time(self) -> float:
        return time.time() + self.offset()

    def now(self, tz=None) -> datetime:  # noqa: ANN001
        return datetime.now(tz or UTC) + timedelta(seconds=self.offset())


class _PatchedTime:
    """The `time` module with its wall clock replaced by `clock`; everything else as it is."""

    def __init__(self, clock: JumpingClock) -> None:
        self.time = clock.time

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def _patched_time(clock: JumpingClock) -> _PatchedTime:
    return _PatchedTime(clock)


def test_runner_clock_jumping_hours_neither_stalls_nor_changes_cases(tmp_path, parked_video, detector, monkeypatch, caplog):
    short = tmp_path / "parked_16s.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(parked_video), "-t", "16", "-c", "copy", str(short)], check=True)
    steady_cfg = live_config(tmp_path / "steady", [parked_camera(str(short), dwell=6.0)], realtime=False)
    steady = run_live(steady_cfg, steady_cfg.cameras, detector)
    expected = _cases(steady_cfg.storage.database_url)
    assert expected

    clock = JumpingClock([(4.0, -3 * 3600.0), (9.0, 5 * 3600.0)])  # back 3 h at 4 s, then 2 h ahead of real time at 9 s
    shim = _patched_time(clock)
    monkeypatch.setattr(live_feeds, "time", shim)
    monkeypatch.setattr(live_status, "time", shim)
    monkeypatch.setattr(health_live, "datetime", types.SimpleNamespace(now=clock.now))
    caplog.set_level(logging.INFO, logger="citypatrol.health")
    cfg = live_config(tmp_path / "jumped", steady_cfg.cameras, realtime=True, status_interval_s=0.5)
    stop = threading.Event()
    timer = threading.Timer(120, stop.set)  # a stalled playback would otherwise wait for hours
    timer.start()
    started = time.monotonic()
    try:
        result = run_live(cfg, cfg.cameras, detector, stop=stop)
    finally:
        timer.cancel()
    took = time.monotonic() - started
    assert not stop.is_set(), f"playback stalled after the clock jumped ({took:.0f} s)"
    (cam,) = result.status.cameras
    assert cam.frames_analysed == steady.status.cameras[0].frames_analysed and cam.skips == 0, cam
    assert _summary(_cases(cfg.storage.database_url)) == _summary(expected)
    health = [r.getMessage() for r in caplog.records if r.name == "citypatrol.health" and r.levelno >= logging.WARNING]
    assert not health, health  # no camera reported offline or frozen because the clock moved
