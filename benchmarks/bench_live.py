#!/usr/bin/env python3
"""Live benchmark: how many RTSP cameras one machine keeps up with under `citypatrol run`.

For a number of cameras N, in one step:

  1. serve N looping "live cameras" on loopback with the project's RTSP server
     (`tests/rtsp_server.py` under Debian's `/usr/bin/python3`: GstRtspServer, no re-encoding);
     each camera is an H.264 copy of a sample video, made once with ffmpeg into
     `.citypatrol-cache/bench_live/` (outside git): scaled to `--height` lines, 25 fps, a keyframe
     every `--gop-s` seconds, no B-frames (like most IP cameras), the clip looped to at least
     `--min-clip-s`. Copies differ in their keyframe phase (`--phases`), so the cameras' keyframes
     do not all arrive in the same instant, as with real cameras that were not started together;
  2. run the real `citypatrol run --config …` as a child process on those N cameras at the default
     cadence (`Camera.cadence_s`, 2 s), with the default models, rules (one no-parking, no-vending
     and bin zone per camera), health checks, SQLite store, evidence and `/metrics`;
  3. wait until every camera has delivered an analysed frame, let it settle (`--settle-s`: the
     first seconds of a connection decode every frame to learn the keyframe spacing), then measure
     for `--measure-s` seconds: the per-camera figures the runner publishes (its status file, the
     same snapshot as `/metrics`: analysed frames, lag behind live, skips, state), the runner's
     process CPU time (all threads, from /proc) and its RSS, and the RTSP server's CPU apart;
  4. stop the runner with SIGTERM (its graceful stop) and the server.

A step is **sustained** when, over the measured window, every camera stays `running`, the worst
camera's 95th-percentile lag is under two cadence steps (`--lag-steps`), and every camera's
analysed rate is at least `--min-rate` (90 %) of one frame per cadence. The rate matters as much as
the lag: the runner never queues stale frames (newest frame wins, a replaced frame is a skip), so an
overloaded runner shows up first as skipped frames and a falling analysed rate while the lag of
the frames it does analyse can stay short.

Search: N = 2, 4, 8, 16, … until a step is not sustained, then bisect between the last sustained N
and the first that was not, until they are `--precision` apart or the time cap (`--max-total-s`,
default 600 s, counted from the start, stream preparation included) leaves no room for another
step. `--n 1,3` measures the given counts instead of searching.

    python benchmarks/bench_live.py                       # search, print the table
    python benchmarks/bench_live.py --write               # … and replace this benchmark's section of RESULTS.md
    python benchmarks/bench_live.py --n 1 --measure-s 5 --settle-s 2   # smoke run

The parent also records the machine (CPU, cores, RAM, versions), the load average before and after,
and the CPU other processes used while the benchmark ran. GPU figures are not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CACHE = REPO / ".citypatrol-cache" / "bench_live"
SERVER_SCRIPT = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
MARK_START = "<!-- bench_live:start -->"
MARK_END = "<!-- bench_live:end -->"
FPS = 25
CLIENT_EXE = [sys.executable, "-m", "citypatrol.pipeline.cli.main"]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import ProcessWatch, _top_processes, conditions_lines, machine_info  # noqa: E402  (same machine record)
from bench_ingest import write_results as write_section  # noqa: E402


# --------------------------------------------------------------------------------------------
# Streams: H.264 copies of the sample videos, served on loopback.
# --------------------------------------------------------------------------------------------


def sample_videos(names: list[str] | None) -> dict[str, Path]:
    """The sample *videos* (not stills sequences), through the asset resolver (sha256-checked)."""
    from citypatrol.models.assets import resolve_asset
    from citypatrol.pipeline.evaluation.samples import load_samples
    from citypatrol.streams.media import is_video

    out = {}
    for s in load_samples():
        if s.entry.is_folder or not is_video(Path(s.entry.path)):
            continue
        if names and not any(s.name.startswith(n) for n in names):
            continue
        out[s.name] = resolve_asset(s.entry)
    if not out:
        raise SystemExit(f"no sample video matches {names}")
    return out


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def make_copy(src: Path, name: str, *, height: int, gop_s: float, phase_s: float, min_clip_s: float, cache: Path) -> Path:
    """`src` as a camera would send it: H.264, `height` lines, 25 fps, keyframes at phase_s + k·gop_s, no B-frames.

    The clip is looped to at least `min_clip_s` and cut to a whole number of GOPs, so the server's
    loop point keeps the keyframe spacing (the first frame is a keyframe too).
    """
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{name}_{height}p_gop{gop_s:g}_ph{phase_s:g}_min{min_clip_s:g}.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out
    dur = _duration(src)
    loops = max(0, int(min_clip_s // dur))
    total = dur * (loops + 1)
    seconds = max(gop_s, int(total // gop_s) * gop_s)
    gop = round(gop_s * FPS)
    # Forced keyframes on the phase grid; keyint a little longer than the GOP so x264 adds none of its own.
    force = f"expr:gte(t,{phase_s:g}+n_forced*{gop_s:g})" if phase_s > 0 else f"expr:gte(t,n_forced*{gop_s:g})"
    tmp = out.with_suffix(".part.mp4")
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(src), "-t", f"{seconds:g}", "-an",
        "-vf", f"scale=-2:{height},fps={FPS}", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
        "-x264-params", f"keyint={gop + 5}:min-keyint={gop}:scenecut=0:bframes=0",
        "-force_key_frames", force, "-maxrate", "4M", "-bufsize", "8M", "-crf", "23", "-pix_fmt", "yuv420p",
        str(tmp),
    ]
    subprocess.run(cmd, check=True, env={**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"})
    tmp.rename(out)
    return out


def prepare_streams(args: argparse.Namespace) -> list[tuple[str, float, Path]]:
    """(sample name, keyframe phase, file) for every copy; camera i uses copy i mod len."""
    videos = sample_videos(args.clips.split(",") if args.clips else None)
    phases = [args.gop_s * k / args.phases for k in range(args.phases)]
    copies = []
    for phase in phases:  # camera i: clip i mod #clips, phase advancing every #clips cameras
        for name, src in videos.items():
            copies.append((name, phase, make_copy(src, name, height=args.height, gop_s=args.gop_s, phase_s=phase,
                                                  min_clip_s=args.min_clip_s, cache=args.cache)))
    return copies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """tests/rtsp_server.py as a child process: each mount a looping live camera, shared by its clients."""

    def __init__(self, cameras: dict[str, Path], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), *(f"{k}={v}" for k, v in cameras.items())]
        with open(log, "ab") as err:
            # stdin stays open: the server exits by itself if this process dies.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start ({line!r}); see {log}")

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                pipe.close()


def server_available() -> str:
    """'' when the RTSP server can run here, else why not."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode:
        return "GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) not installed for /usr/bin/python3"
    return ""


# --------------------------------------------------------------------------------------------
# One step: N cameras under `citypatrol run`.
# --------------------------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads, plus waited-for children) of a live process."""
    raw = open(f"/proc/{pid}/stat").read()
    rest = raw[raw.rindex(")") + 2 :].split()
    return sum(int(x) for x in rest[11:15]) / os.sysconf("SC_CLK_TCK")


def _proc_mem_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def _tiling() -> str:
    from citypatrol.pipeline.config.models import Camera

    tiles = Camera(id="x", source="x").detector.tiles
    return f"`detector.tiles: {tiles}` on every camera" + (" (whole frame only, one inference per model per frame)" if tiles == "off" else "")


def _camera_config(i: int, url: str) -> dict:
    from citypatrol.pipeline.config.models import Camera

    lower = [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]]
    cam = Camera(
        id=f"cam{i:03d}", name=f"bench camera {i}", source=url,
        zones=[{"id": "road", "kind": "no_parking", "polygon": lower},
               {"id": "pavement", "kind": "no_vending", "polygon": lower},
               {"id": "bins", "kind": "bin_area", "polygon": lower}],
    )  # fmt: skip  # cadence: the default
    return cam.model_dump(mode="json", exclude_defaults=True)


@dataclass
class Step:
    n: int
    sustained: bool = False
    reason: str = ""
    startup_s: float | None = None  # runner start → every camera analysed a frame
    window_s: float = 0.0
    cameras: dict[str, dict] = field(default_factory=dict)  # per camera: fps, skips, lag samples, state
    lag_p50: float | None = None
    lag_p95_worst: float | None = None  # the worst camera's p95
    lag_max: float | None = None
    fps_min: float | None = None
    fps_median: float | None = None
    skips: int = 0
    runner_cpu_s: float = 0.0
    runner_cores: float = 0.0
    cores_per_camera: float = 0.0
    rss_mib: float = 0.0
    hwm_mib: float = 0.0
    server_cores: float = 0.0
    detector_ms_per_image: float | None = None
    images_per_batch: float | None = None
    wall_s: float = 0.0  # the whole step, start to stop
    server_died: bool = False  # the loopback RTSP server (the camera simulator) failed: says nothing about the runner


def run_step(n: int, copies: list[tuple[str, float, Path]], args: argparse.Namespace, work: Path) -> Step:
    from citypatrol.pipeline.config.models import Camera
    from citypatrol.pipeline.live.status import read_status

    cadence = Camera.model_fields["cadence_s"].default
    step = Step(n)
    t_step = time.monotonic()
    d = work / f"n{n:03d}"
    d.mkdir(parents=True, exist_ok=True)
    # A stream of its own per camera by default. Shared streams (one per distinct copy, each camera
    # still with its own RTSP session) cost the server less, but GstRtspServer aborts (backlog
    # timestamp assertion) when one of several clients of a shared stream falls behind for a while.
    if args.shared_streams:
        mounts = {f"s{k:02d}": copies[k][2] for k in range(min(n, len(copies)))}
    else:
        mounts = {f"cam{i:03d}": copies[i % len(copies)][2] for i in range(n)}
    names = list(mounts)
    server = RtspServer(mounts, d / "rtsp_server.log")
    status_file, log = d / "status.json", d / "run.log"
    runner = start_runner([server.url(names[i % len(names)]) for i in range(n)], d, args.status_interval_s, models_section(args))
    t0 = time.monotonic()

    def status(wait: bool = False):
        for _ in range(20 if wait else 1):
            try:
                return read_status(status_file)
            except (FileNotFoundError, ValueError):
                time.sleep(0.1)
        if wait:
            raise RuntimeError(f"cannot read the runner's status file {status_file}")
        return None

    try:
        # Start-up: every camera analysed at least one frame.
        deadline = t0 + args.startup_timeout_s + 0.5 * n
        while True:
            if runner.poll() is not None:
                step.reason = f"citypatrol run exited ({runner.returncode}): {_tail(log)}"
                return step
            if server.proc.poll() is not None:
                step.server_died, step.reason = True, f"the loopback RTSP server died: {_tail(d / 'rtsp_server.log', 2)}"
                return step
            st = status()
            if st and st.cameras and all(c.frames_analysed > 0 for c in st.cameras):
                step.startup_s = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                waiting = [c.camera_id for c in (st.cameras if st else ()) if not c.frames_analysed]
                step.reason = f"not every camera delivered a frame within {deadline - t0:.0f} s (waiting: {waiting[:5]}…)"
                return step
            time.sleep(0.25)
        time.sleep(args.settle_s)

        # Measurement window.
        first = status(wait=True)
        w0 = time.monotonic()
        cpu0, scpu0 = _proc_cpu_s(runner.pid), _proc_cpu_s(server.proc.pid)
        seen = {c.camera_id: c.frames_analysed for c in first.cameras}
        lags: dict[str, list[float]] = {c.camera_id: [] for c in first.cameras}
        states: dict[str, set[str]] = {c.camera_id: set() for c in first.cameras}
        early = False
        while time.monotonic() - w0 < args.measure_s:
            time.sleep(min(0.5, args.status_interval_s / 2))
            if runner.poll() is not None:
                step.reason = f"citypatrol run exited ({runner.returncode}) while measuring: {_tail(log)}"
                return step
            if server.proc.poll() is not None:
                step.server_died, step.reason = True, f"the loopback RTSP server died: {_tail(d / 'rtsp_server.log', 2)}"
                return step
            st = status()
            if st is None:
                continue
            for c in st.cameras:
                states[c.camera_id].add(c.state)
                if c.frames_analysed != seen[c.camera_id] and c.lag_s is not None:  # one sample per newly analysed frame
                    lags[c.camera_id].append(c.lag_s)
                    seen[c.camera_id] = c.frames_analysed
            # A clearly overloaded step ends early: half the window gone and the rate far below the cadence.
            el = time.monotonic() - w0
            if args.early_stop and el >= max(20.0, args.measure_s / 2):
                rates = [(c.frames_analysed - f.frames_analysed) / el for c, f in zip(st.cameras, first.cameras)]
                if min(rates) < 0.5 * args.min_rate / cadence:
                    early = True
                    break
        last = status(wait=True)
        step.window_s = time.monotonic() - w0
        step.runner_cpu_s = _proc_cpu_s(runner.pid) - cpu0
        server_cpu = _proc_cpu_s(server.proc.pid) - scpu0
        rss, hwm = _proc_mem_kib(runner.pid)
    finally:
        stop_runner(runner)
        server.stop()

    # Figures.
    by_id = {c.camera_id: c for c in first.cameras}
    all_lags = []
    p95s = []
    for c in last.cameras:
        f = by_id[c.camera_id]
        frames = c.frames_analysed - f.frames_analysed
        cam_lags = lags[c.camera_id]
        all_lags += cam_lags
        p95 = _pct(cam_lags, 95)
        if p95 is not None:
            p95s.append(p95)
        step.cameras[c.camera_id] = {
            "frames": frames, "fps": frames / step.window_s, "skips": c.skips - f.skips,
            "lag_p50": _pct(cam_lags, 50), "lag_p95": p95, "lag_max": max(cam_lags) if cam_lags else None,
            "states": sorted(states[c.camera_id] | {c.state}), "reconnects": c.reconnects - f.reconnects,
            "decode_errors": c.decode_errors - f.decode_errors,
        }  # fmt: skip
    fps = [v["fps"] for v in step.cameras.values()]
    step.fps_min, step.fps_median = min(fps), statistics.median(fps)
    step.lag_p50 = _pct(all_lags, 50)
    step.lag_p95_worst = max(p95s) if p95s else None
    step.lag_max = max(all_lags) if all_lags else None
    step.skips = sum(v["skips"] for v in step.cameras.values())
    step.runner_cores = step.runner_cpu_s / step.window_s
    step.cores_per_camera = step.runner_cores / n
    step.rss_mib, step.hwm_mib = rss / 1024, hwm / 1024
    step.server_cores = server_cpu / step.window_s
    db, di = last.batches - first.batches, last.batch_images - first.batch_images
    if db and di:
        step.detector_ms_per_image = 1000 * (last.detect_seconds - first.detect_seconds) / di
        step.images_per_batch = di / db
    step.wall_s = time.monotonic() - t_step

    # Verdict.
    limit = args.lag_steps * cadence
    not_running = sorted(k for k, v in step.cameras.items() if v["states"] != ["running"])
    slow = sorted(k for k, v in step.cameras.items() if v["fps"] < args.min_rate / cadence)
    problems = []
    if not_running:
        problems.append(f"{len(not_running)} camera(s) left 'running' ({', '.join(not_running[:3])})")
    if step.lag_p95_worst is None or step.lag_p95_worst >= limit:
        problems.append(f"worst camera's p95 lag {_f(step.lag_p95_worst)} s ≥ {limit:g} s")
    if slow:
        problems.append(f"{len(slow)} camera(s) analysed under {args.min_rate:.0%} of 1/{cadence:g} s "
                        f"(slowest {step.fps_min:.2f}/s)")
    if early:
        problems.append(f"stopped after {step.window_s:.0f} s (clearly overloaded)")
    step.sustained = not problems
    step.reason = "; ".join(problems)
    return step


def models_section(args: argparse.Namespace) -> dict | None:
    """The `models:` section of `--models FILE`; None for the default models."""
    if args.models is None:
        return None
    section = (yaml.safe_load(args.models.read_text(encoding="utf-8")) or {}).get("models")
    if not isinstance(section, dict):
        raise SystemExit(f"{args.models}: expected a `models:` section")
    return section


def start_runner(urls: list[str], work: Path, status_interval_s: float, models: dict | None = None) -> subprocess.Popen:
    """`citypatrol run` on these cameras (one `_camera_config` each) as a child process: SQLite store,
    evidence, status file (`status.json`) and log (`run.log`) in `work`, `/metrics` on a free port;
    `models`: a `models:` section in place of the default models."""
    cfg = {
        "cameras": [_camera_config(i, url) for i, url in enumerate(urls)],
        "storage": {"database_url": f"sqlite:///{work / 'city.db'}", "evidence_dir": str(work / "evidence")},
        "live": {"metrics_port": free_port(), "status_file": str(work / "status.json"), "status_interval_s": status_interval_s},
    }
    if models is not None:
        cfg["models"] = models
    (work / "city.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    with open(work / "run.log", "wb") as out:
        return subprocess.Popen([*CLIENT_EXE, "run", "--config", str(work / "city.yaml")], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=work)


def stop_runner(runner: subprocess.Popen) -> int:
    """SIGTERM (the runner's graceful stop), SIGKILL after 90 s; the exit status."""
    if runner.poll() is None:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=90)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
    return runner.returncode


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (k - lo)


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _tail(log: Path, n: int = 6) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# Search, report.
# --------------------------------------------------------------------------------------------


def search(copies, args, work: Path, started: float, say) -> tuple[list[Step], str]:
    """Steps measured, and how the search ended."""
    steps: list[Step] = []
    estimate = args.first_step_estimate_s

    def room() -> bool:
        return time.monotonic() - started + estimate <= args.max_total_s

    def measure(n: int) -> Step:
        nonlocal estimate
        say(f"  N={n:3d} …")
        st = run_step(n, copies, args, work)
        steps.append(st)
        if st.server_died:  # the camera simulator failed, not the runner: once more, else no verdict
            say(f"    {st.reason}")
            if not room():
                raise _SearchEnd(f"the loopback RTSP server died at N={n} and the time cap leaves no retry")
            say(f"  N={n:3d} again …")
            st = run_step(n, copies, args, work)
            steps.append(st)
            if st.server_died:
                raise _SearchEnd(f"the loopback RTSP server died twice at N={n}: no verdict there")
        estimate = max(estimate, st.wall_s * 1.15 + 5) if st.wall_s else estimate
        verdict = "sustained" if st.sustained else f"NOT sustained: {st.reason}"
        say(f"    fps min {_f(st.fps_min)}, lag p95 {_f(st.lag_p95_worst)} s (max {_f(st.lag_max)}), skips {st.skips}, "
            f"runner {st.runner_cores:.2f} cores ({st.cores_per_camera:.3f}/camera), RSS {st.rss_mib:.0f} MiB, "
            f"server {st.server_cores:.2f} cores, startup {_f(st.startup_s, '{:.1f}')} s → {verdict}")
        return st

    try:
        return steps, _search(args, measure, room)
    except _SearchEnd as end:
        return steps, str(end)


class _SearchEnd(Exception):
    pass


def _search(args: argparse.Namespace, measure, room) -> str:
    """Doubling then bisection (or the fixed list); returns how it ended."""
    if args.n:
        for k, n in enumerate(args.n):
            if k and not room():
                return f"time cap of {args.max_total_s:g} s reached before N={n}"
            measure(n)
        return "fixed list of N"

    lo, hi, n, first = 0, None, args.start, True
    while hi is None:
        if n > args.max_n:
            return f"every N up to --max-n {args.max_n} sustained"
        if not first and not room():
            return f"time cap of {args.max_total_s:g} s reached while doubling (next N={n})"
        first = False
        if measure(n).sustained:
            lo, n = n, n * 2
        else:
            hi = n
    while hi - lo > args.precision:
        mid = (lo + hi) // 2
        if not room():
            return f"time cap of {args.max_total_s:g} s reached while bisecting between {lo} and {hi}"
        if measure(mid).sustained:
            lo = mid
        else:
            hi = mid
    return f"bisected to {lo} sustained, {hi} not"


def largest_sustained(steps: list[Step]) -> tuple[Step | None, Step | None]:
    """The largest sustained step with no failed step below it, and the smallest failed one."""
    steps = [s for s in steps if not s.server_died]  # no verdict either way
    failed = [s for s in steps if not s.sustained]
    first_fail = min(failed, key=lambda s: s.n) if failed else None
    ok = [s for s in steps if s.sustained and (first_fail is None or s.n < first_fail.n)]
    return (max(ok, key=lambda s: s.n) if ok else None), first_fail


def render_table(steps: list[Step], cadence: float) -> list[str]:
    head = ("| N | sustained | analysed fps per camera, min / median (target " + f"{1 / cadence:g}" + ") | lag s p50 / worst p95 / max "
            "| skips | runner CPU cores | CPU per camera (cores) | runner RSS MiB (per camera) | RTSP server CPU cores "
            "| detector ms/image (images/batch) | start-up s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in sorted(steps, key=lambda s: s.n):
        if s.fps_min is None:
            verdict = "no verdict" if s.server_died else "no"
            lines.append(f"| {s.n} | {verdict}: {s.reason} | – | – | – | – | – | – | – | – | {_f(s.startup_s, '{:.1f}')} |")
            continue
        det = f"{_f(s.detector_ms_per_image, '{:.0f}')} ({_f(s.images_per_batch, '{:.1f}')})"
        lines.append(
            f"| {s.n} | {'**yes**' if s.sustained else 'no'} | {s.fps_min:.2f} / {s.fps_median:.2f} | "
            f"{_f(s.lag_p50)} / {_f(s.lag_p95_worst)} / {_f(s.lag_max)} | {s.skips} | {s.runner_cores:.2f} | "
            f"{s.cores_per_camera:.3f} | {s.rss_mib:.0f} ({s.rss_mib / s.n:.0f}) | {s.server_cores:.2f} | {det} | "
            f"{_f(s.startup_s, '{:.1f}')} |"
        )
    return lines


def render_section(run: dict, steps: list[Step]) -> str:
    m, a = run["machine"], run["args"]
    v = m["versions"]
    cadence = run["cadence_s"]
    best, fail = largest_sustained(steps)
    cores = m["usable_cpus"]
    out = [MARK_START, "## Live: cameras per machine under `citypatrol run` (`benchmarks/bench_live.py`)", ""]
    if run["smoke"]:
        out += ["> **Smoke run (short windows): not a benchmark result.**", ""]
    out += [f"Run {run['date']} with `{run['command']}`; generated by the script, do not edit by hand.", ""]
    if best is not None:
        marginal = _marginal(steps)
        headline = (f"**Result: {best.n} camera(s) sustained** at the default cadence of {cadence:g} s on {cores} CPU core(s) "
                    f"(≈ {best.n / cores:.1f} cameras per core)")
        headline += f"; {fail.n} were not ({fail.reason})." if fail else "; no larger N was tried or failed."
        out += [headline, "",
                f"At N = {best.n}: the runner used {best.runner_cores:.2f} cores = **{best.cores_per_camera:.3f} cores "
                f"({100 * best.cores_per_camera:.1f} % of a core) per camera**, RSS {best.rss_mib:.0f} MiB = "
                f"**{best.rss_mib / best.n:.0f} MiB per camera** all-in"
                + (f" (marginal cost between N = {marginal['n0']} and {marginal['n1']}: {marginal['cpu']:.3f} cores and "
                   f"{marginal['rss']:.0f} MiB per added camera; fixed part ≈ {marginal['rss0']:.0f} MiB: model, runtime, store)"
                   if marginal else "")
                + f"; the loopback RTSP server used another {best.server_cores:.2f} cores on the same machine.", "",
                f"Tiling: {_tiling()} (see the tiled-inference section for what tiles cost per frame).", ""]
    else:
        out += [f"**No N was sustained** ({fail.reason if fail else 'no step measured'}).", ""]
    out += [f"Search: {run['ended']}; total {run['total_s']:.0f} s (cap {a['max_total_s']:g} s).", "",
            *render_table(steps, cadence), ""]
    out += [
        "- Each step: N cameras served by `tests/rtsp_server.py` (GstRtspServer on 127.0.0.1, "
        + ("each of the distinct copies looping in real time and shared by the cameras that play it; every camera "
           "still has its own connection and decoder in the runner" if a["shared_streams"] else
           "one stream per camera, each looping its file in real time")
        + "), the real `citypatrol run --config …` as a child process with the "
        + ("models of `--models`" if a.get("models") else "default models") + " "
        f"(`{run['model']}`), default cadence {cadence:g} s, one no-parking, no-vending and bin zone per camera, camera "
        "health on, SQLite store and evidence in a temporary folder, `/metrics` on. Measured after every camera "
        f"analysed a frame plus {a['settle_s']:g} s of settling, for {a['measure_s']:g} s (less where a clearly "
        "overloaded step stopped early).",
        f"- Cameras: H.264 copies of the sample videos ({', '.join(f'`{n}`' for n in run['clips'])}), scaled to "
        f"{a['height']} lines, {FPS} fps, a keyframe every {a['gop_s']:g} s, no B-frames, ≤ 4 Mbit/s; camera i plays "
        f"clip i mod {len(run['clips'])} with one of {a['phases']} keyframe phases, so keyframes of different cameras "
        "do not arrive together. With keyframes at least once per cadence the runner decodes keyframes only.",
        f"- **Sustained**: every camera `running` throughout, the worst camera's 95th-percentile lag under "
        f"{a['lag_steps']:g} cadence steps ({a['lag_steps'] * cadence:g} s), and every camera analysed at least "
        f"{a['min_rate']:.0%} of one frame per cadence. **lag**: the runner's own figure (wall time between a frame's "
        "capture and the end of its analysis), one sample per analysed frame read from its status file (the same "
        f"snapshot as `/metrics`, rewritten every {a['status_interval_s']:g} s). **skips**: frames replaced by a newer "
        "one before the detector took them (newest frame wins).",
        "- **CPU**: the runner process's CPU seconds (user + system, all threads, from /proc) over the measured window's "
        "wall seconds, i.e. cores kept busy; per camera = that / N. **RSS**: the runner's resident memory at the end of "
        "the window (peak RSS in the JSON). The RTSP server's CPU is counted apart: in a deployment the cameras are "
        "elsewhere, here it takes CPU from the runner, so the sustained N is a slight underestimate for this machine.",
        "",
        "Machine and conditions:",
        "",
        f"- CPU: {m['cpu_model']}; {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable); RAM {m['ram_gib']} GiB",
        "- GPU: not measured. This machine has no GPU and no GPU machine was available to this run; the figure for a "
        "GPU box (batched CUDA/TensorRT inference) is still to be taken.",
        f"- Python {m['python']} on {m['platform']}",
        "- " + ", ".join(f"{k} {v[k]}" for k in v) + f"; GStreamer RTSP server under {run['system_python']}; {run['ffmpeg']}",
    ]
    out += conditions_lines(run, " (runner, RTSP server, ffmpeg)", "the sustained N is lower than the machine would give alone")
    out += ["", MARK_END]
    return "\n".join(out) + "\n"


def _marginal(steps: list[Step]) -> dict | None:
    """Cost per added camera between the smallest and the largest sustained steps."""
    ok = sorted((s for s in steps if s.sustained), key=lambda s: s.n)
    if len(ok) < 2 or ok[-1].n == ok[0].n:
        return None
    a, b = ok[0], ok[-1]
    dn = b.n - a.n
    rss = (b.rss_mib - a.rss_mib) / dn
    return {"n0": a.n, "n1": b.n, "cpu": (b.runner_cores - a.runner_cores) / dn, "rss": rss, "rss0": a.rss_mib - rss * a.n}


def write_results(path: Path, section: str) -> None:
    """Replace this benchmark's section of `path` (or append it)."""
    write_section(path, section, MARK_START, MARK_END)


def _ffmpeg_version() -> str:
    try:
        return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0].split(" Copyright")[0]
    except (OSError, IndexError):
        return "ffmpeg unknown"


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=_int_list, help="measure these camera counts (comma-separated) instead of searching")
    ap.add_argument("--start", type=int, default=2, help="first N of the search (default 2; doubles)")
    ap.add_argument("--max-n", type=int, default=512, help="stop doubling past this N")
    ap.add_argument("--precision", type=int, default=1, help="bisect until sustained and failed N are this close")
    ap.add_argument("--max-total-s", type=float, default=600, help="cap on the whole run in seconds (default 600)")
    ap.add_argument("--measure-s", type=float, default=40, help="measured window per step (default 40 s)")
    ap.add_argument("--settle-s", type=float, default=10, help="wait after every camera's first frame (default 10 s)")
    ap.add_argument("--startup-timeout-s", type=float, default=60, help="for every camera's first frame (+0.5 s per camera)")
    ap.add_argument("--first-step-estimate-s", type=float, default=75, help="assumed step length until one was measured")
    ap.add_argument("--no-early-stop", dest="early_stop", action="store_false", help="measure clearly overloaded steps in full")
    ap.add_argument("--lag-steps", type=float, default=2.0, help="lag limit in cadence steps (default 2)")
    ap.add_argument("--min-rate", type=float, default=0.9, help="analysed share of one frame per cadence required (default 0.9)")
    ap.add_argument("--status-interval-s", type=float, default=1.0, help="the runner's status rewrite interval (default 1 s)")
    ap.add_argument("--shared-streams", action="store_true",
                    help="one server stream per distinct copy, shared by its cameras (cheaper; GstRtspServer may abort when a client lags)")
    ap.add_argument("--clips", help="comma-separated sample video names (prefixes) to serve (default: every sample video)")
    ap.add_argument("--height", type=int, default=1080, help="lines of the H.264 copies (default 1080)")
    ap.add_argument("--gop-s", type=float, default=2.0, help="keyframe interval of the copies (default 2 s)")
    ap.add_argument("--phases", type=int, default=4, help="keyframe phases across cameras (default 4)")
    ap.add_argument("--min-clip-s", type=float, default=20, help="loop each clip to at least this long (default 20 s)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the H.264 copies are kept (default .citypatrol-cache/bench_live)")
    ap.add_argument("--prepare-only", action="store_true", help="make the H.264 copies and exit (not timed)")
    ap.add_argument("--keep", type=Path, help="keep each step's config, logs and status files here")
    ap.add_argument("--models", type=Path, help="a YAML file whose `models:` section replaces the default models "
                    "(e.g. the COCO model as an INT8 export calibrated on frames of your cameras)")
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of --results")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    ap.add_argument("--json", type=Path, help="also write the raw measurements as JSON here")
    args = ap.parse_args(argv)

    started = time.monotonic()
    os.environ.setdefault("CITYPATROL_ASSET_MIRROR", str((REPO.parent / "shared" / "assets").resolve()))
    why = server_available()
    if why:
        raise SystemExit(f"cannot serve RTSP on loopback: {why} (make system-deps)")
    from citypatrol.pipeline.config.models import Camera, Config

    def say(msg: str) -> None:
        print(msg, flush=True)

    cadence = Camera.model_fields["cadence_s"].default
    say(f"preparing H.264 copies in {args.cache} …")
    copies = prepare_streams(args)
    say(f"  {len(copies)} copies ready ({time.monotonic() - started:.0f} s)")
    if args.prepare_only:
        return 0

    machine = machine_info()
    machine["versions"] = {k: v for k, v in machine["versions"].items() if k in ("openvino", "ultralytics", "av", "numpy", "torch")}
    ps_before = _top_processes()
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    say(f"cadence {cadence:g} s; load average {load_before}")
    watch = ProcessWatch()
    watch.start()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tmp = tempfile.TemporaryDirectory(prefix="bench_live_")
    work = args.keep or Path(tmp.name)
    try:
        steps, ended = search(copies, args, work, started, say)
    finally:
        tmp.cleanup()
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = watch.stop((own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime))
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    competing = w["others_cpu_s"] > 0.10 * w["wall_s"]
    run = {
        "date": date,
        "command": "python benchmarks/bench_live.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.measure_s < 20,
        "cadence_s": cadence,
        "model": " + ".join(f"{d.weights}{'' if d.export == 'none' else ' as ' + d.export} @{d.imgsz}"
                            for d in (Config(models=models_section(args)) if args.models else Config()).models.detectors),
        "clips": sorted({name for name, _, _ in copies}),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine,
        "system_python": subprocess.run([SYSTEM_PYTHON, "--version"], capture_output=True, text=True).stdout.strip(),
        "ffmpeg": _ffmpeg_version(),
        "load_before": load_before,
        "load_after": load_after,
        "ps_before": ps_before,
        "watch": w,
        "competing": competing,
        "ended": ended,
        "total_s": time.monotonic() - started,
    }
    best, fail = largest_sustained(steps)
    say("")
    say("\n".join(render_table(steps, cadence)))
    say(f"\nsearch: {ended}")
    if best:
        say(f"largest N sustained: {best.n} ({best.cores_per_camera:.3f} cores and {best.rss_mib / best.n:.0f} MiB RSS per camera)")
    else:
        say("no N sustained")
    say(f"load average before {load_before}, after {load_after}; other processes used {w['others_cpu_s']:.0f} CPU-s "
        f"during the {w['wall_s']:.0f} s run" + (" (competing for the CPU)" if competing else ""))
    say("GPU: not measured (no GPU on this machine)")
    if args.json:
        args.json.write_text(json.dumps({**run, "steps": [vars(s) for s in steps]}, indent=2, default=str))
    if args.write:
        write_results(args.results, render_section(run, steps))
        say(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
