"""A real RTSP server on loopback that serves H.264 mp4 files as looping live cameras.

Run with Debian's Python (python3-gi + GstRtspServer do not import in the project venv):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--user U --password P] NAME=FILE.mp4 ...

Each NAME becomes rtsp://127.0.0.1:PORT/NAME. A camera is "live": its file is read in real time
into an appsink from the moment the server starts, looped with non-flushing segment seeks so
timestamps keep rising, and every client of that camera sees the same moment (the media is
shared), as with a real CCTV camera. Access units are pushed into the media's
`appsrc ! h264parse ! rtph264pay`; nothing is re-encoded, so a client joining mid-GOP waits up
to one GOP for its first picture.

The process prints `READY <port>` on stdout once it listens, and exits when its stdin closes
(so it never outlives the test that started it) or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402,F401

_CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


class LoopingCamera:
    """Reads one mp4 in real time, forever, and fans its access units out to the clients' appsrcs."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._outputs: list[list] = []  # [appsrc, running-time offset or None]
        self._caps: Gst.Caps | None = None
        # A fakesink-free reader: sync=true on the appsink paces the file at real time.
        self.reader = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! {_CAPS} '
            "! appsink name=sink sync=true emit-signals=true max-buffers=4 drop=false"
        )
        sink = self.reader.get_by_name("sink")
        sink.connect("new-sample", self._on_sample)
        bus = self.reader.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def start(self) -> None:
        self.reader.set_state(Gst.State.PAUSED)
        self.reader.get_state(Gst.CLOCK_TIME_NONE)
        # First seek flushes and starts a looping segment; SEGMENT_DONE then re-seeks without flush.
        self.reader.seek(
            1.0, Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT,
            Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1,
        )
        self.reader.set_state(Gst.State.PLAYING)

    def _on_message(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        if msg.type == Gst.MessageType.SEGMENT_DONE:
            self.reader.seek(
                1.0, Gst.Format.TIME, Gst.SeekFlags.SEGMENT,
                Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1,
            )
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"camera {self.name}: {err.message} ({dbg})", file=sys.stderr, flush=True)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        buf = sample.get_buffer()
        seg = sample.get_segment()
        running = seg.to_running_time(Gst.Format.TIME, buf.pts)
        with self._lock:
            self._caps = sample.get_caps()
            outputs = list(self._outputs)
        for out in outputs:
            appsrc, offset = out
            if offset is None:
                out[1] = offset = running
            b = buf.copy()
            b.pts = running - offset
            b.dts = Gst.CLOCK_TIME_NONE
            b.duration = buf.duration
            appsrc.emit("push-buffer", b)
        return Gst.FlowReturn.OK

    def attach(self, appsrc: Gst.Element) -> None:
        appsrc.set_property("caps", Gst.Caps.from_string(_CAPS))
        appsrc.set_property("format", Gst.Format.TIME)
        appsrc.set_property("is-live", True)
        with self._lock:
            self._outputs.append([appsrc, None])

    def detach(self, appsrc: Gst.Element) -> None:
        with self._lock:
            self._outputs = [o for o in self._outputs if o[0] is not appsrc]


class CameraFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, camera: LoopingCamera) -> None:
        super().__init__()
        self.camera = camera
        self.set_shared(True)
        self.set_launch(
            "( appsrc name=src do-timestamp=false ! h264parse config-interval=-1 "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.connect("media-configure", self._on_configure)

    def _on_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        self.camera.attach(appsrc)
        media.connect("unprepared", lambda _m: self.camera.detach(appsrc))


def _watch_stdin(loop: GLib.MainLoop) -> None:
    # The parent test holds our stdin; when it goes away, so do we.
    try:
        while sys.stdin.buffer.read(1024):
            pass
    finally:
        GLib.idle_add(loop.quit)
        threading.Timer(2.0, lambda: os._exit(0)).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("cameras", nargs="+", metavar="NAME=FILE")
    args = ap.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)

    cameras = []
    for spec in args.cameras:
        name, _, path = spec.partition("=")
        if not path or not os.path.isfile(path):
            ap.error(f"camera {spec!r}: expected NAME=FILE with an existing file")
        cam = LoopingCamera(name, path)
        factory = CameraFactory(cam)
        if args.user:
            factory.add_role_from_structure(
                Gst.Structure.from_string(
                    "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
                )[0]
            )
        mounts.add_factory(f"/{name}", factory)
        cameras.append(cam)

    # Each client in its own thread (the default pool has one): with one, clients are set up one after
    # another, each waiting for its camera's next keyframe, so N cameras take N × ~1 s to connect.
    pool = GstRtspServer.RTSPThreadPool()
    pool.set_max_threads(max(4, len(cameras)))
    server.set_thread_pool(pool)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 2
    for cam in cameras:
        cam.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    threading.Thread(target=_watch_stdin, args=(loop,), daemon=True).start()
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
