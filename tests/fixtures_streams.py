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
    """`clip(name, *, seconds=6, gop_s=0.5, width=320, bframes=2, slices=1, codec="h264") -> Path`: a sample video re-encoded.

    Real footage (`name` as in `sample_video`) cut to `seconds`, scaled to `width`, H.264 with a
    fixed keyframe interval and B-frames (so the keyframe-latency trap is exercised), no audio;
    `slices` > 1 splits every picture into that many slices, as many IP cameras do;
    `codec="hevc"` makes H.265 (libx265) with the same settings instead.
    Made once per session with ffmpeg; small enough for fast loopback streaming.
    """
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    out_dir = tmp_path_factory.mktemp("h264_clips")
    made: dict[tuple, Path] = {}

    def clip(
        name: str, *, seconds: float = 6.0, gop_s: float = 0.5, width: int = 320, bframes: int = 2, slices: int = 1,
        codec: str = "h264",
    ) -> Path:
        key = (name, seconds, gop_s, width, bframes, slices, codec)
        if key in made:
            return made[key]
        fps = 25
        gop = max(1, round(gop_s * fps))
        suffix = "" if codec == "h264" else f"_{codec}"
        out = out_dir / f"{name}_{seconds:g}s_gop{gop_s:g}_{width}_b{bframes}_s{slices}{suffix}.mp4"
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0"
        params += f":slices={slices}" if slices > 1 else ""
        if codec == "hevc":
            encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
            if "libx265" not in encoders:
                pytest.skip("ffmpeg has no libx265 encoder")
            encoder = ["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", params + ":log-level=error"]
        else:
            encoder = ["-c:v", "libx264", "-x264-params", params]
        cmd = [
            "ffmpeg", "-v", "error", "-y", "-i", str(sample_video(name)), "-t", f"{seconds}", "-an",
            "-vf", f"scale={width}:-2,fps={fps}", *encoder, "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out),
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"})
        made[key] = out
        return out

    return clip


@pytest.fixture
def rtsp_server(rtsp_server_factory: Callable[..., RtspServer], h264_clip: Callable[..., Path]) -> RtspServer:
    """One camera, "cam": 6 s of the intersection clip (320 px, 0.5 s GOP, B-frames), looping live."""
    return rtsp_server_factory({"cam": h264_clip("intersection")})


def _mp4_units(data: bytes) -> list[bytes]:
    """The NAL units of an MP4-style (4-byte length-prefixed) H.264/H.265 packet."""
    units, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        units.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return units


def _parameter_sets(extradata: bytes, codec: str) -> list[bytes]:
    """The parameter-set NAL units of an avcC (H.264) or hvcC (H.265) record (ISO/IEC 14496-15)."""
    sets: list[bytes] = []

    def take(i: int, count: int) -> int:
        for _ in range(count):
            n = int.from_bytes(extradata[i : i + 2], "big")
            sets.append(extradata[i + 2 : i + 2 + n])
            i += 2 + n
        return i

    if codec == "hevc":
        i = 23
        for _ in range(extradata[22]):  # arrays of VPS, SPS, PPS (and SEI)
            i = take(i + 3, int.from_bytes(extradata[i + 1 : i + 3], "big"))
        return sets
    i = take(6, extradata[5] & 0x1F)  # SPS
    take(i + 1, extradata[i])  # PPS
    return sets


def _is_keyframe_slice(unit: bytes, codec: str) -> bool:
    if codec == "hevc":
        return 16 <= (unit[0] >> 1) & 0x3F <= 21  # IRAP slice segment
    return unit[0] & 0x1F == 5  # IDR slice


def camera_recording(mp4: Path, out: Path) -> Path:
    """`mp4` (H.264 or H.265) rewritten as an IP camera's MPEG-TS recording, without re-encoding.

    Like cameras (and RTP payloaders) that repeat the parameter sets before every keyframe
    slice, each keyframe slice gets its own; FFmpeg's parser then splits a multi-slice keyframe
    into one packet per slice when the file is read (the later ones without a pts).
    """
    import av

    with av.open(str(mp4)) as src, av.open(str(out), "w", format="mpegts") as dst:
        stream = src.streams.video[0]
        codec = stream.codec_context.name
        param_sets = _parameter_sets(bytes(stream.codec_context.extradata), codec)
        out_stream = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.size == 0:
                continue
            data = b""
            for unit in _mp4_units(bytes(packet)):
                if _is_keyframe_slice(unit, codec):
                    data += b"".join(b"\0\0\0\1" + ps for ps in param_sets)
                data += b"\0\0\0\1" + unit
            copy = av.Packet(data)
            copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
            copy.is_keyframe = packet.is_keyframe
            copy.stream = out_stream
            dst.mux(copy)
    return out
