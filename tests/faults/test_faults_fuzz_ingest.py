"""Fuzzing the ingest with real file fragments: the first seconds of a real CCTV H.264 mp4 from the
asset mirror (stream-copied, so the camera's own bitstream and an ordinary mp4 layout), truncated,
bit-flipped, overwritten with junk or spliced, then read through `FileSource` as `analyze` does.

Whatever the damage, opening either works or raises `SourceError`, and reading yields frames
(stream time rising, well-formed BGR images) then ends cleanly, with any problem in the source's
stats; nothing else is raised, nothing crashes the process. Hypothesis runs a bounded, derandomised
set of examples so the test stays well under a minute.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citypatrol.streams.open import open_source
from citypatrol.streams.source import SourceError

EXAMPLES = 250


@pytest.fixture(scope="module")
def real_fragments(sample_video, tmp_path_factory) -> dict[str, bytes]:
    """Two layouts of the same real footage: moov at the end (as recorded) and at the front (faststart)."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    folder = tmp_path_factory.mktemp("fuzz")
    out = {}
    for name, flags in (("tail", []), ("faststart", ["-movflags", "+faststart"])):
        path = folder / f"{name}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sample_video("intersection")), "-t", "2.5", "-an",
                        "-c:v", "copy", *flags, str(path)], check=True)
        out[name] = path.read_bytes()
    return out


@st.composite
def damage(draw, size: int) -> list[tuple]:
    """A list of edits to apply to a file of `size` bytes."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "junk", "zero", "splice"]))
        at = draw(st.integers(0, size - 1))
        if kind == "truncate":
            edits.append(("truncate", at))
        elif kind == "flip":
            edits.append(("flip", at, draw(st.integers(0, 7))))
        elif kind in ("junk", "zero"):
            edits.append((kind, at, draw(st.integers(1, 4096)), draw(st.binary(min_size=16, max_size=16))))
        else:
            edits.append(("splice", at, draw(st.integers(0, size - 1)), draw(st.integers(1, 65536))))
    return edits


def apply(data: bytes, edits: list[tuple]) -> bytes:
    buf = bytearray(data)
    for edit in edits:
        if not buf:
            break
        kind, at = edit[0], edit[1] % len(buf)
        if kind == "truncate":
            del buf[at:]
        elif kind == "flip":
            buf[at] ^= 1 << edit[2]
        elif kind == "junk":
            n, seed = edit[2], edit[3]
            junk = np.random.default_rng(list(seed)).integers(0, 256, n, dtype=np.uint8).tobytes()
            buf[at:at + n] = junk[: len(buf) - at]
        elif kind == "zero":
            n = edit[2]
            buf[at:at + n] = bytes(min(n, len(buf) - at))
        else:  # splice: a chunk from elsewhere copied over this place (a torn write)
            src, n = edit[2] % len(buf), edit[3]
            chunk = bytes(buf[src:src + n])
            buf[at:at + len(chunk)] = chunk
    return bytes(buf)


def read_all(path: Path) -> tuple[int, str]:
    """Open and read `path` like the batch runner; returns (frames, last error)."""
    try:
        source = open_source("fuzz", str(path), 0.5)
    except SourceError:
        return -1, "refused at open"
    frames, last = 0, -1.0
    with source:
        try:
            for frame in source.frames():
                assert frame.pts > last, (frame.pts, last)
                last = frame.pts
                img = frame.image
                assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size > 0
                frames += 1
        except SourceError as exc:
            return frames, str(exc)
        return frames, source.stats.last_error


@pytest.mark.timeout(300)
def test_damaged_real_files_give_frames_or_a_source_error_never_a_crash(real_fragments, tmp_path):
    seen: dict[str, int] = {"refused": 0, "partial": 0, "whole": 0}
    whole = {name: read_all(_write(tmp_path / f"{name}.mp4", data))[0] for name, data in real_fragments.items()}
    assert min(whole.values()) >= 4  # the undamaged fragments read whole

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(layout=st.sampled_from(sorted(real_fragments)), data=st.data())
    def run(layout: str, data) -> None:  # noqa: ANN001
        original = real_fragments[layout]
        edits = data.draw(damage(len(original)))
        path = _write(tmp_path / "damaged.mp4", apply(original, edits))
        frames, _ = read_all(path)
        seen["refused" if frames < 0 else "whole" if frames >= whole[layout] else "partial"] += 1

    run()
    assert seen["refused"] and seen["partial"], seen  # the damage reached both the container and the pictures


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
