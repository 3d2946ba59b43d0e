"""Pure decisions of citypatrol.streams, as tables: sampling mode, cadence, sizes, backoff, redaction, names."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from citypatrol.streams.backoff import Backoff
from citypatrol.streams.media import iter_media_files
from citypatrol.streams.open import SourceKind, source_kind
from citypatrol.streams.redact import redact_text, redact_url
from citypatrol.streams.sampling import CadenceGate, SamplingMode, choose_sampling, fit_size
from citypatrol.streams.source import SourceError
from citypatrol.streams.stills import parse_sequence_number, parse_still_time, stills_timeline

K, D = SamplingMode.keyframes, SamplingMode.decode_all


@pytest.mark.parametrize(
    "keyframes, until, cadence, expected",
    [
        ([0, 0.5, 1.0, 1.5, 2.0], 2.2, 1.0, K),  # GOP 0.5 s under a 1 s cadence
        ([0, 2.002, 4.004], 4.5, 2.0, K),  # 2 s GOP at 29.97 fps fits a 2 s cadence
        ([0, 2.0, 4.0], 4.5, 1.0, D),  # GOP longer than the cadence
        ([0], 3.4, 1.0, D),  # one keyframe in 3.4 s: long GOP
        ([0, 0.5], 6.0, 1.0, D),  # early keyframes then none for 5.5 s
        ([], 5.0, 1.0, D),  # no keyframe seen at all
        ([0, 4.27, 8.53, 12.8], 13.0, 2.0, D),  # the intersection clip at cadence 2 s
        ([0, 4.27, 8.53, 12.8], 13.0, 5.0, K),  # … and at cadence 5 s
        ([0, 0.6, 1.2, 1.8], 2.0, 1.0, K),  # mpeg4 parking clip
    ],
)
def test_choose_sampling(keyframes, until, cadence, expected):
    assert choose_sampling(keyframes, until, cadence) is expected


@pytest.mark.parametrize(
    "cadence, pts, taken",
    [
        (1.0, [0, 0.5, 0.99, 1.0, 1.5, 2.01, 2.5], [0, 1.0, 2.01]),
        (1.0, [0, 0.6, 1.2, 1.8, 2.4, 3.0, 3.6, 4.2], [0, 1.2, 2.4, 3.0, 4.2]),  # grid, no drift
        (2.0, [5.0, 6.0, 7.0, 30.0, 31.0, 32.0], [5.0, 7.0, 30.0, 32.0]),  # a jump restarts the grid
        (1.0, [0, 0.999999999, 2.0], [0, 0.999999999, 2.0]),  # float noise at the boundary
        (0.5, [i / 30 for i in range(31)], [0, 15 / 30, 30 / 30]),
    ],
)
def test_cadence_gate(cadence, pts, taken):
    gate = CadenceGate(cadence)
    assert [p for p in pts if gate.take(p)] == taken


def test_cadence_gate_rejects_nonpositive():
    with pytest.raises(ValueError):
        CadenceGate(0)


@pytest.mark.parametrize(
    "w, h, max_side, out",
    [
        (1920, 1080, 1280, (1280, 720)),
        (1080, 1920, 1280, (720, 1280)),
        (640, 480, 1280, (640, 480)),  # never upscaled
        (1920, 1080, None, (1920, 1080)),
        (1280, 720, 1280, (1280, 720)),
        (4000, 3, 100, (100, 1)),
    ],
)
def test_fit_size(w, h, max_side, out):
    assert fit_size(w, h, max_side) == out


def test_backoff_grows_to_cap_with_jitter():
    assert [Backoff(1, 8, 0.25, rand=lambda: 0.5).delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert [Backoff(1, 8, 0.25, rand=lambda: 0.0).delay(n) for n in range(1, 6)] == [0.75, 1.5, 3, 6, 6]
    rng = random.Random(7)
    delays = [Backoff(0.5, 30, rand=rng.random).delay(4) for _ in range(50)]
    assert all(3.0 <= d <= 5.0 for d in delays) and len(set(delays)) > 40  # spread, never zero
    assert Backoff(0.5, 30).delay(10_000) <= 30 * 1.25
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(0, 30)


@pytest.mark.parametrize(
    "url, redacted",
    [
        ("rtsp://admin:S3cret!@10.0.0.5:554/Streaming/Channels/101", "rtsp://***@10.0.0.5:554/Streaming/Channels/101"),
        ("rtsp://admin:p@ss@cam.local/live", "rtsp://***@cam.local/live"),  # '@' inside the password
        ("rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=hunter2", "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=***"),
        ("https://gw.example/live/1.flv?token=abc123&x=1", "https://gw.example/live/1.flv?token=***&x=1"),
        ("rtsp://10.0.0.5:554/ch1", "rtsp://10.0.0.5:554/ch1"),
        ("/data/footage/cam1.mp4", "/data/footage/cam1.mp4"),
    ],
)
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted


def test_redact_text_masks_urls_and_known_secrets():
    url = "rtsp://admin:hunter%402@10.0.0.5/ch1"
    text = f"Server returned 401 Unauthorized: '{url}' (password hunter@2 rejected)"
    out = redact_text(text, url)
    assert "hunter" not in out and "admin" not in out
    assert "rtsp://***@10.0.0.5/ch1" in out and "401 Unauthorized" in out


def test_source_error_never_carries_the_password():
    url = "rtsp://admin:hunter2@10.0.0.5/ch1"
    err = SourceError("cam1", url, f"failed on '{url}'")
    assert "hunter2" not in str(err) and "hunter2" not in repr(err) and "hunter2" not in err.source
    assert str(err).startswith("camera cam1: rtsp://***@10.0.0.5/ch1: ")


@pytest.mark.parametrize(
    "name, when",
    [
        ("2013-02-24_06_15_04_jpg.rf.f8067041e4f5b1ee12582def09fe9568.jpg", datetime(2013, 2, 24, 6, 15, 4)),
        ("cam3_20240105T221530.jpg", datetime(2024, 1, 5, 22, 15, 30)),
        ("2024-01-05 22-15-30.png", datetime(2024, 1, 5, 22, 15, 30)),
        ("frame_000123.jpg", None),
        ("2013-13-40_06_15_04.jpg", None),  # not a date
    ],
)
def test_parse_still_time(name, when):
    assert parse_still_time(name) == when


@pytest.mark.parametrize("name, n", [("frame_000123.jpg", 123), ("img7.png", 7), ("a1_b22.jpg", 22), ("still.jpg", None)])
def test_parse_sequence_number(name, n):
    assert parse_sequence_number(name) == n


def test_stills_timeline_from_times_numbers_or_nothing():
    stamped = [Path("2013-02-24_06_25_00.jpg"), Path("2013-02-24_06_15_00.jpg"), Path("2013-02-24_06_20_00.jpg")]
    tl = stills_timeline(stamped, 60)
    assert [s.path.name[:19] for s in tl] == ["2013-02-24_06_15_00", "2013-02-24_06_20_00", "2013-02-24_06_25_00"]
    assert [s.pts for s in tl] == [0, 300, 600]
    numbered = [Path("f10.jpg"), Path("f2.jpg"), Path("f1.jpg")]
    assert [(s.path.name, s.pts) for s in stills_timeline(numbered, 5)] == [("f1.jpg", 0), ("f2.jpg", 5), ("f10.jpg", 45)]
    assert stills_timeline([Path("a.jpg"), Path("b.jpg")], 5) is None


def test_source_kind_and_media_listing(tmp_path):
    stills = tmp_path / "stills"
    stills.mkdir()
    for name in ("2013-02-24_06_15_00.jpg", "2013-02-24_06_20_00.jpg"):
        (stills / name).write_bytes(b"")
    videos = tmp_path / "videos"
    (videos / "b").mkdir(parents=True)
    for name in ("clip10.mp4", "clip2.mp4", "notes.txt", ".hidden.mp4", "b/clip1.mkv"):
        (videos / name).write_bytes(b"")
    assert source_kind("rtsp://u:p@h/x") is SourceKind.live
    assert source_kind("HTTPS://h/x.flv") is SourceKind.live
    assert source_kind(str(stills)) is SourceKind.stills
    assert source_kind(str(videos)) is SourceKind.folder
    assert source_kind(str(tmp_path / "x.mp4")) is SourceKind.file
    single = videos / "clip2.mp4"
    got = list(iter_media_files([videos, single, stills / "2013-02-24_06_15_00.jpg"]))
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "videos/b/clip1.mkv",
        "videos/clip2.mp4",
        "videos/clip10.mp4",
        "stills/2013-02-24_06_15_00.jpg",
    ]
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        list(iter_media_files([tmp_path / "nowhere.mp4"]))
