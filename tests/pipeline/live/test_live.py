"""The live runner end to end: real footage, the real default detector, a real RTSP server on loopback.

- a recording played through the live runner as fast as possible gives exactly the batch cases;
- batch = live (issue 4 item 10): one parked-car recording analysed in batch and served over
  RTSP through the live path gives the same cases: same categories and places, opened at the
  dwell after each run's first frame within one cadence step;
- `citypatrol run` over two loopback cameras: /metrics per camera, `citypatrol status`, an RTSP
  server killed mid-run (its camera reconnects, the other keeps going), SIGTERM → exit 0 with
  every case's evidence stored; no password anywhere in metrics, status or logs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from fixtures_streams import free_port, rtsp_server_factory  # noqa: F401
from footage import PARKED_BAYS, PARKED_CARS, PARKING, frame_at

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.batch.runner import run_batch
from citypatrol.pipeline.config.models import Camera, Config, LiveConfig, StorageConfig, Zone, ZoneKind
from citypatrol.pipeline.evaluation.scoring import box_iou
from citypatrol.pipeline.live.runner import run_live
from citypatrol.pipeline.live.feeds import Arrival, Feed, FrameBoard, FrameRing
from citypatrol.streams.open import open_source
from citypatrol.pipeline.live.status import read_status
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.store.records import CaseRecord
from citypatrol.streams.frame import Frame

pytestmark = pytest.mark.slow

DWELL_S = 20.0
CADENCE_S = 2.0
PASSWORD = "Live-Pa55-w0rd"


@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


@pytest.fixture(scope="module")
def parked_video(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """70 s of a real parking-lot frame with three parked cars, H.264 at 5 fps, 1 s GOP, B-frames."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    folder = tmp_path_factory.mktemp("live_footage")
    still = folder / "parked.png"
    cv2.imwrite(str(still), frame_at(assets / PARKING, 4.0))
    out = folder / "parked_70s.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "5", "-i", str(still), "-t", "70", "-c:v", "libx264",
         "-preset", "veryfast", "-x264-params", "keyint=5:min-keyint=5:scenecut=0", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _camera(source: str, cam_id: str = "lot", dwell: float = DWELL_S, cadence: float = CADENCE_S) -> Camera:
    zone = Zone(id="bays", name="消防通道 fire lane", kind=ZoneKind.no_parking, polygon=PARKED_BAYS)
    return Camera(id=cam_id, name="停车场 lot", source=source, cadence_s=cadence, zones=[zone],
                  rules={"illegal_parking": {"dwell_s": dwell}})  # fmt: skip


def _config(tmp: Path, cameras: list[Camera], **live: object) -> Config:
    storage = StorageConfig(database_url=f"sqlite:///{tmp / 'live.db'}", evidence_dir=tmp / "evidence", clip_seconds=4)
    return Config(cameras=cameras, storage=storage, live=LiveConfig(metrics_port=0, status_file=tmp / "status.json", **live))


def _cases(config: Config) -> list[CaseRecord]:
    with open_store(config.storage.database_url) as store:
        return store.list_cases(limit=1000)


@pytest.fixture(scope="module")
def batch_cases(parked_video: Path, detector, tmp_path_factory) -> list[CaseRecord]:
    tmp = tmp_path_factory.mktemp("batch")
    config = _config(tmp, [_camera(str(parked_video))])
    result = run_batch(config, config.cameras, tmp / "out", detector, show_progress=False)
    on_cars = [r for r in result.cases if max(box_iou(r.case.box, car) for car in PARKED_CARS) > 0.4]
    assert len(on_cars) >= 2 and len(on_cars) == len(result.cases), "the parked cars in the zone are the cases, nothing else"
    return result.cases


def test_a_recording_played_as_fast_as_possible_gives_the_batch_cases(tmp_path, parked_video, detector, batch_cases):
    config = _config(tmp_path, [_camera(str(parked_video))], realtime=False)
    result = run_live(config, config.cameras, detector)  # ends by itself once the footage is read
    live = _cases(config)
    assert sorted((r.case_id, r.case.category, r.case.opened_pts) for r in live) == sorted(
        (r.case_id, r.case.category, r.case.opened_pts) for r in batch_cases
    )  # deterministic case ids: the very same cases
    (cam,) = result.status.cameras
    assert cam.frames_analysed == 35 and cam.skips == 0 and cam.cases_opened == len(batch_cases)
    assert result.status.state == "stopped" and read_status(config.live.status_file).state == "stopped"
    assert result.errors == 0 and result.evidence_errors == 0


class _FirstFrames:
    """A live hook: the stream time of every analysed frame, and the moment enough was seen."""

    def __init__(self, stop: threading.Event, seconds_after_first: float) -> None:
        self.pts: list[float] = []
        self._stop, self._after = stop, seconds_after_first

    def on_frame(self, result: FrameResult) -> None:
        self.pts.append(result.frame.pts)
        if result.frame.pts - self.pts[0] >= self._after:
            self._stop.set()


def test_batch_equals_live_over_rtsp(tmp_path, parked_video, detector, batch_cases, rtsp_server_factory):
    server = rtsp_server_factory({"lot": parked_video})
    config = _config(tmp_path, [_camera(server.url("lot"))])
    stop = threading.Event()
    watch = _FirstFrames(stop, seconds_after_first=DWELL_S + 3 * CADENCE_S)
    timer = threading.Timer(90, stop.set)  # a safety net: the hook stops the run long before
    timer.start()
    try:
        result = run_live(config, config.cameras, detector, stop=stop, hooks=[watch])
    finally:
        timer.cancel()
    live = _cases(config)
    assert len(live) == len(batch_cases), ([r.case.box for r in live], [r.case.box for r in batch_cases])
    first_live, first_batch = watch.pts[0], 0.0
    for b in batch_cases:
        match = max(live, key=lambda r: box_iou(r.case.box, b.case.box))
        assert match.case.category == b.case.category
        assert box_iou(match.case.box, b.case.box) > 0.5, (match.case.box, b.case.box)
        live_after, batch_after = match.case.opened_pts - first_live, b.case.opened_pts - first_batch
        assert abs(live_after - batch_after) <= CADENCE_S + 0.1, (live_after, batch_after)
        for after in (live_after, batch_after):
            assert DWELL_S - 0.1 <= after <= DWELL_S + CADENCE_S + 0.1, after
        kinds = {e.kind.value for e in match.evidence}
        assert kinds == {"frame", "crop", "clip"}, kinds  # the clip comes from the live ring buffer
    (cam,) = result.status.cameras
    assert cam.frames_analysed == len(watch.pts) and cam.reconnects == 0 and cam.state == "closed"
    assert cam.lag_s is not None and cam.lag_s < 10 * CADENCE_S


def _arrival(cam: str, pts: float, posted: float) -> Arrival:
    return Arrival(Frame(cam, pts, datetime.now(UTC), np.zeros((4, 4, 3), np.uint8)), due=time.time(), posted=posted)


def test_board_newest_frame_wins_skips_are_counted_and_cameras_take_turns():
    board = FrameBoard()
    for t, (cam, pts) in enumerate([("a", 1.0), ("b", 1.0), ("a", 2.0), ("a", 3.0), ("c", 1.0), ("b", 2.0)]):
        board.put(_arrival(cam, pts, posted=float(t)))
    assert {c: board.skips_of(c) for c in "abc"} == {"a": 2, "b": 1, "c": 0}
    # a and b have waited longest (since t=0 and t=1, however often their frames were replaced)
    first = board.take(2, timeout=0)
    assert [(a.frame.camera_id, a.frame.pts) for a in first] == [("a", 3.0), ("b", 2.0)]
    assert [(a.frame.camera_id, a.frame.pts) for a in board.take(2, timeout=0)] == [("c", 1.0)]
    assert board.take(2, timeout=0.01) == []


def test_a_feed_counts_the_cpu_its_camera_costs_to_decode(sample_video):
    board = FrameBoard()
    source = open_source("x", str(sample_video("intersection")), 2.0)  # keyframes every 4.3 s: every frame decoded
    feed = Feed(source, board, realtime=False, clip_seconds=0, cadence_s=2.0).start()
    while not feed.done.is_set():  # recorded footage waits for each frame to be taken
        board.take(1, timeout=0.05)
    feed.close()
    assert feed.stats.frames_decoded > 800
    assert 0.05 < feed.cpu_seconds < 60, feed.cpu_seconds


def test_the_clip_ring_keeps_the_newest_frames_compact_and_faithful(sample_video):
    frames = [frame_at(sample_video("london"), t) for t in (0.0, 1.0, 2.0, 3.0)]  # 1080p
    ring = FrameRing(3)
    for f in frames:
        ring.append(f)
    kept = ring.frames()
    assert len(kept) == 3 and all(k.shape == frames[0].shape for k in kept)
    def diff(a, b) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
    for i, k in enumerate(kept):  # oldest dropped, order kept, each picture nearest the frame it was
        own = diff(k, frames[i + 1])
        assert own < 4.0 and all(own < diff(k, f) for j, f in enumerate(frames) if j != i + 1)
    assert ring.nbytes < 0.15 * sum(f.nbytes for f in frames[1:])  # far smaller than decoded frames
    off = FrameRing(0)
    off.append(frames[0])
    assert off.frames() == []


def test_board_waits_for_the_detector_when_every_frame_must_be_analysed():
    board, stop, done = FrameBoard(), threading.Event(), threading.Event()
    board.put(_arrival("a", 1.0, 0.0), wait_taken=stop)

    def second() -> None:
        board.put(_arrival("a", 2.0, 1.0), wait_taken=stop)
        done.set()

    threading.Thread(target=second, daemon=True).start()
    assert not done.wait(0.3), "the second frame must wait until the first is taken"
    assert [a.frame.pts for a in board.take(4, timeout=0)] == [1.0]
    assert done.wait(2) and [a.frame.pts for a in board.take(4, timeout=1)] == [2.0]
    assert board.skips_of("a") == 0


# -- `citypatrol run` as a process ------------------------------------------------------------------

EXE = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]


def _wait(what: str, check: Callable[[], bool], timeout_s: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"citypatrol run exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _metrics(url: str) -> dict[tuple[str, str], float]:
    """{(series name, camera): value} from the Prometheus text format."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert PASSWORD not in text
    out = {}
    for m in re.finditer(r'^(citypatrol_camera_\w+)\{camera="([^"]+)"\} (\S+)$', text, re.M):
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def test_run_command_two_cameras_metrics_status_outage_and_sigterm(tmp_path, parked_video, rtsp_server_factory):
    server_a = rtsp_server_factory({"a": parked_video}, user="operator", password=PASSWORD)
    server_b = rtsp_server_factory({"b": parked_video})
    port, api_port = free_port(), free_port()
    status_file = tmp_path / "status.json"
    cfg = {
        "cameras": [_camera(server_a.url("a"), "cam-a", dwell=6, cadence=1).model_dump(mode="json"),
                    _camera(server_b.url("b"), "cam-b", dwell=6, cadence=1).model_dump(mode="json")],
        "storage": {"database_url": f"sqlite:///{tmp_path / 'city.db'}", "evidence_dir": str(tmp_path / "evidence"), "clip_seconds": 3},
        "live": {"metrics_port": port, "status_file": str(status_file), "status_interval_s": 0.5,
                 "read_timeout_s": 2, "backoff_max_s": 1},
        "api": {"port": api_port},
    }  # fmt: skip
    config_file = tmp_path / "city.yaml"
    config_file.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    log = tmp_path / "run.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(EXE + ["run", "--config", str(config_file)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        cams = lambda: {c.camera_id: c for c in read_status(status_file).cameras}  # noqa: E731
        _wait("cases on both cameras", lambda: all(c.cases_opened >= 1 for c in cams().values()), 90, proc, log)

        url = f"http://127.0.0.1:{port}/metrics"
        m = _metrics(url)
        for cam in ("cam-a", "cam-b"):
            for series in ("frames_analysed_total", "analysed_fps", "lag_seconds", "skipped_frames_total", "reconnects_total",
                           "decode_errors_total", "cases_opened_total", "up"):  # fmt: skip
                assert (f"citypatrol_camera_{series}", cam) in m, (series, cam, sorted(m))
            assert m[("citypatrol_camera_up", cam)] == 1 and m[("citypatrol_camera_frames_analysed_total", cam)] >= 5
            assert 0 <= m[("citypatrol_camera_lag_seconds", cam)] < 10

        # the review center runs in the same process, on the same store, behind sign-in
        assert urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=5).status == 200
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/cases", timeout=5)
            raise AssertionError("the case list answered without sign-in")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401

        shown = subprocess.run(EXE + ["status", "--config", str(config_file)], capture_output=True, text=True, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "cam-a" in shown.stdout and "cam-b" in shown.stdout and "running" in shown.stdout
        assert PASSWORD not in shown.stdout + shown.stderr

        before = cams()
        server_b.kill()  # camera b's server dies; a keeps streaming
        _wait("camera b reconnecting", lambda: cams()["cam-b"].reconnects >= 2 and cams()["cam-b"].state == "offline", 30, proc, log)
        _wait("camera a going on", lambda: cams()["cam-a"].frames_analysed >= before["cam-a"].frames_analysed + 4, 30, proc, log)
        m = _metrics(url)
        assert m[("citypatrol_camera_reconnects_total", "cam-b")] >= 2 and m[("citypatrol_camera_up", "cam-b")] == 0
        assert m[("citypatrol_camera_reconnects_total", "cam-a")] == 0 and m[("citypatrol_camera_up", "cam-a")] == 1
        assert m[("citypatrol_camera_decode_errors_total", "cam-b")] >= 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    final = read_status(status_file)
    assert final.state == "stopped" and {c.state for c in final.cameras} == {"closed"}
    text = log.read_text() + status_file.read_text()
    assert PASSWORD not in text and "rtsp://***@127.0.0.1" in text

    with open_store(cfg["storage"]["database_url"]) as store:
        cases = store.list_cases(limit=1000)
    assert {r.case.camera_id for r in cases} == {"cam-a", "cam-b"}
    assert len(cases) == sum(c.cases_opened for c in final.cameras)
    for r in cases:  # no half-written case: every opened case has its evidence, on disk as recorded
        assert {e.kind.value for e in r.evidence} == {"frame", "crop", "clip"}, (r.case_id, r.evidence)
        for e in r.evidence:
            data = (tmp_path / "evidence" / e.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == e.sha256 and len(data) == e.size
