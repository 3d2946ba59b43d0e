#!/usr/bin/env python3
"""Ingest benchmark: camera-seconds analysed per wall-second and per CPU-second, and peak RSS.

On the sample footage (`sample_videos/`, placed by `citypatrol samples fetch`), in one run:

  (a) naive     the loop a user writes first: ultralytics `YOLO(weights).predict(source=video,
                stream=True)` over every frame, PyTorch .pt at 640;
  (b) sampled   citypatrol's path at the default cadence (`Camera.cadence_s`): `open_source` (keyframes
                or decode-and-drop) + `Detector`, frames taken round-robin across the videos and
                batched like the batch runner does; one variant per backend (PyTorch .pt, ONNX
                Runtime, OpenVINO INT8 from the registry, OpenVINO fp32 exported here);
  (c) pipeline  `run_batch` with the default `Config` (default model; detector + tracker + rules +
                case store + evidence + report), the whole-pipeline figure;
  (d) stride    the sampling a user can ask ultralytics for: `predict(source=video, stream=True,
                vid_stride=N)` with N = the video's frame rate × the default cadence, PyTorch .pt at
                640, so it analyses about as many frames as (b) and (c). (c)/(a) and (c)/(d) are both
                printed: the pipeline against the naive loop and against ultralytics' own sampling.

Every variant runs in its own subprocess, so its peak RSS (`ru_maxrss` at the end of the child) is
its own. Model loading and one warm-up inference on a blank image happen before the clock starts
(for every variant alike) and are reported separately. Timed: decoding, sampling, pre/post-
processing, inference (and for (c) everything `run_batch` does). CPU time is the child's process
CPU time (all its threads, plus any grandchildren). Camera-seconds = the footage's duration.

    python benchmarks/bench_ingest.py                  # all videos, all backends, print the table
    python benchmarks/bench_ingest.py --write          # … and replace this benchmark's section of RESULTS.md
    python benchmarks/bench_ingest.py --quick --backends openvino-int8   # smoke test on the shortest video

The parent also records the machine (CPU, cores, RAM, versions), the load average before and after,
and how much CPU other processes used while the benchmark ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CACHE = REPO / ".citypatrol-cache" / "bench"
MARK_START = "<!-- bench_ingest:start -->"
MARK_END = "<!-- bench_ingest:end -->"

PT_MODEL = "yolo11n-coco"  # registry name of the fp32 .pt (the weights of (a) and of the exports)
INT8_MODEL = "yolo11n-coco-openvino-int8"  # registry name of the mirror's OpenVINO INT8 model
IMGSZ = 640

BACKENDS = {  # name → what the (b) variant runs
    "pt": "PyTorch .pt (fp32)",
    "onnx": "ONNX Runtime (fp32, exported here)",
    "openvino-int8": "OpenVINO INT8 (registry model)",
    "openvino-fp32": "OpenVINO fp32 (exported here)",
}
PACKAGES = ["torch", "torchvision", "ultralytics", "openvino", "onnxruntime", "onnx", "av", "numpy"]


# --------------------------------------------------------------------------------------------
# Child side: one variant, measured in its own process.
# --------------------------------------------------------------------------------------------


def _cpu_now() -> float:
    """CPU seconds of this process (all threads) plus any children it waited for."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def _weights_path() -> Path:
    from citypatrol.models.assets import resolve_asset
    from citypatrol.models.registry import load_registry

    return resolve_asset(load_registry().get(PT_MODEL))


def _export(fmt: str) -> Path:
    """The ONNX / OpenVINO fp32 export of the .pt, cached outside git under .citypatrol-cache/bench."""
    from importlib.metadata import version

    from citypatrol.models.assets import sha256_file
    from citypatrol.models.export import export_weights

    weights = _weights_path()
    key = {"weights_sha256": sha256_file(weights), "imgsz": IMGSZ, "dynamic": True, "ultralytics": version("ultralytics")}
    out_dir = CACHE / f"{fmt}-{IMGSZ}"
    stamp = out_dir / "stamp.json"
    target = out_dir / (weights.stem + (".onnx" if fmt == "onnx" else "_openvino_model"))
    if stamp.is_file() and target.exists() and json.loads(stamp.read_text()) == key:
        return target
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    result = export_weights(weights, fmt, out_dir, imgsz=IMGSZ, dynamic=True)
    stamp.write_text(json.dumps(key))
    return result


def _warm_image():
    import numpy as np

    return np.full((IMGSZ, IMGSZ, 3), 114, dtype=np.uint8)


def _run_naive(videos: list[Path], passes: int) -> tuple[list[dict], dict]:
    """(a) ultralytics' own video loop over every frame."""
    import citypatrol.models  # noqa: F401  (ultralytics offline, as everywhere in citypatrol)
    from ultralytics import YOLO

    model = YOLO(str(_weights_path()))
    model.predict(_warm_image(), imgsz=IMGSZ, verbose=False)  # load + warm up, like Detector does
    timings = []
    for _ in range(passes):
        frames = boxes = 0
        w0, c0 = time.perf_counter(), _cpu_now()
        for video in videos:
            for result in model.predict(source=str(video), stream=True, imgsz=IMGSZ, verbose=False):
                frames += 1
                boxes += len(result.boxes)
        timings.append({"wall_s": time.perf_counter() - w0, "cpu_s": _cpu_now() - c0,
                             "frames_analysed": frames, "frames_decoded": frames, "detections": boxes})
    return timings, {"weights": _weights_path().name, "device": str(model.device) if hasattr(model, "device") else "cpu"}


def _run_stride(videos: list[Path], passes: int, cadence_s: float) -> tuple[list[dict], dict]:
    """(d) ultralytics' video loop with vid_stride at the cadence: every video's frames read, one in N inferred."""
    import citypatrol.models  # noqa: F401  (ultralytics offline, as everywhere in citypatrol)
    from ultralytics import YOLO

    import av

    model = YOLO(str(_weights_path()))
    model.predict(_warm_image(), imgsz=IMGSZ, verbose=False)
    strides, totals = {}, {}
    for video in videos:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            total = stream.frames or round(float(stream.duration * stream.time_base) * fps)
        strides[video.name] = max(1, round(fps * cadence_s))
        totals[video.name] = total
    timings = []
    for _ in range(passes):
        frames = boxes = 0
        w0, c0 = time.perf_counter(), _cpu_now()
        for video in videos:
            for result in model.predict(source=str(video), stream=True, vid_stride=strides[video.name], imgsz=IMGSZ, verbose=False):
                frames += 1
                boxes += len(result.boxes)
        timings.append({"wall_s": time.perf_counter() - w0, "cpu_s": _cpu_now() - c0,
                        "frames_analysed": frames, "frames_decoded": sum(totals.values()), "detections": boxes})
    return timings, {"weights": _weights_path().name, "vid_stride": strides}


def _detector_config(backend: str):
    from citypatrol.pipeline.config.models import DetectorConfig

    weights = {
        "pt": lambda: str(_weights_path()),
        "onnx": lambda: str(_export("onnx")),
        "openvino-int8": lambda: INT8_MODEL,
        "openvino-fp32": lambda: str(_export("openvino")),
    }[backend]()
    return DetectorConfig(name=f"bench-{backend}", weights=weights, imgsz=IMGSZ)


def _run_sampled(videos: list[Path], passes: int, backend: str) -> tuple[list[dict], dict]:
    """(b) open_source at the default cadence + Detector, round-robin across the videos like run_batch."""
    from citypatrol.models.detector import Detector
    from citypatrol.pipeline.config.models import Camera
    from citypatrol.streams import open_source

    cadence = Camera.model_fields["cadence_s"].default
    det = Detector(_detector_config(backend))
    timings = []
    per_video: dict[str, list[int]] = {}
    for _ in range(passes):
        frames = boxes = 0
        in_detect = 0.0
        w0, c0 = time.perf_counter(), _cpu_now()
        sources = [open_source(v.stem, str(v), cadence) for v in videos]
        iters = [s.frames() for s in sources]
        batch: list = []
        while iters:
            for it in list(iters):
                try:
                    batch.append(next(it))
                except StopIteration:
                    iters.remove(it)
                if len(batch) >= det.cfg.batch or (not iters and batch):
                    d0 = time.perf_counter()
                    for d in det.detect([f.image for f in batch]):
                        boxes += len(d)
                    in_detect += time.perf_counter() - d0
                    frames += len(batch)
                    batch = []
        decoded = sum(s.stats.frames_decoded for s in sources)
        per_video = {Path(s.source).name: [s.stats.frames_decoded, s.stats.frames_analysed] for s in sources}
        for s in sources:
            s.close()
        timings.append({"wall_s": time.perf_counter() - w0, "cpu_s": _cpu_now() - c0, "detect_wall_s": in_detect,
                        "frames_analysed": frames, "frames_decoded": decoded, "detections": boxes})
    return timings, {"weights": Path(det.weights).name, "model": det.ref, "cadence_s": cadence,
                     "batch": det.cfg.batch, "imgsz": det.imgsz, "per_video": per_video}


def _run_pipeline(videos: list[Path], passes: int) -> tuple[list[dict], dict]:
    """(c) run_batch with the default Config: detector + tracker + rules + store + evidence + report."""
    import io

    from rich.console import Console

    from citypatrol.models.detector import load_detectors
    from citypatrol.pipeline.batch.runner import cameras_for_paths, run_batch
    from citypatrol.pipeline.config.models import Config

    config = Config()
    cameras = cameras_for_paths([str(v) for v in videos], config)
    detector = load_detectors(config.models)
    timings = []
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        for i in range(passes):
            w0, c0 = time.perf_counter(), _cpu_now()
            result = run_batch(config, cameras, Path(tmp) / f"pass{i}", detector,
                               console=Console(file=io.StringIO()), show_progress=False)
            wall, cpu = time.perf_counter() - w0, _cpu_now() - c0
            errors = [f"{o.camera_id}: {o.error}" for o in result.outcomes if o.error]
            if errors:
                raise RuntimeError("run_batch reported errors: " + "; ".join(errors))
            timings.append({"wall_s": wall, "cpu_s": cpu,
                            "frames_analysed": sum(o.frames for o in result.outcomes),
                            "frames_decoded": None,
                            "detections": sum(o.detections for o in result.outcomes),
                            "cases": len(result.cases)})
    return timings, {"model": detector.version, "cadence_s": cameras[0].cadence_s if cameras else None,
                     "batch": max(d.batch for d in config.models.detectors)}


def child_main(variant: str, videos: list[Path], passes: int, out: Path) -> None:
    w0, c0 = time.perf_counter(), _cpu_now()
    if variant == "export-onnx":
        info = {"path": str(_export("onnx"))}
        timings: list[dict] = []
    elif variant == "export-openvino":
        info = {"path": str(_export("openvino"))}
        timings = []
    else:
        kind, _, backend = variant.partition(":")
        runner = {"naive": lambda: _run_naive(videos, passes),
                  "sampled": lambda: _run_sampled(videos, passes, backend),
                  "pipeline": lambda: _run_pipeline(videos, passes),
                  "stride": lambda: _run_stride(videos, passes, float(backend))}[kind]
        timings, info = runner()
    total_wall, total_cpu = time.perf_counter() - w0, _cpu_now() - c0
    info["threads"] = _thread_settings()
    record = {
        "variant": variant,
        "passes": timings,
        "info": info,
        "setup_wall_s": total_wall - sum(t["wall_s"] for t in timings),
        "setup_cpu_s": total_cpu - sum(t["cpu_s"] for t in timings),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    out.write_text(json.dumps(record))


def _thread_settings() -> dict:
    out = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out


# --------------------------------------------------------------------------------------------
# Parent side: pick the footage, run the children, watch the machine, print and write.
# --------------------------------------------------------------------------------------------


def _videos(quick: bool) -> tuple[list[Path], dict[str, float]]:
    from citypatrol.pipeline.evaluation.samples import fetch_samples, load_samples
    from citypatrol.streams.media import is_video
    from citypatrol.streams.probe import duration_s

    # The sample videos (stills sequences in the manifest are not video footage: left out).
    names = [s.name for s in load_samples() if is_video(Path(s.entry.path))]
    videos = fetch_samples(names=names)  # places missing files through the resolver; sha256-checked
    durations = {v.name: duration_s(v) or 0.0 for v in videos}
    missing = [n for n, d in durations.items() if d <= 0]
    if missing:
        raise SystemExit(f"cannot read the duration of {missing}")
    if quick:
        videos = [min(videos, key=lambda v: durations[v.name])]
    return videos, {v.name: durations[v.name] for v in videos}


def _run_child(variant: str, videos: list[Path], passes: int, env: dict, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_ingest_child_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--passes", str(passes),
               "--child-out", str(out), *map(str, videos)]
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            raise RuntimeError(f"variant {variant} failed (exit {proc.returncode}):\n  " + "\n  ".join(tail))
        return json.loads(out.read_text())


class ProcessWatch:
    """CPU used by every other process on the machine between start() and stop() (from /proc)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.me = os.getpid()

    @staticmethod
    def _stat_total() -> tuple[int, int]:
        fields = open("/proc/stat").readline().split()[1:]
        vals = list(map(int, fields[:8]))
        idle = vals[3] + vals[4]
        return sum(vals), idle

    def _snapshot(self) -> dict[int, tuple[str, float, int]]:
        snap = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                raw = open(f"/proc/{entry}/stat").read()
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            rest = raw[raw.rindex(")") + 2 :].split()
            ppid, utime, stime, nice = int(rest[1]), int(rest[11]), int(rest[12]), int(rest[16])
            name = cmd or raw[raw.index("(") + 1 : raw.rindex(")")]
            snap[int(entry)] = (name, (utime + stime) / self.tick, ppid, nice)
        return snap

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.s0 = self._snapshot()
        self.stat0 = self._stat_total()

    def stop(self, own_children_cpu: float) -> dict:
        wall = time.perf_counter() - self.t0
        s1 = self._snapshot()
        stat1 = self._stat_total()
        total = (stat1[0] - self.stat0[0]) / self.tick
        busy = total - (stat1[1] - self.stat0[1]) / self.tick
        others = []
        for pid, (name, cpu, ppid, nice) in s1.items():
            if pid == self.me or ppid == self.me:
                continue
            before = self.s0.get(pid, (name, 0.0, ppid, nice))[1]
            used = cpu - before
            if used >= 0.5:
                others.append({"pid": pid, "cmd": name[:110], "cpu_s": round(used, 1), "nice": nice})
        others.sort(key=lambda o: -o["cpu_s"])
        return {"wall_s": wall, "machine_busy_cpu_s": busy, "own_cpu_s": own_children_cpu,
                "others": others, "others_cpu_s": sum(o["cpu_s"] for o in others)}


def _top_processes(n: int = 6) -> list[str]:
    try:
        out = subprocess.run(["ps", "-eo", "pid,ni,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    except OSError:
        return []
    lines = out.splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if str(os.getpid()) != ln.split()[0] and " ps -eo" not in ln][:n]
    return [ln[:150] for ln in keep]


def machine_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "cpu_model": cpu_model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "gpu": _gpu_line(),
    }


def _gpu_line() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0] + " (present, but this benchmark has no GPU variants yet)"
    except (OSError, subprocess.SubprocessError):
        pass
    return "GPU figures: not measured; no GPU available to this run"


def summarise(rec: dict, camera_s: float) -> dict:
    passes = rec["passes"]
    walls = [p["wall_s"] for p in passes]
    cpus = [p["cpu_s"] for p in passes]
    mid = sorted(range(len(passes)), key=lambda i: walls[i])[len(passes) // 2]  # the median pass by wall time
    p = passes[mid]
    return {
        "variant": rec["variant"],
        "camera_s": camera_s,
        "passes": len(passes),
        "wall_s": p["wall_s"],
        "cpu_s": p["cpu_s"],
        "detect_wall_s": p.get("detect_wall_s"),
        "per_wall": camera_s / p["wall_s"],
        "per_cpu": camera_s / p["cpu_s"],
        "per_wall_range": (camera_s / max(walls), camera_s / min(walls)),
        "cpu_util": p["cpu_s"] / p["wall_s"],
        "frames_analysed": p["frames_analysed"],
        "frames_decoded": p["frames_decoded"],
        "detections": p["detections"],
        "cases": p.get("cases"),
        "setup_wall_s": rec["setup_wall_s"],
        "peak_rss_mib": rec["peak_rss_kib"] / 1024,
        "info": rec["info"],
        "all_cpu_median": statistics.median(cpus),
    }


def _default_models() -> str:
    """The detectors a default Config runs, e.g. 'yolo11n-coco-openvino-int8 @640 + citypatrol-city @384'."""
    from citypatrol.pipeline.config.models import Config

    return " + ".join(f"{d.weights} @{d.imgsz}" for d in Config().models.detectors)


def _label(variant: str) -> tuple[str, str]:
    kind, _, backend = variant.partition(":")
    if kind == "naive":
        return "(a) ultralytics predict(stream=True), every frame", "PyTorch .pt"
    if kind == "pipeline":
        return "(c) citypatrol run_batch, default Config", "default models: " + _default_models()
    if kind == "stride":
        return f"(d) ultralytics predict(stream=True, vid_stride=fps×{float(backend):g} s)", "PyTorch .pt"
    return "(b) citypatrol open_source + Detector", BACKENDS[backend]


def render_table(rows: list[dict]) -> list[str]:
    base = next((r for r in rows if r["variant"] == "naive"), None)
    head = ("| variant | backend | frames analysed / decoded | camera-s | wall s | camera-s per wall-s | "
            "camera-s per CPU-s | CPU use (cores) | peak RSS MiB | load+warm-up s | (b)/(a) wall | (b)/(a) CPU |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        what, backend = _label(r["variant"])
        decoded = "—" if r["frames_decoded"] is None else str(r["frames_decoded"])
        det = f" ({r['detect_wall_s']:.2f} in detector)" if r.get("detect_wall_s") is not None else ""
        rng = f" ({r['per_wall_range'][0]:.2f}–{r['per_wall_range'][1]:.2f})" if r["passes"] > 1 else ""
        ratio_w = ratio_c = "1.0×" if r is base else "—"
        if base is not None and r is not base:
            ratio_w = f"{r['per_wall'] / base['per_wall']:.1f}×"
            ratio_c = f"{r['per_cpu'] / base['per_cpu']:.1f}×"
        lines.append(
            f"| {what} | {backend} | {r['frames_analysed']} / {decoded} | {r['camera_s']:.1f} | {r['wall_s']:.2f}{det} | "
            f"**{r['per_wall']:.2f}**{rng} | {r['per_cpu']:.2f} | {r['cpu_util']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{r['setup_wall_s']:.1f} | {ratio_w} | {ratio_c} |"
        )
    return lines


def _per_video_lines(rows: list[dict]) -> list[str]:
    row = next((r for r in rows if r["info"].get("per_video")), None)
    if row is None:
        return []
    parts = [f"`{name}` {dec} decoded → {ana} analysed" for name, (dec, ana) in row["info"]["per_video"].items()]
    return ["- Frames per video in (b) (the same for every backend): " + "; ".join(parts) + ". "
            "Where every frame of a file is decoded, its keyframes come less often than the cadence. "
            "*wall s* of (b) shows in brackets the part spent in `Detector.detect` (pre-processing, inference, NMS)."]


def pipeline_ratios(rows: list[dict]) -> str | None:
    """(c) against (a), the naive loop, and against (d), ultralytics' own sampling at the cadence."""
    by = {r["variant"].partition(":")[0]: r for r in rows}
    c, a, d = by.get("pipeline"), by.get("naive"), by.get("stride")
    if c is None or a is None or d is None:
        return None
    return (f"**(c) pipeline: {c['per_wall'] / a['per_wall']:.1f}× (a) per wall-second and {c['per_cpu'] / a['per_cpu']:.1f}× "
            f"per CPU-second; {c['per_wall'] / d['per_wall']:.1f}× (d) `vid_stride` per wall-second and "
            f"{c['per_cpu'] / d['per_cpu']:.1f}× per CPU-second.**")


def _stride_lines(rows: list[dict]) -> list[str]:
    row = next((r for r in rows if r["variant"].startswith("stride:")), None)
    if row is None:
        return []
    parts = [f"`{n}` every {k}th frame" for n, k in row["info"]["vid_stride"].items()]
    return ["- (d) reads every frame of each video with OpenCV and infers one in N (PyTorch .pt at "
            f"{IMGSZ}, like (a)): " + "; ".join(parts) + "."]


def _threads_note(row: dict) -> str:
    t = row["info"]["threads"]
    parts = []
    if t.get("torch_threads") is not None:
        parts.append(f"torch {t['torch_threads']} thread(s)")
    if t.get("OMP_NUM_THREADS") is not None:
        parts.append(f"OMP_NUM_THREADS={t['OMP_NUM_THREADS']}")
    name = row["variant"].replace("sampled:", "(b) ").replace("naive", "(a)").replace("pipeline", "(c)")
    name = "(d)" if name.startswith("stride:") else name
    return f"{name}: {', '.join(parts) or 'torch not loaded'}"


def render_section(run: dict) -> str:
    m = run["machine"]
    rows = run["rows"]
    v = m["versions"]
    out = [MARK_START, "## Ingest: camera-seconds analysed per second (`benchmarks/bench_ingest.py`)", ""]
    if run["quick"]:
        out += ["> **Quick smoke run (one short video): not a benchmark result.**", ""]
    out += [
        f"Run {run['date']} with `{run['command']}`; generated by the script, do not edit by hand.",
        "",
        f"Footage: {', '.join(f'`{n}` ({d:.1f} s)' for n, d in run['durations'].items())} "
        f"= {sum(run['durations'].values()):.1f} camera-seconds. "
        f"(b) and (c) sample at the default cadence of {run['cadence_s']:g} s.",
        "",
        *render_table(rows),
        "",
        *([pipeline_ratios(rows), ""] if pipeline_ratios(rows) else []),
        "- **camera-s per wall-s**: seconds of footage analysed per second of elapsed time (median pass; range over "
        "passes in brackets). **per CPU-s**: per second of the variant's process CPU time (all threads). "
        "**CPU use**: CPU-s / wall-s, i.e. cores kept busy. **(b)/(a)**: the row's figure over (a)'s.",
        "- Each variant runs in its own process; peak RSS is that process's `ru_maxrss`. Model loading and one "
        "warm-up inference run before the clock starts (column *load+warm-up*, includes imports and, for the "
        "exported backends, a cached export).",
        f"- (a) decodes and infers every frame at {IMGSZ} ({rows[0]['passes'] if rows else 1} pass(es)). (b) decodes "
        "keyframes only where the keyframes come at least once per cadence, otherwise decodes every frame and keeps "
        "one per cadence; it caps images at 1280 px and batches frames across the videos like the batch runner "
        "(batch 4, grouped by image shape). PyTorch, ONNX and OpenVINO fp32 use a rectangular letterbox "
        f"(dynamic shapes); the INT8 model is a fixed {IMGSZ}×{IMGSZ} export.",
        *_per_video_lines(rows),
        *_stride_lines(rows),
        "- (c) is everything `citypatrol analyze` does per frame (tracker, rules, case store, evidence clips, "
        "annotated sample frames, report), with the default models, each at the cadence of the rules it feeds "
        "(`pipeline/detection/schedule.py`: the COCO model on every analysed frame for parking, the city model "
        "every 10 s for vending, 30 s garbage, 60 s billboards) behind the change gate.",
        "",
        "Machine and conditions:",
        "",
        f"- CPU: {m['cpu_model']}; {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable); RAM {m['ram_gib']} GiB",
        f"- {m['gpu']}",
        f"- Python {m['python']} on {m['platform']}",
        "- " + ", ".join(f"{k} {v[k]}" for k in PACKAGES),
        "- Threads, as each variant ran (library defaults; `OMP_NUM_THREADS` "
        f"{'unset' if run['omp_env'] is None else repr(run['omp_env'])} when the benchmark started): "
        + "; ".join(_threads_note(r) for r in rows) + ". ONNX Runtime and OpenVINO use their own thread pools.",
    ]
    out += conditions_lines(run, "", "absolute figures are low; ratios measured in the same run are the comparable numbers")
    out += ["", MARK_END]
    return "\n".join(out) + "\n"


def conditions_lines(run: dict, own: str, competing_effect: str) -> list[str]:
    """Load, CPU taken by other processes during the run, and what ran before it: the run's conditions."""
    w = run["watch"]
    out = [f"- Load average before the run: {run['load_before']}; after: {run['load_after']}",
           f"- During the run ({w['wall_s']:.0f} s) the machine was busy for {w['machine_busy_cpu_s']:.0f} CPU-s, of which "
           f"this benchmark's processes{own} {w['own_cpu_s']:.0f} CPU-s and other processes {w['others_cpu_s']:.0f} CPU-s."]
    if run["competing"]:
        out.append(f"- **Other work competed for the CPU during this run**, so {competing_effect}. "
                   "Other processes (CPU-s during the run):")
        out += [f"  - {o['cpu_s']:.0f} CPU-s, nice {o['nice']}: `{o['cmd']}`" for o in w["others"][:6]]
    else:
        out.append("- Nothing else used a significant share of the CPU during the run "
                   f"(other processes: {w['others_cpu_s']:.0f} CPU-s in {w['wall_s']:.0f} s).")
    return out + ["- Processes at the top of `ps` before the run:", "", "```", *run["ps_before"], "```"]


def write_results(path: Path, section: str, start: str = MARK_START, end: str = MARK_END) -> None:
    """Replace a benchmark's section (between its markers) of `path`, or append it; everything else stays as it is."""
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        text = ("# citypatrol benchmark results\n\nEach benchmark in `benchmarks/` writes its own section below "
                "(between its markers) when run with `--write`.\n\n")
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the shortest video, one pass (smoke test)")
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help=f"comma-separated (b) backends among {', '.join(BACKENDS)} (default: all)")
    ap.add_argument("--passes", type=int, default=None,
                    help="timed passes over the footage for (b) and (c) (default 5; 1 with --quick); the median is reported")
    ap.add_argument("--naive-passes", type=int, default=1, help="timed passes for (a) (default 1: it is slow)")
    ap.add_argument("--no-pipeline", action="store_true", help="skip (c), the full run_batch figure")
    ap.add_argument("--write", action="store_true", help="replace this benchmark's section of --results")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    ap.add_argument("--json", type=Path, help="also write the raw measurements as JSON here")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per variant")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("videos", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    omp_env = os.environ.get("OMP_NUM_THREADS")  # before anything imports ultralytics (which sets it)
    os.environ.setdefault("CITYPATROL_ASSET_MIRROR", str((REPO.parent / "shared" / "assets").resolve()))
    if args.child:
        child_main(args.child, args.videos, args.passes or 1, args.child_out)
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        ap.error(f"unknown backend(s) {unknown}; choose among {list(BACKENDS)}")
    passes = args.passes or (1 if args.quick else 5)
    videos, durations = _videos(args.quick)
    camera_s = sum(durations.values())
    from citypatrol.pipeline.config.models import Camera

    cadence = Camera.model_fields["cadence_s"].default
    env = dict(os.environ)
    if omp_env is None:  # pass on the user's environment, not what an import in this process may have set
        env.pop("OMP_NUM_THREADS", None)

    # Exports first (not timed), so the measured children only load them.
    for fmt, backend in (("onnx", "onnx"), ("openvino", "openvino-fp32")):
        if backend in backends:
            print(f"exporting {PT_MODEL} to {fmt} (cached in {CACHE.relative_to(REPO)}) …", flush=True)
            _run_child(f"export-{fmt}", [], 1, env, args.timeout)

    variants = [("naive", args.naive_passes)] + [(f"sampled:{b}", passes) for b in backends]
    if not args.no_pipeline:
        variants.append(("pipeline", passes))
    variants.append((f"stride:{cadence:g}", passes))

    machine = machine_info()
    ps_before = _top_processes()
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{len(videos)} video(s), {camera_s:.1f} camera-seconds; load average {load_before}", flush=True)
    watch = ProcessWatch()
    watch.start()
    own_cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows = []
    for variant, n in variants:
        print(f"  {variant} ({n} pass{'es' if n > 1 else ''}) …", end=" ", flush=True)
        rec = _run_child(variant, videos, n, env, args.timeout)
        row = summarise(rec, camera_s)
        rows.append(row)
        print(f"{row['per_wall']:.2f} camera-s/wall-s, {row['per_cpu']:.2f} camera-s/CPU-s, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
    own_cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (own_cpu1.ru_utime + own_cpu1.ru_stime) - (own_cpu0.ru_utime + own_cpu0.ru_stime)
    w = watch.stop(own)
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    # "Competing": other processes used more than 10 % of one core over the run.
    competing = w["others_cpu_s"] > 0.10 * w["wall_s"]
    run = {
        "date": date,
        "command": "python benchmarks/bench_ingest.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "durations": durations,
        "cadence_s": cadence,
        "rows": rows,
        "machine": machine,
        "load_before": load_before,
        "load_after": load_after,
        "ps_before": ps_before,
        "watch": w,
        "competing": competing,
        "omp_env": omp_env,
    }
    print()
    print("\n".join(render_table(rows)))
    base = next((r for r in rows if r["variant"] == "naive"), None)
    if base:
        print()
        for r in rows:
            if r is not base:
                print(f"ratio {r['variant']}/(a): {r['per_wall'] / base['per_wall']:.1f}× per wall-second, "
                      f"{r['per_cpu'] / base['per_cpu']:.1f}× per CPU-second")
    if pipeline_ratios(rows):
        print(pipeline_ratios(rows).replace("**", "").replace("`", ""))
    print(f"\nload average before {load_before}, after {load_after}; other processes used "
          f"{w['others_cpu_s']:.0f} CPU-s during the {w['wall_s']:.0f} s run"
          + (" (competing for the CPU)" if competing else ""))
    print(machine["gpu"])
    if args.json:
        args.json.write_text(json.dumps(run, indent=2, default=str))
    if args.write:
        write_results(args.results, render_section(run))
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
