"""Keyframes split into several slices (as many IP cameras send them): every picture comes out whole.

Over RTSP, and in a camera's MPEG-TS recording, a multi-slice keyframe arrives as one packet per
slice. Decoding only the first slice and draining leaves the rest of the picture undecoded (the
bottom of the image green), so each delivered frame is compared with the same picture decoded
from the file in full.
"""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest
from fixtures_streams import camera_recording, h264_clip, rtsp_server_factory  # noqa: F401

from citypatrol.streams import SourceState, open_source
from citypatrol.streams.access_units import starts_picture, whole_pictures

SLICES = 4
MAX_MAD = 2.0  # a whole picture matches its reference to ~0; an undecoded slice differs by ~100


def _decoded(path: Path) -> np.ndarray:
    """Every picture of an mp4 (one packet per picture), decoded the ordinary way: (n, h, w, 3) BGR."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])


def _mismatch(image: np.ndarray, refs: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference to the closest reference picture: whole image and bottom half."""
    coarse = np.abs(refs[:, ::4, ::4].astype(np.int16) - image[::4, ::4].astype(np.int16)).mean(axis=(1, 2, 3))
    diff = np.abs(refs[int(coarse.argmin())].astype(np.int16) - image.astype(np.int16))
    return float(diff.mean()), float(diff[image.shape[0] // 2 :].mean())


def _assert_whole(frames, refs) -> None:
    bad = []
    for f in frames:
        whole, bottom = _mismatch(f.image, refs)
        if whole > MAX_MAD or bottom > MAX_MAD:
            bad.append(f"pts {f.pts:.2f} (keyframe={f.keyframe}): MAD {whole:.1f}, bottom half {bottom:.1f}")
    assert not bad, f"{len(bad)} of {len(frames)} frames not fully decoded: {bad}"


def _split_keyframes(path: Path) -> int:
    """How many keyframe packets directly follow another keyframe packet (slices of one picture)."""
    with av.open(str(path)) as c:
        keys = [p.is_keyframe for p in c.demux(video=0) if p.size]
    return sum(a and b for a, b in zip(keys, keys[1:]))


def test_live_multi_slice_keyframes_are_decoded_whole(rtsp_server_factory, h264_clip):
    clip = h264_clip("intersection", seconds=4.0, slices=SLICES)
    refs = _decoded(clip)
    server = rtsp_server_factory({"cam": clip})
    frames = []
    with open_source("cam", server.url("cam"), 0.5, reconnect=False, open_timeout_s=10) as src:
        deadline = time.monotonic() + 20
        for frame in src.frames():
            frames.append(frame)
            # The first 4 s decode everything; after that only keyframes, each drained at once.
            if frame.pts > 8.0 or time.monotonic() > deadline:
                lag = (time.monotonic() - src._t_open) - frame.pts
                break
        stats = src.stats
    assert stats.state is SourceState.running and stats.corrupt_packets == 0, stats
    assert len(frames) >= 10, [f.pts for f in frames]
    late = [f for f in frames if f.pts > 5.5]
    assert len(late) >= 4 and all(f.keyframe for f in late), [(f.pts, f.keyframe) for f in frames]
    # Keyframes are not held back by the B-frame reorder buffer: frames keep up with the clock.
    assert lag < 1.5, f"last frame {lag:.2f} s behind the stream"
    _assert_whole(frames, refs)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("cadence", [0.5, 0.2], ids=["keyframes", "decode_all"])
def test_recorded_multi_slice_pictures_are_decoded_whole(codec, cadence, h264_clip, tmp_path):
    clip = h264_clip("intersection", seconds=4.0, slices=SLICES, codec=codec)
    recording = camera_recording(clip, tmp_path / "cam.ts")  # the same pictures, keyframes split per slice
    assert _split_keyframes(recording) >= 6  # the reader really sees a keyframe as several packets
    refs = _decoded(clip)
    with open_source("cam", str(recording), cadence) as src:
        frames = list(src.frames())
        stats = src.stats
    assert len(frames) >= 3.5 / cadence, [f.pts for f in frames]
    _assert_whole(frames, refs)
    if cadence == 0.5:  # 0.5 s GOP: keyframes only, one decoded picture per keyframe
        assert all(f.keyframe for f in frames) and stats.frames_decoded <= len(refs) // 4, stats
    else:  # decode everything: each picture exactly once, none lost or split into several
        assert stats.frames_decoded == len(refs), stats
        assert not all(f.keyframe for f in frames)
    assert stats.state is SourceState.finished and stats.corrupt_packets == 0 and stats.last_error == "", stats


def _packet(data: bytes, pts: int | None, key: bool) -> av.Packet:
    p = av.Packet(data)
    p.pts, p.is_keyframe = pts, key
    return p


def test_slice_packets_are_regrouped_by_picture():
    sc = b"\0\0\0\1"
    sps, pps = sc + b"\x67\x4d\x40\x0d", sc + b"\x68\xee\x3c\x80"
    idr_first, idr_more = sc + b"\x65\x88\x84", sc + b"\x65\x40\x21"  # first_mb_in_slice 0 / not 0
    p_first, p_more = sc + b"\x41\x9a\x02", sc + b"\x41\x42\x01"
    stream = [
        _packet(idr_more, 0, True),  # joined mid-picture: no start seen, dropped
        _packet(sps + pps, None, False),  # parameter sets alone go with the picture after them
        _packet(idr_first, 3600, True),
        _packet(sps + pps + idr_more, None, True),
        _packet(idr_more + sc + b"\x09\xf0" + p_first + p_more, 3600, True),  # tail + the next picture
        _packet(p_first, 10800, False),
        _packet(b"", None, False),
    ]
    cc = av.CodecContext.create("h264", "r")
    out = [(bytes(p), p.pts, p.is_keyframe) for p in whole_pictures(stream, cc)]
    assert out == [
        (sps + pps + idr_first + sps + pps + idr_more + idr_more, 3600, True),
        (sc + b"\x09\xf0" + p_first + p_more, None, False),
        (p_first, 10800, False),
        (b"", None, False),
    ]
    assert starts_picture(idr_first, "h264") and starts_picture(idr_more, "h264") is False
    assert starts_picture(sps, "h264") is None
    mpeg4 = [_packet(b"\0\0\1\xb6\x10", 0, True), _packet(b"\0\0\1\xb6\x50", 1, False)]
    assert list(whole_pictures(mpeg4, av.CodecContext.create("mpeg4", "r"))) == mpeg4  # other codecs untouched
