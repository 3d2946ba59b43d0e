"""Fixtures shared by the fault and abuse suite (tests/faults/): the default detector, loaded once,
and a minute of real parked-car footage that opens cases quickly. What each test covers, and the
faults covered elsewhere, are listed in tests/faults/README.md."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.pipeline.config.models import Config

from footage import PARKING, frame_at


@pytest.fixture(scope="session")
def detector():
    return load_detectors(Config().models)


@pytest.fixture(scope="session")
def parked_video(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of a real car-park frame with three cars parked in the bays (H.264, 5 fps, 1 s GOP)."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (make system-deps)")
    folder = tmp_path_factory.mktemp("fault_footage")
    still = folder / "parked.png"
    cv2.imwrite(str(still), frame_at(assets / PARKING, 4.0))
    out = folder / "parked_60s.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "5", "-i", str(still), "-t", "60", "-c:v", "libx264",
         "-preset", "veryfast", "-x264-params", "keyint=5:min-keyint=5:scenecut=0", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )  # fmt: skip
    return out
