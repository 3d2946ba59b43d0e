"""The evidence disk full: the case is still stored, the error is logged naming the case, no
half-written file is left behind, and evidence is written again once there is room.

The evidence folder is a 512 KiB tmpfs (mounted for the test; root only, else skipped), filled
to a few KiB by a filler file, while the case recorder (what the batch and live runners persist
through) records cases on a real car-park frame: the annotated frame and crop do not fit. The
filler is then removed and the next case gets its evidence.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest

from citypatrol.models.detections import Detections
from citypatrol.pipeline.analyzer import FrameResult
from citypatrol.pipeline.cases.builder import CaseBuilder
from citypatrol.pipeline.config.models import Camera, Category, Config
from citypatrol.pipeline.sinks.recorder import CaseRecorder, ClipSource
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.types import Event
from citypatrol.streams.frame import Frame

from footage import PARKED_CARS, PARKING, frame_at

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    mount = tmp_path / "evidence"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free."""
    st = os.statvfs(mount)
    filler = mount / "filler.bin"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_full_evidence_disk_keeps_the_case_and_leaves_no_partial_file(tiny_disk, tmp_path, assets, caplog):
    caplog.set_level(logging.INFO, logger="citypatrol.recorder")
    image = frame_at(assets / PARKING, 4.0)
    store = open_store(f"sqlite:///{tmp_path / 'cases.db'}")  # the database lives elsewhere: only evidence is full
    config = Config(cameras=[Camera(id="lot", source="lot.mp4")])
    recorder = CaseRecorder(store, config, tiny_disk, config.cameras)
    builder = CaseBuilder(config.cases)
    filler = _fill(tiny_disk, leave=6 * 1024)  # a real annotated 640×480 frame needs tens of KiB

    def record(box: tuple[float, float, float, float], pts: float, clip: ClipSource | None = None) -> str:
        wall = T0 + timedelta(seconds=pts)
        event = Event("lot", Category.illegal_parking, box, "bays", pts, wall, pts - 180, 0.8, detail="car still")
        change = builder.add(event)
        recorder.record(FrameResult(Frame("lot", pts, wall, image), Detections.empty((640, 480)), (), (event,), (change,)), clip)
        recorder.flush()
        assert change.kind.value == "opened"
        return change.case.case_id

    full_case = record(PARKED_CARS[0], 200.0, ClipSource(frames=[image] * 4, fps=0.5))
    assert recorder.evidence_errors == 1
    stored = store.get_case(full_case)  # the case is kept though its evidence could not be written
    assert stored.case.category is Category.illegal_parking and stored.evidence == ()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(full_case in m and "No space left on device" in m for m in logged), logged

    filler.unlink()  # room again: the next case gets its evidence without anything restarted
    room_case = record((0.05, 0.05, 0.25, 0.3), 260.0, ClipSource(frames=[image] * 4, fps=0.5))
    assert recorder.evidence_errors == 1
    evidence = store.get_case(room_case).evidence
    assert {e.kind.value for e in evidence} == {"frame", "crop", "clip"}
    recorder.close()

    on_disk = sorted(p for p in tiny_disk.rglob("*") if p.is_file())
    assert not [p for p in on_disk if p.name.endswith(".part") or p.name.startswith(".")], on_disk  # no temp files left
    recorded = {tiny_disk / e.path: e for e in evidence}
    for path in on_disk:
        if path in recorded:  # every recorded file is whole: its hash is the stored one
            assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded[path].sha256
        else:  # a file written before the disk filled up is a whole image, just not attached to the case
            assert path.suffix == ".jpg" and cv2.imread(str(path)) is not None, path
    store.close()
