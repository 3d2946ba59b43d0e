"""Fixtures for tests that need live cameras or purpose-made video files.

Use them from any test module (tests/ is on sys.path under pytest):

    from fixtures_streams import h264_clip, rtsp_server, rtsp_server_factory  # noqa: F401

    def test_live(rtsp_server):                  # one camera "cam" looping a real clip
        url = rtsp_server.url("cam")            # rtsp://127.0.0.1:<port>/cam
        ...

    def test_two(rtsp_server_factory, h264_clip):
        srv = rtsp_server_factory({"a": h264_clip("intersection"), "b": h264_clip("pedestrian")},
                                  user="admin", password="pw")
        srv.url("a")                             # rtsp://admin:pw@127.0.0.1:<port>/a
        srv.kill(); srv.start()                 # camera outage and recovery, same port
        srv.pause(); srv.resume()               # hung camera: connection open, no data

The server is tests/rtsp_server.py under Debian's /usr/bin/python3 (GstRtspServer): each camera
loops its file in real time, shared by all clients, like a real CCTV camera. Servers started
through the factory are stopped when the test ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RtspServer:
    """A loopback RTSP server process serving `cameras` (name → H.264 mp4) on `port`."""

    cameras: dict[str, Path]
    port: int
    user: str | None = None
    password: str | None = None
    log_path: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def url(self, name: str, *, credentials: bool = True) -> str:
        """rtsp://[user:password@]127.0.0.1:port/name"""
        auth = f"{self.user}:{self.password}@" if credentials and self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{name}"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> "RtspServer":
        """Start (or restart after kill/stop) on the same port; returns once it answers RTSP."""
        if self.alive:
            return self
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        cmd += [f"{name}={path}" for name, path in self.cameras.items()]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # stdin stays open: the server exits by itself if this test process dies.
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        if log is not subprocess.DEVNULL:
            log.close()
        line = self._proc.stdout.readline().decode(errors="replace").strip() if self._proc.stdout else ""
        if not line.startswith("READY"):
            self.kill()
            raise RuntimeError(f"RTSP server did not start: {line!r}; see {self.log_path}")
        self._wait_answering(timeout_s)
        return self

    def _wait_answering(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(f"OPTIONS rtsp://127.0.0.1:{self.port}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
                    if s.recv(64).startswith(b"RTSP/1.0"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or not self.alive:
                self.kill()
                raise RuntimeError(f"RTSP server on port {self.port} does not answer; see {self.log_path}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL): an abrupt camera outage."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGCONT)
                self._proc.kill()
            self._proc.wait(timeout=10)
            self._close_pipes()

    def stop(self) -> None:
        """Stop the process politely (SIGTERM), or kill it if it does not go."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._close_pipes()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but no data flows, a hung camera."""
        if self.alive:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause` (SIGCONT)."""
        if self.alive:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> "RtspServer":
        self.kill()
        return self.start()

    def _close_pipes(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe:
                    pipe.close()


@pytest.fixture
def rtsp_server_factory(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """`serve(cameras, *, user=None, password=None, port=None) -> RtspServer`, started and answering.

    `cameras` maps a mount name to an H.264 mp4 (see `h264_clip`). Skips the test if Debian's
    GStreamer RTSP server is not installed (`make system-deps`).
    """
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"],
        capture_output=True,
    ).returncode:
        pytest.skip("GStreamer RTSP server for /usr/bin/python3 not installed (make system-deps)")
    servers: list[RtspServer] = []

    def serve(cameras: Mapping[str, Path], *, user: str | None = None, password: str | None = None, port: int | None = None) -> RtspServer:
        srv = RtspServer(
            cameras={k: Path(v) for k, v in cameras.items()},
            port=port or free_port(),
            user=user,
            password=password,
            log_path=tmp_path / f"rtsp_server_{len(servers)}.log",
        )
        servers.append(srv)
        return srv.start()

    yield serve
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def h264_clip(sample_video: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`clip(name, *, seconds=6, gop_s=0.5, width=320, bframes=2) -> Path`: a sample video re-encoded.

    Real footage (`name` as in `sample_video`) cut to `seconds`, scaled to `width`, H.264 with a
    fixed keyframe interval and B-frames (so the keyframe-latency trap is exercised), no audio.
    Made once per session with ffmpeg; small enough for fast loopback streaming.
    """
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    out_dir = tmp_path_factory.mktemp("h264_clips")
    made: dict[tuple, Path] = {}

    def clip(name: str, *, seconds: float = 6.0, gop_s: float = 0.5, width: int = 320, bframes: int = 2) -> Path:
        key = (name, seconds, gop_s, width, bframes)
        if key in made:
            return made[key]
        fps = 25
        gop = max(1, round(gop_s * fps))
        out = out_dir / f"{name}_{seconds:g}s_gop{gop_s:g}_{width}_b{bframes}.mp4"
        x264 = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0"
        cmd = [
            "ffmpeg", "-v", "error", "-y", "-i", str(sample_video(name)), "-t", f"{seconds}", "-an",
            "-vf", f"scale={width}:-2,fps={fps}", "-c:v", "libx264", "-preset", "ultrafast",
            "-x264-params", x264, "-pix_fmt", "yuv420p", str(out),
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"})
        made[key] = out
        return out

    return clip


@pytest.fixture
def rtsp_server(rtsp_server_factory: Callable[..., RtspServer], h264_clip: Callable[..., Path]) -> RtspServer:
    """One camera, "cam": 6 s of the intersection clip (320 px, 0.5 s GOP, B-frames), looping live."""
    return rtsp_server_factory({"cam": h264_clip("intersection")})
