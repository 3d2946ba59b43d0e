"""Shared fixtures: where the real assets are. Area-specific fixtures live in tests/fixtures_*.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("CITYPATROL_ASSET_MIRROR", str((REPO.parent / "shared" / "assets").resolve()))
ASSETS = Path(os.environ["CITYPATROL_ASSET_MIRROR"])

SAMPLE_VIDEOS = {
    "intersection": "videos/intersection_cctv_640x480_30s.mp4",
    "london": "videos/london_street_hoardings_1080p_3s.mp4",
    "parking_lot": "videos/parking_lot_cctv_timelapse_640x480_8s.mp4",
    "pedestrian": "videos/pedestrian_street_bins_1080p_4s.mp4",
}


def pytest_configure(config) -> None:  # noqa: ANN001
    """Redis, PostgreSQL and Mosquitto for this run: the machine's, or private ones (tests/services.py)."""
    from tests import services

    services.start()


def pytest_unconfigure(config) -> None:  # noqa: ANN001
    from tests import services

    services.stop()


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.fail(f"asset mirror not found at {ASSETS}; set CITYPATROL_ASSET_MIRROR")
    return ASSETS


@pytest.fixture(scope="session")
def sample_video(assets: Path):
    def get(name: str) -> Path:
        return assets / SAMPLE_VIDEOS[name]

    return get
