"""Measurements for a model card: held-out metrics, latency per backend, detections on footage.

    python -m citypatrol.models.training.report metrics  WEIGHTS DATA_YAML --imgsz 384 [--imgsz 480 …]
    python -m citypatrol.models.training.report classes  WEIGHTS DATA_YAML --imgsz 480 --conf 0.45
    python -m citypatrol.models.training.report latency  WEIGHTS --imgsz 384 --out DIR
    python -m citypatrol.models.training.report footage  WEIGHTS --imgsz 384
    python -m citypatrol.models.training.report draw     WEIGHTS IMAGE… --imgsz 384 --out DIR

Each prints JSON. Nothing is downloaded (ultralytics runs offline; exports go through
`citypatrol.models.export`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import typer

os.environ.setdefault("YOLO_OFFLINE", "1")

from .dataset import asset_mirror  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True)

VIDEOS = {
    "intersection": "videos/intersection_cctv_640x480_30s.mp4",
    "london": "videos/london_street_hoardings_1080p_3s.mp4",
    "parking_lot": "videos/parking_lot_cctv_timelapse_640x480_8s.mp4",
    "pedestrian": "videos/pedestrian_street_bins_1080p_4s.mp4",
}


def held_out_metrics(weights: Path, data_yaml: Path, imgsz: int, batch: int = 16) -> dict:
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    m = model.val(data=str(data_yaml), imgsz=imgsz, batch=batch, device="cpu", workers=0, plots=False,
                  split="val", verbose=False, project="/tmp/citypatrol-val", name=f"val{imgsz}", exist_ok=True)
    per_class = {}
    for i, c in enumerate(m.box.ap_class_index):
        p, r, ap50, ap = m.box.class_result(i)
        per_class[model.names[int(c)]] = {"precision": round(float(p), 3), "recall": round(float(r), 3),
                                          "mAP50": round(float(ap50), 3), "mAP50-95": round(float(ap), 3)}
    return {"imgsz": imgsz, "all": {"precision": round(float(m.box.mp), 3), "recall": round(float(m.box.mr), 3),
                                    "mAP50": round(float(m.box.map50), 3), "mAP50-95": round(float(m.box.map), 3)},
            "per_class": per_class, "speed_ms": {k: round(v, 1) for k, v in m.speed.items()}}


def _time_predict(model, image: np.ndarray, imgsz: int, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        model.predict(image, imgsz=imgsz, device="cpu", verbose=False)
    pre, inf, post, wall = [], [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        r = model.predict(image, imgsz=imgsz, device="cpu", verbose=False)[0]
        wall.append((time.perf_counter() - t) * 1000)
        pre.append(r.speed["preprocess"])
        inf.append(r.speed["inference"])
        post.append(r.speed["postprocess"])
    med = statistics.median
    return {"forward_ms": round(med(inf), 1), "pre_ms": round(med(pre), 1), "post_ms": round(med(post), 1),
            "end_to_end_ms": round(med(wall), 1), "forward_min_ms": round(min(inf), 1), "runs": runs}


@app.command()
def metrics(weights: Path, data_yaml: Path, imgsz: list[int] = typer.Option([384])) -> None:
    print(json.dumps([held_out_metrics(weights, data_yaml, s) for s in imgsz], indent=1))


@app.command()
def classes(weights: Path, data_yaml: Path, imgsz: int = 384, conf: float = 0.45, goal: float = 0.95) -> None:
    """Per class at IoU 0.5: P/R at `conf`, the lowest threshold with precision ≥ `goal` and the recall
    left there, the P/R curve, and the confusion between classes (what each labelled object was taken for)."""
    from .class_metrics import class_figures, confusion, predictions_on_split

    results = predictions_on_split(weights, data_yaml, imgsz)
    names = sorted({c for r in results for c in r.gt_cls} | {c for r in results for c in r.pred_cls})
    figures = [class_figures(results, c, conf, goal) for c in names]
    print(json.dumps({"weights": str(weights), "imgsz": imgsz, "conf": conf, "precision_goal": goal,
                      "images": len(results), "classes": [f.__dict__ for f in figures],
                      "confusion": confusion(results, names, conf)}, indent=1))


@app.command()
def latency(weights: Path, imgsz: int = 384, out: Path = Path("/tmp/citypatrol-export"), runs: int = 20,
            warmup: int = 5, image: Path | None = None, coco: bool = True) -> None:
    """Median latency over `runs` warm calls, batch 1, of PyTorch, ONNX Runtime and OpenVINO (FP32, static shape)."""
    import cv2
    import torch
    from ultralytics import YOLO

    from citypatrol.models.export import export_weights

    torch.set_num_threads(os.cpu_count() or 2)
    img_path = image or asset_mirror() / "datasets/garbage_bin_overflow_cn/valid/images"
    if img_path.is_dir():
        img_path = sorted(img_path.iterdir())[0]
    img = cv2.imread(str(img_path))
    out.mkdir(parents=True, exist_ok=True)
    backends = {"pytorch": weights}
    for fmt in ("onnx", "openvino"):
        target = out / fmt
        if target.exists():
            found = list(target.glob("*.onnx")) + list(target.glob("*_openvino_model"))
            backends[fmt] = found[0]
        else:
            backends[fmt] = export_weights(weights, fmt, target, imgsz=imgsz, dynamic=False)
    res = {"image": str(img_path), "image_shape": list(img.shape), "imgsz": imgsz}
    for name, path in backends.items():
        torch.set_num_threads(os.cpu_count() or 2)  # exporters may leave torch at 1 thread
        res[name] = _time_predict(YOLO(str(path), task="detect"), img, imgsz, runs, warmup)
        res[name]["torch_threads"] = torch.get_num_threads()
        res[name]["size_bytes"] = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).is_dir() else Path(path).stat().st_size
    if coco:
        coco_ov = asset_mirror() / "models/yolo11n_int8_openvino_model"
        res["coco_openvino_int8_640"] = _time_predict(YOLO(str(coco_ov), task="detect"), img, 640, runs, warmup)
    print(json.dumps(res, indent=1))


def _frames(path: Path, every_s: float):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        nxt = 0.0
        for frame in c.decode(stream):
            if frame.time is not None and frame.time + 1e-6 >= nxt:
                yield frame.time, frame.to_ndarray(format="bgr24")
                nxt += every_s


@app.command()
def footage(weights: Path, imgsz: int = 384, every_s: float = 0.5, conf: float = 0.25) -> None:
    """Per video: frames looked at, frames with each class, highest confidence and a typical box."""
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    report = {}
    for name, rel in VIDEOS.items():
        seen: dict[str, dict] = {}
        n = 0
        for t, img in _frames(asset_mirror() / rel, every_s):
            n += 1
            r = model.predict(img, imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0]
            h, w = img.shape[:2]
            for cls, c, box in zip(r.boxes.cls.tolist(), r.boxes.conf.tolist(), r.boxes.xyxy.tolist()):
                k = model.names[int(cls)]
                s = seen.setdefault(k, {"frames": set(), "max_conf": 0.0, "box_at_max": None, "t_at_max": None})
                s["frames"].add(round(t, 2))
                if c > s["max_conf"]:
                    s.update(max_conf=round(c, 3), t_at_max=round(t, 2),
                             box_at_max=[round(box[0] / w, 2), round(box[1] / h, 2), round(box[2] / w, 2), round(box[3] / h, 2)])
        report[name] = {"frames": n, "classes": {k: {**v, "frames": len(v["frames"])} for k, v in seen.items()}}
    print(json.dumps(report, indent=1))


@app.command()
def draw(weights: Path, images: list[Path], imgsz: int = 384, out: Path = Path("."), width: int = 480,
         conf: float = 0.25, colors: int = 96) -> None:
    """Predictions drawn on images, saved as small palette PNGs (for the model card)."""
    import cv2
    from PIL import Image
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    palette = {0: (255, 160, 0), 1: (0, 0, 255), 2: (0, 140, 255), 3: (200, 0, 200)}
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for p in images:
        if p.suffix == ".mp4":
            img = next(_frames(p, 1.0))[1]
        else:
            img = cv2.imread(str(p))
        r = model.predict(img, imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0]
        scale = width / img.shape[1]
        img = cv2.resize(img, (width, int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        for cls, c, box in zip(r.boxes.cls.tolist(), r.boxes.conf.tolist(), r.boxes.xyxy.tolist()):
            x1, y1, x2, y2 = (int(v * scale) for v in box)
            col = palette.get(int(cls), (0, 255, 0))
            cv2.rectangle(img, (x1, y1), (x2, y2), col, 2)
            cv2.putText(img, f"{model.names[int(cls)]} {c:.2f}", (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, col, 1, cv2.LINE_AA)
        dest = out / (p.stem.split(".rf.")[0].replace("_jpg", "") + "_pred.png")
        Image.fromarray(img[:, :, ::-1]).quantize(colors=colors).save(dest, optimize=True)
        made.append({"file": str(dest), "bytes": dest.stat().st_size,
                     "detections": [(model.names[int(k)], round(c, 2)) for k, c in zip(r.boxes.cls.tolist(), r.boxes.conf.tolist())]})
    print(json.dumps(made, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    app()
