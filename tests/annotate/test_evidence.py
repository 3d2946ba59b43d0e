"""Evidence for a case on a real frame of the London street footage: annotated image, crop, clips."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import numpy as np
import pytest

from citypatrol.annotate import fonts
from citypatrol.annotate.evidence import (
    EvidenceError,
    crop_box,
    render_annotated,
    write_case_images,
    write_clip_from_file,
    write_clip_from_frames,
    write_image,
)
from citypatrol.annotate.labels import LABELS, category_label, label_text
from citypatrol.pipeline.config.models import Category

# The blue hoarding on the right of the London frame, and a no-parking zone on the road.
BOX = (0.72, 0.33, 0.98, 0.60)
ZONE = [(0.25, 0.45), (0.70, 0.45), (0.75, 0.90), (0.20, 0.90)]
CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def london(sample_video) -> Path:
    return sample_video("london")


@pytest.fixture(scope="module")
def frame(london: Path) -> np.ndarray:
    with av.open(str(london)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == 15:
                return f.to_ndarray(format="bgr24")
    raise AssertionError("london clip has fewer than 16 frames")


def _annotate(frame, **kw):
    return render_annotated(
        frame, BOX, Category.billboard, 0.82,
        camera_name="西单北大街 东侧", local_time=datetime(2026, 11, 25, 18, 26, 42, tzinfo=CST),
        polygons=[ZONE], zone_names=["东门禁停区"], **kw,
    )


def _probe(path: Path) -> tuple[str, str, int, int, float, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        last = float(frames[-1].pts * s.time_base)
        fps = float(s.average_rate)
        return s.codec_context.name, frames[0].format.name, s.width, s.height, last + 1 / fps, len(frames)


def test_labels_cover_every_category():
    assert set(LABELS) == set(Category)
    assert label_text(Category.illegal_parking, 0.823) == "机动车乱停放 illegal parking 0.82"
    assert label_text("street_vending", cjk=False) == "street vending"
    assert category_label("something_new").en == "something new"


def test_cjk_font_is_found():
    path = fonts.cjk_font_path()
    assert path is not None and path.is_file(), "install fonts-wqy-microhei (make system-deps)"


def test_annotated_frame_draws_box_zone_and_label(frame):
    out = _annotate(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, frame)
    h, w = frame.shape[:2]
    b, g, r = category_label(Category.billboard).bgr
    # Left and bottom edges of the box are in the billboard colour (the label sits on the top edge).
    x1, y2 = round(BOX[0] * w), round(BOX[3] * h)
    ymid = round((BOX[1] + BOX[3]) / 2 * h)
    assert np.array_equal(out[ymid, x1 + 1], [b, g, r])
    assert np.array_equal(out[y2 - 1, round((BOX[0] + BOX[2]) / 2 * w)], [b, g, r])
    # The zone is tinted: inside it the picture changed, well outside zone and box it did not.
    zy0, zy1 = round(0.6 * h), round(0.8 * h)
    zx0, zx1 = round(0.35 * w), round(0.6 * w)
    inside = np.abs(out[zy0:zy1, zx0:zx1].astype(int) - frame[zy0:zy1, zx0:zx1]).mean()
    assert inside > 10
    assert np.array_equal(out[h - 20 :, :100], frame[h - 20 :, :100])
    # The label above the box is drawn on a box of the category colour.
    label_band = out[round(BOX[1] * h) - 20, x1 + 2 : x1 + 200]
    assert (np.abs(label_band.astype(int) - [b, g, r]).sum(axis=1) < 60).mean() > 0.5


def test_annotated_frame_without_cjk_font_falls_back_to_english(frame, monkeypatch):
    with_cjk = _annotate(frame)
    monkeypatch.setenv(fonts.ENV_VAR, "")
    fonts.cjk_font_path.cache_clear()
    try:
        assert fonts.cjk_font_path() is None
        plain = _annotate(frame)
    finally:
        fonts.cjk_font_path.cache_clear()
    assert plain.shape == frame.shape
    assert not np.array_equal(plain, with_cjk)  # a different (English-only) label was drawn


def test_crop_has_box_plus_margin(frame):
    h, w = frame.shape[:2]
    box = (0.40, 0.40, 0.50, 0.60)  # 192 x 216 px at 1080p
    crop = crop_box(frame, box, margin=0.25)
    assert crop.shape == (round(216 * 1.5), round(192 * 1.5), 3)
    x1 = round(0.40 * w - 0.25 * 192)
    y1 = round(0.40 * h - 0.25 * 216)
    assert np.array_equal(crop[0, 0], frame[y1, x1])
    # Clamped at the frame edge; a tiny box still gives a usable crop.
    assert crop_box(frame, (0.95, 0.9, 1.0, 1.0)).shape[:2] == (h - round(0.9 * h - 0.25 * 108), w - round(0.95 * w - 0.25 * 96))
    assert min(crop_box(frame, (0.5, 0.5, 0.501, 0.501)).shape[:2]) >= 64


def test_case_images_written_with_sha256(frame, tmp_path):
    image, crop = write_case_images(
        tmp_path / "ev", "C1", frame, BOX, Category.billboard, 0.82,
        camera_name="cam", local_time=datetime(2026, 11, 25, 18, 0, tzinfo=CST), polygons=[ZONE],
    )
    assert (image.kind, crop.kind) == ("image", "crop")
    for ev in (image, crop):
        data = ev.path.read_bytes()
        assert ev.sha256 == hashlib.sha256(data).hexdigest() and ev.bytes == len(data)
        assert data[:2] == b"\xff\xd8"  # JPEG
    assert not list((tmp_path / "ev").glob(".*part"))
    png = write_image(frame[:10, :10], tmp_path / "x.png", "before")
    assert png.path.read_bytes()[:4] == b"\x89PNG" and png.kind == "before"


def test_clip_from_file_is_h264_of_the_span(london, tmp_path):
    ev = write_clip_from_file(london, 0.5, 2.5, tmp_path / "clip.mp4", max_side=640)
    assert ev.kind == "clip" and ev.sha256 == hashlib.sha256(ev.path.read_bytes()).hexdigest()
    assert ev.bytes == ev.path.stat().st_size
    codec, pix, w, h, duration, n = _probe(ev.path)
    assert codec == "h264" and pix == "yuv420p"
    assert (w, h) == (640, 360) and w % 2 == 0 and h % 2 == 0
    assert duration == pytest.approx(2.0, abs=0.1)
    assert n == pytest.approx(60, abs=2)
    head = ev.path.read_bytes()[:4096]
    assert b"moov" in head, "index must come first (faststart) so browsers play while loading"


def test_clip_from_file_errors_are_clear(london, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_clip_from_file(london, 2.0, 1.0, tmp_path / "x.mp4")
    with pytest.raises(EvidenceError, match="no frames"):
        write_clip_from_file(london, 10.0, 12.0, tmp_path / "x.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(EvidenceError, match="bad.mp4"):
        write_clip_from_file(bad, 0, 1, tmp_path / "y.mp4")
    assert not list(tmp_path.glob(".*.part")), "a failed clip leaves no partial file"
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()


def test_clip_from_frames(frame, tmp_path):
    # Odd sizes and a frame larger than max_side: scaled down to even dimensions.
    frames = [np.ascontiguousarray(frame[:1001, :1601]) for _ in range(10)]
    frames = [np.roll(f, i * 8, axis=1) for i, f in enumerate(frames)]
    ev = write_clip_from_frames(frames, 5.0, tmp_path / "live.mp4", max_side=800)
    codec, pix, w, h, duration, n = _probe(ev.path)
    assert codec == "h264" and pix == "yuv420p"
    assert (w, h) == (800, 500)
    assert n == 10 and duration == pytest.approx(2.0, abs=0.05)
    assert ev.sha256 == hashlib.sha256(ev.path.read_bytes()).hexdigest()
    with pytest.raises(ValueError):
        write_clip_from_frames([], 5.0, tmp_path / "none.mp4")
