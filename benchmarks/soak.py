#!/usr/bin/env python3
"""Soak: the live stack on loopback RTSP cameras for a set time; memory growth, lag and errors.

`make soak` (or `python benchmarks/soak.py --minutes 10 --cameras 4 --write`):

  1. serves `--cameras` looping H.264 copies of the sample videos on loopback (the same copies and
     RTSP server as `bench_live.py`), with the RTSP server restarted every `--restart-every-min`
     minutes on the same port, so reconnects are part of the soak;
  2. runs the real `citypatrol run --config …` as a child process (default models, rules, camera
     health, SQLite store, evidence, `/metrics`) at the default cadence;
  3. every `--sample-s` seconds records the runner's RSS and CPU (from /proc) and its status file
     (per camera: analysed frames, lag, reconnects, decode errors, state);
  4. stops the runner with SIGTERM and reports: RSS after warm-up and at the end, the growth over
     the run and its least-squares slope (MiB per hour) after warm-up, lag p50/p95/max, reconnects,
     decode errors, the runner's ERROR/Traceback log lines, cases written, and whether the runner
     exited cleanly.

Memory counts as **flat** when the RSS of the last quarter of the run is within 5 % (or 20 MiB) of
the RSS of the quarter after warm-up. The verdict is a reading, not a test assertion.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import machine_info, write_results  # noqa: E402
from bench_live import (  # noqa: E402
    CACHE,
    RESULTS,
    RtspServer,
    _pct,
    _proc_cpu_s,
    _proc_mem_kib,
    _tail,
    free_port,
    prepare_streams,
    server_available,
    start_runner,
    stop_runner,
)

MARK_START = "<!-- soak:start -->"
MARK_END = "<!-- soak:end -->"


@dataclass
class Sample:
    t_s: float  # since the runner started
    rss_mib: float
    cpu_s: float
    frames: int
    lags: list[float] = field(default_factory=list)  # one per camera that analysed a new frame since the last sample
    reconnects: int = 0
    decode_errors: int = 0
    not_running: list[str] = field(default_factory=list)


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x."""
    if len(points) < 3:
        return None
    xs, ys = zip(*points)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else None


def soak(args: argparse.Namespace, work: Path, say) -> dict:
    from citypatrol.pipeline.live.status import read_status

    copies = prepare_streams(argparse.Namespace(clips=args.clips, gop_s=2.0, phases=1, height=args.height,
                                                min_clip_s=20.0, cache=args.cache))
    mounts = {f"cam{i:03d}": copies[i % len(copies)][2] for i in range(args.cameras)}
    port = free_port()
    server = RtspServer(mounts, work / "rtsp_server.log", port=port)
    status_file, log = work / "status.json", work / "run.log"
    runner = start_runner([server.url(name) for name in mounts], work, 1.0)
    t0 = time.monotonic()
    duration = args.minutes * 60
    samples: list[Sample] = []
    restarts = 0
    next_restart = args.restart_every_min * 60 if args.restart_every_min else None
    seen: dict[str, int] = {}
    try:
        while time.monotonic() - t0 < duration:
            time.sleep(args.sample_s)
            el = time.monotonic() - t0
            if runner.poll() is not None:
                say(f"  the runner exited ({runner.returncode}) after {el:.0f} s: {_tail(log)}")
                break
            if next_restart is not None and next_restart <= el < duration - min(60.0, duration / 3):  # room to recover
                say(f"  {el:5.0f} s: restarting the RTSP server")
                server.stop()
                time.sleep(3)
                server = RtspServer(mounts, work / "rtsp_server.log", port=port)
                restarts += 1
                next_restart += args.restart_every_min * 60
            try:
                st = read_status(status_file)
            except (FileNotFoundError, ValueError):
                continue
            rss, _ = _proc_mem_kib(runner.pid)
            s = Sample(el, rss / 1024, _proc_cpu_s(runner.pid), sum(c.frames_analysed for c in st.cameras),
                       reconnects=sum(c.reconnects for c in st.cameras),
                       decode_errors=sum(c.decode_errors for c in st.cameras),
                       not_running=[c.camera_id for c in st.cameras if c.state != "running"])
            for c in st.cameras:
                if c.frames_analysed != seen.get(c.camera_id) and c.lag_s is not None:
                    s.lags.append(c.lag_s)
                    seen[c.camera_id] = c.frames_analysed
            samples.append(s)
            if len(samples) % max(1, int(60 / args.sample_s)) == 0:
                say(f"  {el:5.0f} s: RSS {s.rss_mib:6.0f} MiB, {s.frames} frames analysed, "
                    f"lag {_fmt(_pct(s.lags, 50))} s, reconnects {s.reconnects}, decode errors {s.decode_errors}")
    finally:
        exit_code = stop_runner(runner)
        server.stop()
    return _figures(samples, args, work, log, exit_code, restarts, time.monotonic() - t0)


def _figures(samples: list[Sample], args, work: Path, log: Path, exit_code, restarts: int, wall_s: float) -> dict:
    if len(samples) < 8:
        raise SystemExit(f"too few samples ({len(samples)}) for a soak report; see {log}")
    warm = [s for s in samples if s.t_s >= args.warmup_s] or samples
    quarter = max(1, len(warm) // 4)
    early = statistics.median(s.rss_mib for s in warm[:quarter])
    late = statistics.median(s.rss_mib for s in warm[-quarter:])
    slope = _slope([(s.t_s / 3600, s.rss_mib) for s in warm])
    lags = [v for s in warm for v in s.lags]
    log_text = log.read_text(errors="replace")
    try:
        with sqlite3.connect(work / "city.db") as db:
            cases = db.execute("SELECT count(*) FROM cases").fetchone()[0]
    except sqlite3.Error as exc:
        cases = f"unreadable ({exc})"
    cpu = (samples[-1].cpu_s - warm[0].cpu_s) / max(1e-9, samples[-1].t_s - warm[0].t_s)
    return {
        "wall_s": wall_s, "samples": len(samples), "rss_first": samples[0].rss_mib, "rss_warm": early, "rss_end": late,
        "rss_max": max(s.rss_mib for s in samples), "growth": late - early, "slope_mib_h": slope,
        "flat": abs(late - early) <= max(20.0, 0.05 * early),
        "lag_p50": _pct(lags, 50), "lag_p95": _pct(lags, 95), "lag_max": max(lags) if lags else None,
        "frames": samples[-1].frames, "fps": (samples[-1].frames - warm[0].frames) / max(1e-9, samples[-1].t_s - warm[0].t_s),
        "reconnects": samples[-1].reconnects, "decode_errors": samples[-1].decode_errors, "restarts": restarts,
        "not_running_samples": sum(1 for s in warm if s.not_running), "cores": cpu,
        "errors": sum(1 for line in log_text.splitlines() if " ERROR " in line or line.startswith("ERROR")),
        "tracebacks": log_text.count("Traceback"), "cases": cases, "exit_code": exit_code,
        "timeline": [(round(s.t_s), round(s.rss_mib, 1), s.frames) for s in samples],
    }


def _fmt(v, f: str = "{:.2f}") -> str:
    return "–" if v is None else f.format(v)


def render_section(r: dict, args, machine: dict, command: str, date: str) -> str:
    cadence = r["cadence_s"]
    out = [MARK_START, "## Soak: the live stack for a set time (`benchmarks/soak.py`, `make soak`)", "",
           f"Run {date} with `{command}`; generated by the script, do not edit by hand.", "",
           f"**Memory {'flat' if r['flat'] else 'NOT flat'}**: RSS {r['rss_warm']:.0f} MiB after warm-up "
           f"({args.warmup_s:g} s), {r['rss_end']:.0f} MiB at the end (growth {r['growth']:+.1f} MiB; least-squares "
           f"slope after warm-up {_fmt(r['slope_mib_h'], '{:+.1f}')} MiB/hour; peak {r['rss_max']:.0f} MiB).", "",
           "| figure | value |", "|---|---|",
           f"| run | {r['wall_s'] / 60:.1f} min, {args.cameras} cameras at cadence {cadence:g} s, {r['samples']} samples |",
           f"| frames analysed | {r['frames']} ({r['fps']:.2f}/s after warm-up; target {args.cameras / cadence:.2f}/s) |",
           f"| lag behind live, s | p50 {_fmt(r['lag_p50'])} / p95 {_fmt(r['lag_p95'])} / max {_fmt(r['lag_max'])} |",
           f"| RTSP server restarts | {r['restarts']} (every {args.restart_every_min:g} min) |",
           f"| reconnects | {r['reconnects']} |",
           f"| decode errors | {r['decode_errors']} |",
           f"| samples with a camera not running | {r['not_running_samples']} |",
           f"| runner ERROR log lines / tracebacks | {r['errors']} / {r['tracebacks']} |",
           f"| cases written | {r['cases']} |",
           f"| runner CPU | {r['cores']:.2f} cores |",
           f"| runner exit after SIGTERM | {r['exit_code']} |", "",
           "RSS over time (s → MiB, frames analysed): "
           + ", ".join(f"{t}→{m:.0f}" for t, m, _ in r["timeline"][:: max(1, len(r["timeline"]) // 12)]), "",
           f"- Cameras: H.264 copies of the sample videos ({args.height} lines, 25 fps, keyframe every 2 s) served by "
           "`tests/rtsp_server.py` on 127.0.0.1; the server is restarted on the same port during the run, so each "
           "camera goes offline and reconnects (reconnects and ERROR lines above include those outages).",
           "- Memory counts as flat when the median RSS of the last quarter of the samples after warm-up is within "
           "5 % (or 20 MiB) of the median of the first quarter.",
           f"- Machine: {machine['cpu_model']}; {machine['usable_cpus']} usable CPUs; RAM {machine['ram_gib']} GiB; "
           f"Python {machine['python']}; no GPU.", "", MARK_END]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the runner runs (default 10)")
    ap.add_argument("--cameras", type=int, default=4, help="loopback RTSP cameras (default 4)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="left out of the growth figures (default 60)")
    ap.add_argument("--restart-every-min", type=float, default=4.0, help="restart the RTSP server this often (0: never)")
    ap.add_argument("--clips", default=None, help="comma-separated sample video names (prefixes) to serve")
    ap.add_argument("--height", type=int, default=720, help="lines of the H.264 copies (default 720)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the H.264 copies are kept")
    ap.add_argument("--keep", type=Path, help="keep the config, logs, status file and store here")
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of --results")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    os.environ.setdefault("CITYPATROL_ASSET_MIRROR", str((Path(__file__).resolve().parents[2] / "shared" / "assets")))
    why = server_available()
    if why:
        raise SystemExit(f"cannot serve RTSP on loopback: {why} (make system-deps)")
    from citypatrol.pipeline.config.models import Camera

    def say(msg: str) -> None:
        print(msg, flush=True)

    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    say(f"soak: {args.cameras} cameras for {args.minutes:g} min …")
    tmp = tempfile.TemporaryDirectory(prefix="soak_")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = soak(args, work, say)
    finally:
        tmp.cleanup()
    result["cadence_s"] = Camera.model_fields["cadence_s"].default
    command = "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render_section(result, args, machine_info(), command, date)
    say("\n" + section)
    if args.write:
        write_results(args.results, section, MARK_START, MARK_END)
        say(f"wrote {args.results}")
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
