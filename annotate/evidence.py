"""Evidence for a case: the annotated full frame, a crop around the problem, a short H.264 clip.

A reviewer in the supervision center decides from these in seconds, so the annotated frame
shows everything needed at a glance: the zone (semi-transparent), the box in the category's
colour, '机动车乱停放 illegal parking 0.82' above it, and a banner with the camera name and the
local time. Rendering takes plain inputs (a BGR image, a normalised box, normalised polygons,
strings, datetimes) and never touches the store; the runner calls it after a case opens, off
the detection path. Every writer returns an `EvidenceFile` with the sha256 the store keeps.

Files are written to a temporary name and renamed into place, so a crash never leaves a
half-written file behind a recorded sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import supervision as sv
from PIL import Image, ImageDraw, ImageFont

from citypatrol.annotate.fonts import cjk_font_path
from citypatrol.annotate.labels import category_label, label_text
from citypatrol.pipeline.config.models import Category
from citypatrol.annotate.files import write_atomic
from citypatrol.models.assets import sha256_file

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # normalised x1, y1, x2, y2
Polygon = Sequence[Sequence[float]]  # normalised [x, y] vertices

ZONE_COLOR = sv.Color.from_hex("#ffd600")  # zones in amber: visible on asphalt and pavement
ZONE_OPACITY = 0.25


class EvidenceError(RuntimeError):
    """Evidence could not be produced (unreadable video, empty span); the message says which."""


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    kind: str  # "image" | "crop" | "clip"
    path: Path
    sha256: str
    bytes: int


# ---------------------------------------------------------------------------------------------
# images


def render_annotated(
    image: np.ndarray,
    box: Box,
    category: Category | str,
    score: float,
    *,
    camera_name: str = "",
    local_time: datetime | None = None,
    polygons: Sequence[Polygon] = (),
    zone_names: Sequence[str] = (),
    detail: str = "",
    title: str = "",
) -> np.ndarray:
    """A copy of `image` (BGR) with zones, the case box, its label and a camera/time banner.
    `title`: the city's name of a configured category (its code name), for its label."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image (h, w, 3), got shape {image.shape}")
    h, w = image.shape[:2]
    out = image.copy()
    lab = category_label(category, title)
    box_color = sv.Color(*lab.rgb)
    thickness = max(2, round(min(h, w) / 270))  # 4 px at 1080p, 2 px at 480p

    pts_list = [_to_pixels(p, w, h) for p in polygons]
    for pts in pts_list:
        out = sv.draw_filled_polygon(out, pts, ZONE_COLOR, opacity=ZONE_OPACITY)
        out = sv.draw_polygon(out, pts, ZONE_COLOR, thickness=max(2, thickness // 2))
    x1, y1, x2, y2 = _box_pixels(box, w, h)
    out = sv.draw_rectangle(out, sv.Rect(x1, y1, x2 - x1, y2 - y1), box_color, thickness=thickness)

    font_path = cjk_font_path()
    size = max(14, round(h / 32))  # 34 px at 1080p: readable on a review screen and in a thumbnail
    canvas = Image.fromarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(canvas, "RGBA")
    font = _font(font_path, size)
    small = _font(font_path, max(12, round(size * 0.8)))
    cjk = font_path is not None

    # The banner (drawn last, on top) takes the top-left corner: the case label keeps out from under it.
    banner = [line for line in (_ascii(s, cjk) for s in ("  ".join(s for s in (camera_name, _format_time(local_time)) if s), detail)) if line]
    step = 2 * max(4, size // 5)  # between banner lines
    banner_sizes = [_text_size(draw, line, small) for line in banner]
    banner_w = max((tw + 2 * max(4, th // 5) for tw, th in banner_sizes), default=0)
    banner_h = sum(th + step for _, th in banner_sizes[:-1]) + (banner_sizes[-1][1] + 2 * max(4, banner_sizes[-1][1] // 5) if banner else 0)

    # Zone names at the zone's lowest corner (nearest the camera, seldom where the case is).
    for pts, name in zip(pts_list, zone_names):
        if name:
            zx, zy = (int(v) for v in pts[int(np.argmax(pts[:, 1]))])
            zh = _text_size(draw, name, small)[1] + 2 * max(4, size // 5)
            _text_box(draw, (zx, zy - zh), _ascii(name, cjk), small, fill=(0, 0, 0), bg=(*ZONE_COLOR.as_rgb(), 220), limit=(w, h))

    # Label above the box; below it when the banner or the frame's top edge is in the way.
    text = label_text(category, score, cjk=cjk, title=title)
    th, pad = _text_size(draw, text, font)[1], max(4, size // 5)
    ly = y1 - th - 2 * pad
    if ly < 0 or (ly < banner_h and x1 < banner_w):
        ly = y2 + thickness if y2 + thickness + th + 2 * pad <= h else y1 + thickness
    _text_box(draw, (x1, ly), text, font, fill=(255, 255, 255), bg=(*lab.rgb, 235), limit=(w, h))

    # Banner: where and when, top-left, like the OSD a reviewer knows from the camera itself.
    by = 0
    for line, (_, th) in zip(banner, banner_sizes):
        _text_box(draw, (0, by), line, small, fill=(255, 255, 255), bg=(0, 0, 0, 170), limit=(w, h))
        by += th + step
    return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)


def crop_box(image: np.ndarray, box: Box, margin: float = 0.25, min_side: int = 64) -> np.ndarray:
    """The region around `box`, grown by `margin` × its width/height on each side, clamped to the
    frame; at least `min_side` pixels each way (where the frame allows) so a far-away bin is
    still visible."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = crop_bounds(box, w, h, margin, min_side)
    return image[y1:y2, x1:x2].copy()


def crop_bounds(box: Box, width: int, height: int, margin: float = 0.25, min_side: int = 64) -> tuple[int, int, int, int]:
    """Pixel bounds (x1, y1, x2, y2) of `crop_box`, for callers that need the geometry."""
    bx1, by1, bx2, by2 = _box_pixels(box, width, height)
    mx, my = (bx2 - bx1) * margin, (by2 - by1) * margin
    x1, x2 = _grow(bx1 - mx, bx2 + mx, min_side, width)
    y1, y2 = _grow(by1 - my, by2 + my, min_side, height)
    return x1, y1, x2, y2


def write_image(image: np.ndarray, out: str | Path, kind: str = "image", quality: int = 90) -> EvidenceFile:
    """Encode a BGR image as JPEG (or PNG when `out` ends in .png) and return its record."""
    out = Path(out)
    ext = out.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise EvidenceError(f"could not encode {out.name} as {ext}")
    return write_evidence_bytes(buf.tobytes(), out, kind)


def write_evidence_bytes(data: bytes, out: str | Path, kind: str) -> EvidenceFile:
    """Write an encoded evidence file atomically and return its record (sha256, size)."""
    out = Path(out)
    write_atomic(out, data)
    return EvidenceFile(kind, out, hashlib.sha256(data).hexdigest(), len(data))


def write_case_images(
    out_dir: str | Path,
    stem: str,
    image: np.ndarray,
    box: Box,
    category: Category | str,
    score: float,
    **annotate_kwargs,
) -> tuple[EvidenceFile, EvidenceFile]:
    """The runner's one call per case: `<stem>.jpg` (annotated frame) and `<stem>_crop.jpg`.

    The crop is cut from the clean frame: the reviewer and the second-stage classifier should
    see the object, not our drawing over it.
    """
    out_dir = Path(out_dir)
    annotated = render_annotated(image, box, category, score, **annotate_kwargs)
    return (
        write_image(annotated, out_dir / f"{stem}.jpg", "image"),
        write_image(crop_box(image, box), out_dir / f"{stem}_crop.jpg", "crop"),
    )


# ---------------------------------------------------------------------------------------------
# clips


def write_clip_from_file(
    video_path: str | Path, start_s: float, end_s: float, out: str | Path, max_side: int = 960
) -> EvidenceFile:
    """Re-decode [start_s, end_s) of a recorded file into an H.264 MP4 clip.

    Seeks to the keyframe at or before `start_s`, decodes forward and keeps the frames inside the
    span, with their original spacing. Times are seconds from the start of the file.
    """
    video_path = Path(video_path)
    if end_s <= start_s:
        raise ValueError(f"clip span is empty: start {start_s} s, end {end_s} s")
    try:
        src = av.open(str(video_path))
    except (av.FFmpegError, OSError) as exc:
        raise EvidenceError(f"cannot open {video_path} for the evidence clip: {exc}") from exc
    with src:
        if not src.streams.video:
            raise EvidenceError(f"{video_path} has no video stream")
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        origin = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        try:
            if start_s > 0:
                src.seek(int((origin + start_s) / tb), stream=stream, backward=True, any_frame=False)
            frames = _decode_span(src, stream, origin + start_s, origin + end_s)
            return _encode(frames, rate, Path(out), max_side, (stream.width, stream.height), origin + start_s)
        except av.FFmpegError as exc:
            raise EvidenceError(f"cannot decode {video_path} between {start_s} and {end_s} s: {exc}") from exc


def write_clip_from_frames(
    frames: Sequence[np.ndarray], fps: float, out: str | Path, max_side: int = 960
) -> EvidenceFile:
    """Encode BGR frames (a live camera's ring buffer) into an H.264 MP4 clip at `fps`."""
    if not frames:
        raise ValueError("no frames for the clip")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    h, w = frames[0].shape[:2]
    timed = ((i / float(rate), av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")) for i, f in enumerate(frames))
    return _encode(timed, rate, Path(out), max_side, (w, h), 0.0)


def clip_bytes_from_frames(frames: Sequence[np.ndarray], fps: float, max_side: int = 960) -> bytes:
    """`write_clip_from_frames`, as the bytes of the MP4 (to send to another machine)."""
    with tempfile.TemporaryDirectory(prefix="citypatrol-clip-") as tmp:
        return write_clip_from_frames(frames, fps, Path(tmp) / "clip.mp4", max_side).path.read_bytes()


def clip_bytes_from_file(video_path: str | Path, start_s: float, end_s: float, max_side: int = 960) -> bytes:
    """`write_clip_from_file`, as the bytes of the MP4 (to send to another machine)."""
    with tempfile.TemporaryDirectory(prefix="citypatrol-clip-") as tmp:
        return write_clip_from_file(video_path, start_s, end_s, Path(tmp) / "clip.mp4", max_side).path.read_bytes()


def _decode_span(src, stream, start: float, end: float):
    """Yield (seconds, frame) for decoded frames with start <= t < end."""
    eps = 1e-3
    for frame in src.decode(stream):
        if frame.pts is None:
            continue
        t = float(frame.pts * stream.time_base)
        if t < start - eps:
            continue
        if t >= end - eps:
            break
        yield t, frame


def _encode(timed_frames, rate: Fraction, out: Path, max_side: int, size: tuple[int, int], t0: float) -> EvidenceFile:
    width, height = _even_size(*size, max_side)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    n = 0
    try:
        # faststart puts the index (moov) first, so a browser plays the clip before it has all of it.
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
            vs = dst.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.options = {"preset": "veryfast", "crf": "26", "profile": "high"}
            last = -1
            for t, frame in timed_frames:
                vf = frame.reformat(width=width, height=height, format="yuv420p")
                # Keep the source's spacing (gaps stay gaps) but never repeat a timestamp.
                pts = max(last + 1, round((t - t0) * rate))
                vf.pts, vf.time_base, last = pts, Fraction(1) / rate, pts
                dst.mux(vs.encode(vf))
                n += 1
            dst.mux(vs.encode(None))
        if n == 0:
            raise EvidenceError(f"no frames in the clip span for {out.name}")
        digest, size_b = sha256_file(tmp), tmp.stat().st_size
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return EvidenceFile("clip", out, digest, size_b)


# ---------------------------------------------------------------------------------------------
# helpers


def _to_pixels(polygon: Polygon, w: int, h: int) -> np.ndarray:
    pts = np.asarray(polygon, dtype=float).reshape(-1, 2)
    return np.round(pts * [w - 1, h - 1]).astype(np.int64)


def _box_pixels(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in box)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box {box} is not x1, y1, x2, y2 with x1 <= x2 and y1 <= y2")
    return round(x1 * w), round(y1 * h), max(round(x2 * w), round(x1 * w) + 1), max(round(y2 * h), round(y1 * h) + 1)


def _grow(lo: float, hi: float, min_side: int, limit: int) -> tuple[int, int]:
    if hi - lo < min_side:
        c = (lo + hi) / 2
        lo, hi = c - min_side / 2, c + min_side / 2
    lo, hi = max(0, round(lo)), min(limit, round(hi))
    return lo, max(hi, lo + 1)


def _even_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(w, h))
    return max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)


def _font(path: Path | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size, index=0)
        except OSError as exc:
            log.warning("cannot load font %s (%s); using the default font", path, exc)
    return ImageFont.load_default(size)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    return r - l, b - min(t, 0)


def _text_box(draw, xy, text, font, *, fill, bg, limit) -> None:
    """Text on a filled box at xy, shifted left/up to stay inside the frame."""
    tw, th = _text_size(draw, text, font)
    pad = max(4, th // 5)
    x = min(max(0, xy[0]), max(0, limit[0] - tw - 2 * pad))
    y = min(max(0, xy[1]), max(0, limit[1] - th - 2 * pad))
    draw.rectangle((x, y, x + tw + 2 * pad, y + th + 2 * pad), fill=bg)
    draw.text((x + pad, y + pad), text, font=font, fill=fill)


def _format_time(t: datetime | None) -> str:
    if t is None:
        return ""
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f" {t.strftime('%z')[:3]}:{t.strftime('%z')[3:]}" if t.utcoffset() is not None else "")


def _ascii(text: str, cjk: bool) -> str:
    """Without a CJK font, drop characters the default font would draw as boxes."""
    if cjk:
        return text
    return " ".join("".join(c for c in text if ord(c) < 128).split())
