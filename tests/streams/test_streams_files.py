"""Recorded footage through citypatrol.streams: real sample videos, purpose-made GOPs, damaged files,
folders and a real time-lapse stills camera (PKLot UFPR05)."""

from __future__ import annotations

import logging
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from fixtures_streams import h264_clip  # noqa: F401

from citypatrol.streams import SourceError, SourceKind, SourceState, open_source, source_kind

DURATIONS = {"intersection": 30.3, "london": 3.44, "parking_lot": 8.1, "pedestrian": 3.84}
SIZES = {"intersection": (640, 480), "london": (1280, 720), "parking_lot": (640, 480), "pedestrian": (1280, 720)}


def _encode(src: Path, out: Path, *, seconds: float, gop: int, faststart: bool = False) -> Path:
    """Real footage re-encoded to H.264 at 25 fps with a fixed GOP of `gop` frames (and B-frames)."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-t", str(seconds), "-an", "-vf", "scale=320:-2,fps=25",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
           "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2:b-adapt=0"]
    cmd += ["-movflags", "+faststart"] if faststart else []
    subprocess.run(cmd + [str(out)], check=True)
    return out


@pytest.mark.parametrize("name", sorted(DURATIONS))
def test_each_sample_video_at_cadence(name, sample_video):
    cadence = 1.0 if DURATIONS[name] < 10 else 2.0
    with open_source(name, str(sample_video(name)), cadence) as src:
        frames = list(src.frames())
        stats = src.stats
    expected = DURATIONS[name] / cadence
    assert abs(len(frames) - expected) <= 1.5, [f.pts for f in frames]
    pts = [f.pts for f in frames]
    assert pts[0] == pytest.approx(0, abs=0.05)
    assert all(b - a >= cadence * 0.5 for a, b in zip(pts, pts[1:])), pts  # increasing, never bunched
    assert pts[-1] <= DURATIONS[name]
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (SIZES[name][1], SIZES[name][0], 3)
        assert f.camera_id == name and f.wall.tzinfo is not None
    assert stats.frames_analysed == len(frames) and stats.frames_decoded >= len(frames)
    assert stats.state is SourceState.finished and stats.corrupt_packets == 0 and stats.last_error == ""


def test_images_are_bgr_and_scaled_to_max_side(sample_video):
    path = sample_video("pedestrian")
    with open_source("p", str(path), 2.0, max_side=480) as src:
        frame = next(iter(src.frames()))
    assert (frame.width, frame.height) == (480, 270)
    with av.open(str(path)) as c:
        ref = next(c.decode(video=0)).to_ndarray(format="rgb24")
    small_ref = ref[::4, ::4].reshape(-1, 3).mean(axis=0)
    means = frame.image.reshape(-1, 3).mean(axis=0)
    # Channel order is B, G, R: the frame's means match the reference reversed, not as-is.
    assert np.abs(means - small_ref[::-1]).max() < 3
    assert np.abs(means - small_ref).max() > np.abs(means - small_ref[::-1]).max()


def test_wall_time_from_creation_tag_start_wall_or_mtime(sample_video, tmp_path):
    with open_source("i", str(sample_video("intersection")), 2.0) as src:
        frames = list(src.frames())[:3]
    tag = datetime(2020, 7, 27, 16, 57, 40, tzinfo=UTC)  # the clip's creation_time
    assert [f.wall for f in frames] == [tag + timedelta(seconds=f.pts) for f in frames]
    start = datetime(2024, 5, 1, 8, 0, 0)
    with open_source("i", str(sample_video("intersection")), 2.0, start_wall=start) as src:
        f = list(src.frames())[2]
    assert f.wall == start.replace(tzinfo=UTC) + timedelta(seconds=f.pts)
    # No creation_time tag: the file's mtime is taken as the end of the recording.
    london = sample_video("london")
    with open_source("l", str(london), 1.0) as src:
        first = next(iter(src.frames()))
    mtime = datetime.fromtimestamp(london.stat().st_mtime, tz=UTC)
    assert first.wall == pytest.approx(mtime - timedelta(seconds=3.437), abs=timedelta(seconds=0.01))


def test_keyframe_path_and_decode_drop_path(sample_video, tmp_path):
    src_video = sample_video("intersection")
    short = _encode(src_video, tmp_path / "short_gop.mp4", seconds=12, gop=12)  # keyframe every 0.48 s
    long = _encode(src_video, tmp_path / "long_gop.mp4", seconds=12, gop=125)  # keyframe every 5 s
    results = {}
    for path in (short, long):
        with open_source("c", str(path), 1.0) as src:
            frames = list(src.frames())
            results[path.name] = (frames, src.stats)
    kf_frames, kf_stats = results["short_gop.mp4"]
    all_frames, all_stats = results["long_gop.mp4"]
    # Short GOP: only keyframes decoded (25 keyframes in 12 s, not 300 frames), every frame a keyframe.
    assert kf_stats.frames_decoded <= 26 and all(f.keyframe for f in kf_frames)
    # Long GOP: everything decoded and dropped to the cadence, mostly non-keyframes.
    assert all_stats.frames_decoded >= 295 and sum(f.keyframe for f in all_frames) <= 3
    for frames in (kf_frames, all_frames):
        assert 11 <= len(frames) <= 13
        pts = [f.pts for f in frames]
        assert pts == sorted(pts) and pts[0] == pytest.approx(0, abs=0.05)
    # Both paths see the same scene at about the same time.
    a, b = kf_frames[5], min(all_frames, key=lambda f: abs(f.pts - kf_frames[5].pts))
    assert abs(a.pts - b.pts) <= 0.5
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 12


@pytest.mark.parametrize("gop, cadence, mode", [(12, 1.0, "keyframes"), (125, 1.0, "decode_all"), (125, 1.5, "decode_all")])
def test_starting_inside_a_file_seeks_and_gives_the_frames_of_a_whole_pass(sample_video, tmp_path, gop, cadence, mode):
    """A footage segment that starts 20 s in gets what a whole-file read gives from there on,
    frame for frame, without decoding the 20 s before (only from the keyframe before its start)."""
    path = _encode(sample_video("intersection"), tmp_path / f"gop{gop}.mp4", seconds=30, gop=gop)
    with open_source("c", str(path), cadence) as src:
        whole, whole_stats = list(src.frames()), src.stats
    with open_source("c", str(path), cadence, start_s=20.0) as src:
        part, part_stats = list(src.frames()), src.stats
    tail = [f for f in whole if f.pts >= 20.0 - 1e-6]
    assert [round(f.pts, 3) for f in part] == [round(f.pts, 3) for f in tail] and len(tail) >= 6
    for a, b in zip(part, tail):
        assert np.array_equal(a.image, b.image), a.pts
        assert a.wall == b.wall
    decoded_before_start = whole_stats.frames_decoded * 20 / 30
    assert part_stats.frames_decoded < whole_stats.frames_decoded - 0.8 * decoded_before_start, (part_stats, whole_stats)
    assert part_stats.state is SourceState.finished and part_stats.last_error == ""


def test_a_start_inside_is_for_video_files_only(tmp_path):
    with pytest.raises(ValueError, match="video file"):
        open_source("c", "rtsp://127.0.0.1:1/x", 1.0, start_s=5.0)


def test_unreadable_file_raises_a_clear_error(tmp_path, caplog):
    text = tmp_path / "report.mp4"
    text.write_text("minutes of the meeting, not a video\n")
    with pytest.raises(SourceError) as e:
        open_source("cam7", str(text), 1.0)
    msg = str(e.value)
    assert "cam7" in msg and str(text) in msg and "not a video" in msg and "text" in msg
    with pytest.raises(SourceError, match="no such file"):
        open_source("cam7", str(tmp_path / "missing.mp4"), 1.0)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        open_source("cam7", str(empty), 1.0)


def test_truncated_file_yields_what_it_can_then_records_the_error(sample_video, tmp_path):
    whole = _encode(sample_video("intersection"), tmp_path / "whole.mp4", seconds=8, gop=12, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # index first, so it opens
    with open_source("c", str(cut), 1.0) as src:
        frames = list(src.frames())
        stats = src.stats
    assert 2 <= len(frames) <= 6, [f.pts for f in frames]
    assert stats.decode_errors >= 1 and "cut.mp4" in stats.last_error and "truncated" in stats.last_error
    assert stats.state is SourceState.finished  # what could be read was read; not a crash


def test_folder_goes_on_past_bad_files_with_clear_errors(sample_video, tmp_path, caplog):
    folder = tmp_path / "cam_archive"
    folder.mkdir()
    good = _encode(sample_video("pedestrian"), folder / "2_good.mp4", seconds=4, gop=12)
    full = _encode(sample_video("intersection"), tmp_path / "full.mp4", seconds=6, gop=12)  # index at the end
    (folder / "1_truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (folder / "3_notes.mp4").write_text("this is a text file renamed to .mp4\n")
    _encode(sample_video("london"), folder / "4_more.mp4", seconds=3, gop=12)
    assert source_kind(str(folder)) is SourceKind.folder
    caplog.set_level(logging.WARNING, logger="citypatrol.streams")
    with open_source("archive", str(folder), 1.0) as src:
        frames = list(src.frames())
        stats = src.stats
    # Frames from the two good files, stream time continuing across them.
    assert 6 <= len(frames) <= 8
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert pts[-1] > 4.0  # the second good file starts where the first ended
    assert [f.index for f in frames] == list(range(len(frames)))
    assert {f.width for f in frames} == {320}
    assert stats.decode_errors == 2 and stats.state is SourceState.finished
    log = caplog.text
    assert "1_truncated.mp4" in log and "incomplete" in log and "moov" in log
    assert "3_notes.mp4" in log and "not a video" in log
    assert "2_good.mp4" not in log and "4_more.mp4" not in log
    assert good.exists()


def test_folder_of_nothing_readable_fails_clearly(tmp_path):
    folder = tmp_path / "empty_cam"
    folder.mkdir()
    (folder / "readme.txt").write_text("no footage")
    with pytest.raises(SourceError, match="no video or image files"):
        open_source("e", str(folder), 1.0)
    (folder / "bad.mp4").write_text("not video")
    with open_source("e", str(folder), 1.0) as src:
        assert list(src.frames()) == []
        assert src.stats.state is SourceState.failed and "bad.mp4" in src.stats.last_error


@pytest.fixture
def pklot_first10(assets, tmp_path) -> Path:
    day = assets / "sequences/pklot_ufpr05_polo/day_2013-02-24_sunday"
    folder = tmp_path / "ufpr05"
    folder.mkdir()
    for p in sorted(day.glob("*.jpg"))[:10]:
        (folder / p.name).symlink_to(p)
    return folder


def test_stills_sequence_time_from_names(pklot_first10):
    assert source_kind(str(pklot_first10)) is SourceKind.stills
    with open_source("ufpr05", str(pklot_first10), 60.0, max_side=640) as src:
        frames = list(src.frames())
        stats = src.stats
    assert len(frames) == 10
    # One still every 5 minutes; the camera's clock sometimes ticks a second late (07_00_01).
    assert [f.pts for f in frames] == pytest.approx([300.0 * i for i in range(10)], abs=2)
    assert frames[0].wall == datetime(2013, 2, 24, 6, 15, 0, tzinfo=UTC)
    assert frames[-1].wall == datetime(2013, 2, 24, 7, 0, 1, tzinfo=UTC)
    assert frames[-1].pts == 2701.0
    assert all(f.image.shape == (360, 640, 3) for f in frames)
    assert stats.state is SourceState.finished and stats.frames_analysed == 10


def test_stills_sequence_applies_the_cadence(pklot_first10):
    with open_source("ufpr05", str(pklot_first10), 600.0) as src:
        frames = list(src.frames())
    assert [f.pts for f in frames] == pytest.approx([0.0, 600.0, 1200.0, 1800.0, 2400.0], abs=2)
    assert frames[0].image.shape == (720, 1280, 3)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("ext", ["ts", "mkv", "avi"])
def test_other_containers(ext, h264_clip, tmp_path):  # noqa: F811
    clip = h264_clip("intersection")  # 6 s, 0.5 s GOP
    out = tmp_path / f"clip.{ext}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy", str(out)], check=True)
    with open_source("c", str(out), 1.0) as src:
        frames = list(src.frames())
        stats = src.stats
    assert len(frames) == 6 and frames[0].pts == pytest.approx(0, abs=0.05)
    assert [round(b.pts - a.pts) for a, b in zip(frames, frames[1:])] == [1] * 5
    assert stats.frames_decoded <= 13 and stats.last_error == ""  # keyframes only
