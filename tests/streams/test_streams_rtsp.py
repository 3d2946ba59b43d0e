"""Live cameras through citypatrol.streams against a real RTSP server on loopback (GstRtspServer)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fixtures_streams import free_port, h264_clip, rtsp_server, rtsp_server_factory  # noqa: F401

from citypatrol.streams import Frame, Source, SourceError, SourceState, open_source
from citypatrol.streams.live_clock import LiveClock

PASSWORD = "Pa55-w0rd-3xtra"


def _wait_state(src: Source, states: set[SourceState], timeout_s: float) -> SourceState:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if src.stats.state in states:
            return src.stats.state
        time.sleep(0.05)
    raise AssertionError(f"state {src.stats.state} never became one of {states}; stats {src.stats}")


def _take(frames: Iterator[Frame], n: int) -> list[Frame]:
    return [next(frames) for _ in range(n)]


@pytest.mark.parametrize(
    "events, expected",
    [
        # (stream_t, elapsed) → pts: follows stream time, never ahead of the clock.
        ([(10.0, 1.0), (10.5, 1.52), (11.0, 2.01)], [1.0, 1.5, 2.0]),
        # Connect burst: old frames arrive fast; pts stays at or below the clock.
        ([(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (1.5, 1.1), (2.0, 1.6)], [1.0, 1.001, 1.002, 1.1, 1.6]),
        # Timestamps jump back (server restarted its clock): re-anchored, still increasing.
        ([(50.0, 3.0), (50.5, 3.5), (0.0, 4.0), (0.5, 4.5)], [3.0, 3.5, 4.0, 4.5]),
        ([(None, 2.0), (None, 2.0), (None, 3.0)], [2.0, 2.001, 3.0]),
    ],
)
def test_live_clock(events, expected):
    clock = LiveClock()
    assert [clock.pts(t, e) for t, e in events] == pytest.approx(expected, abs=1e-9)


def test_live_clock_continues_across_reconnects():
    clock = LiveClock()
    before = [clock.pts(t, 1.0 + t) for t in (0.0, 0.5, 1.0)]
    clock.new_connection()
    after = [clock.pts(t, 9.0 + (t - 100.0)) for t in (100.0, 100.5)]  # new session, unrelated timestamps
    assert before == [1.0, 1.5, 2.0] and after == [9.0, 9.5]


def test_frames_arrive_from_a_live_camera(rtsp_server):
    with open_source("cam", rtsp_server.url("cam"), 1.0, reconnect=False, open_timeout_s=10) as src:
        frames = _take(src.frames(), 8)
        stats = src.stats
        decode_cpu_s = src.decode_cpu_s  # what this camera costs to read (balancing measures it)
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:])), pts
    # About the cadence apart (frames are taken on a 1 s grid, so single gaps vary by a GOP).
    assert all(0.4 <= b - a <= 2.5 for a, b in zip(pts, pts[1:])), pts
    assert 0.8 <= (pts[-1] - pts[0]) / (len(pts) - 1) <= 1.5, pts
    assert [f.index for f in frames] == list(range(8))
    assert all(f.image.shape == (240, 320, 3) and f.camera_id == "cam" for f in frames)
    assert frames[-1].wall > frames[0].wall
    # 0.5 s GOP under a 1 s cadence: only keyframes are decoded, from the start (a restarted worker
    # does not decode every frame of every camera while it learns their keyframe spacing), each
    # one drained at once (not held back ~2 GOPs by the B-frame reorder buffer).
    assert all(f.keyframe for f in frames)
    assert stats.frames_decoded <= 3 * 8 and stats.state is SourceState.running
    assert src.stats.state is SourceState.closed
    assert 0 < decode_cpu_s < 8, decode_cpu_s


def test_keyframes_rarer_than_the_cadence_decode_every_frame_after_the_watch(rtsp_server_factory, h264_clip):
    server = rtsp_server_factory({"cam": h264_clip("intersection", seconds=12, gop_s=3.0)})
    with open_source("cam", server.url("cam"), 1.0, reconnect=False, open_timeout_s=10) as src:
        frames = _take(src.frames(), 6)
        decoded = src.stats.frames_decoded
    # the first 4 s watched on keyframes (3 s apart), then every frame from the next keyframe on
    assert frames[0].keyframe and not all(f.keyframe for f in frames[-3:])
    pts = [f.pts for f in frames]
    assert all(0.4 <= b - a <= 1.6 for a, b in zip(pts[-3:], pts[-2:])), pts  # one a cadence once every frame is decoded
    assert decoded > 25, decoded


def test_reconnects_after_the_server_dies_and_returns(rtsp_server):
    opts = dict(reconnect=True, open_timeout_s=5, read_timeout_s=3, backoff_initial_s=0.2, backoff_max_s=1.0)
    with open_source("cam", rtsp_server.url("cam"), 0.5, **opts) as src:
        frames = src.frames()
        before = _take(frames, 3)
        rtsp_server.kill()
        _wait_state(src, {SourceState.offline}, timeout_s=10)
        time.sleep(1.0)  # a few refused attempts while it is down
        assert src.stats.state is SourceState.offline
        rtsp_server.start()
        after = _take(frames, 3)
        stats = src.stats
    pts = [f.pts for f in before + after]
    assert all(b > a for a, b in zip(pts, pts[1:])), pts
    assert after[0].pts - before[-1].pts >= 1.0  # the outage shows as a gap in stream time
    assert stats.reconnects >= 2 and stats.state is SourceState.running
    assert "connection" in stats.last_error or "ended" in stats.last_error
    assert [f.index for f in before + after] == list(range(6))


def test_hung_camera_times_out_and_recovers(rtsp_server):
    opts = dict(open_timeout_s=2, read_timeout_s=1.5, stall_timeout_s=3, backoff_initial_s=0.2, backoff_max_s=0.5)
    with open_source("cam", rtsp_server.url("cam"), 0.5, **opts) as src:
        frames = src.frames()
        before = _take(frames, 2)
        rtsp_server.pause()  # connection stays open, nothing arrives
        try:
            _wait_state(src, {SourceState.offline}, timeout_s=8)
        finally:
            rtsp_server.resume()
        after = _take(frames, 2)
        stats = src.stats
    assert after[0].pts > before[-1].pts + 1.5
    assert stats.reconnects >= 1 and stats.state is SourceState.running


def test_dead_urls_fail_clearly_while_another_camera_keeps_delivering(rtsp_server):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers: a hung camera
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    try:
        with open_source("good", rtsp_server.url("cam"), 0.5) as good:
            frames = good.frames()
            _take(frames, 2)
            refused_url = f"rtsp://127.0.0.1:{free_port()}/cam"
            with pytest.raises(SourceError) as refused:
                open_source("dead1", refused_url, 1.0, reconnect=False, open_timeout_s=3)
            assert "dead1" in str(refused.value) and "connection refused" in str(refused.value)

            t0 = time.monotonic()
            with pytest.raises(SourceError) as hung:
                open_source("dead2", f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x", 1.0, reconnect=False, open_timeout_s=2)
            waited = time.monotonic() - t0
            assert "no answer within 2 s" in str(hung.value)
            assert 1.5 <= waited < 8  # bounded by the open timeout, not hanging

            # Reconnecting mode: offline with retries, then a clear error once they are used up.
            with open_source("dead3", refused_url, 1.0, max_retries=2, backoff_initial_s=0.1, backoff_max_s=0.2) as dead:
                assert _wait_state(dead, {SourceState.offline, SourceState.failed}, 5) is not None
                with pytest.raises(SourceError, match="dead3.*connection refused"):
                    next(dead.frames())
                assert dead.stats.reconnects == 2 and dead.stats.state is SourceState.failed

            more = _take(frames, 3)  # the healthy camera never noticed
            assert good.stats.state is SourceState.running and good.stats.reconnects == 0
            assert all(b.pts > a.pts for a, b in zip(more, more[1:]))
    finally:
        silent.close()
        for c in accepted:
            c.close()


def test_slow_consumer_gets_the_newest_frame(rtsp_server_factory, h264_clip):
    server = rtsp_server_factory({"loop": h264_clip("pedestrian", seconds=3.0)})
    with open_source("cam", server.url("loop"), 0.2) as src:
        frames = src.frames()
        _take(frames, 1)
        got = []
        for _ in range(4):
            time.sleep(1.2)  # a detector much slower than the cadence
            got.append(next(frames))
            lag = (time.monotonic() - src._t_open) - got[-1].pts
            assert lag < 2.5, f"frame {got[-1].pts:.2f} s is {lag:.2f} s behind the stream"
        stats = src.stats
    gaps = [b.pts - a.pts for a, b in zip(got, got[1:])]
    assert all(g >= 0.9 for g in gaps), gaps  # skipped ahead, not the next frame in a queue
    assert stats.skipped_stale >= 8  # ~6 sampled frames per wait, one delivered
    assert got[-1].pts > 5.0  # the 3 s clip looped: the camera stays live


def test_password_never_appears_in_logs_or_errors(rtsp_server_factory, h264_clip, caplog):
    caplog.set_level(logging.DEBUG)
    server = rtsp_server_factory({"cam": h264_clip("intersection")}, user="operator", password=PASSWORD)
    with open_source("cam", server.url("cam"), 1.0, reconnect=False) as src:
        frame = next(src.frames())
        assert frame.image.shape == (240, 320, 3)
        assert PASSWORD not in repr(src) and PASSWORD not in src.redacted
    wrong = server.url("cam").replace(PASSWORD, PASSWORD[::-1])
    with pytest.raises(SourceError) as e:
        open_source("cam", wrong, 1.0, reconnect=False)
    assert "credentials" in str(e.value) and "401" in str(e.value)
    with open_source("cam2", wrong, 1.0, max_retries=1, backoff_initial_s=0.1) as src2:
        with pytest.raises(SourceError) as e2:
            next(src2.frames())
        last_error = src2.stats.last_error
    without = server.url("cam", credentials=False)
    with pytest.raises(SourceError, match="credentials"):
        open_source("cam3", without, 1.0, reconnect=False)
    texts = [caplog.text, str(e.value), repr(e.value), str(e2.value), last_error]
    assert caplog.text  # the failures were logged …
    for text in texts:  # … without the password, either way round
        assert PASSWORD not in text and PASSWORD[::-1] not in text
    assert "rtsp://***@127.0.0.1" in caplog.text
