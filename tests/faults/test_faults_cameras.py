"""Cameras that send garbage, under the live runner, beside a good camera.

Two loopback TCP servers pretend to be RTSP cameras: one answers every connection with random
bytes, the other with an RTSP-looking status line followed by random bytes. Each garbage camera
gets a clear error (no traceback, no password), goes offline and keeps retrying with backoff; the
good camera (a real RTSP server looping real footage) is analysed all along, and the run stops
cleanly. (A camera that stalls, an RTSP server killed and restarted and a dead URL are covered by
tests/streams/test_streams_rtsp.py and tests/pipeline/live/test_live.py; see tests/faults/README.md.)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest

from citypatrol.pipeline.config.models import Camera
from citypatrol.pipeline.live.runner import run_live

from fault_support import live_config, parked_camera
from fixtures_streams import rtsp_server_factory  # noqa: F401

pytestmark = pytest.mark.slow

PASSWORD = "Garbage-Pa55"


class GarbageCamera:
    """A TCP server on loopback that answers whatever it is sent with `prefix` and random bytes."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"rtsp://admin:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
            conn.sendall(self.prefix)
            for _ in range(100):
                if self._stop.is_set():
                    break
                conn.sendall(os.urandom(2048))
                time.sleep(0.02)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def test_garbage_cameras_fail_clearly_retry_and_leave_the_good_camera_alone(
        tmp_path, parked_video, detector, rtsp_server_factory, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    good = rtsp_server_factory({"lot": parked_video})
    noise, liar = GarbageCamera(), GarbageCamera(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 4000\r\n\r\n")
    try:
        cameras = [
            parked_camera(good.url("lot"), cam_id="good"),
            Camera(id="noise", source=noise.url("live")),
            Camera(id="liar", source=liar.url("live")),
        ]
        config = live_config(tmp_path, cameras, open_timeout_s=2, read_timeout_s=2, backoff_max_s=1)
        stop = threading.Event()
        timer = threading.Timer(14, stop.set)
        timer.start()
        t = time.monotonic()
        try:
            result = run_live(config, config.cameras, detector, stop=stop)
        finally:
            timer.cancel()
        assert time.monotonic() - t < 60, "stopping waited on a garbage camera"
    finally:
        noise.close()
        liar.close()

    by_id = {c.camera_id: c for c in result.status.cameras}
    assert result.errors == 0
    assert by_id["good"].frames_analysed >= 3 and by_id["good"].reconnects == 0  # analysed all along
    for cam_id, server in (("noise", noise), ("liar", liar)):
        cam = by_id[cam_id]
        assert cam.frames_analysed == 0
        assert server.connections >= 2 and cam.reconnects >= 1, (cam_id, server.connections, cam)  # it retries
        assert cam.last_error and "Traceback" not in cam.last_error and PASSWORD not in cam.last_error, cam.last_error
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in text
    assert "Traceback" not in text and not any(r.exc_info for r in caplog.records if r.name.startswith("citypatrol"))
    warned = [r.getMessage() for r in caplog.records if r.name == "citypatrol.streams" and r.levelno >= logging.WARNING]
    assert any("camera noise" in m for m in warned) and any("camera liar" in m for m in warned), warned
