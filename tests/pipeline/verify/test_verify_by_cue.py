"""核查 re-runs the cue that opened a case, on real footage (London hoarding, parking lot).

The train poster on the hoarding is found by its printed text; the detector's billboard class
never fires on it. The station render beside it is a picture without text, found by the panel
cue: re-checked by the same panel search, it is still there; a case at a bare stretch of the
hoarding is gone. A handled case opened by the text cue whose poster is still on the hoarding is
reopened, not closed because the detector is silent; the same case judged by the detector alone
would have been closed as gone (what 核查 did before it knew the opening cue). A case the
scene-change cue opened is judged against the camera's reference image (real parking-lot frames).
"""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import pytest

from citypatrol.models.detector import load_detectors
from citypatrol.models.text import RapidTextReader
from citypatrol.pipeline.config.models import Category, Config, VerifyConfig, Zone, ZoneKind
from citypatrol.pipeline.store.case_store import open_store
from citypatrol.pipeline.types import PANEL_CUE, SCENE_CUE, TEXT_CUE, CaseStatus
from citypatrol.pipeline.verify.judge import Verdict
from citypatrol.pipeline.rules.vending_scene import new_objects
from citypatrol.pipeline.verify.recheck import Verifier
from tests.fixtures_dispatch import dispatch_config, open_submitted
from tests.footage import PARKED_BAYS, PARKING, encode, frame_at

POSTER_TEXT = (0.975, 0.367, 0.989, 0.389)  # the text the cue read on the train poster (BR logo)
RENDER_POSTER = (0.698, 0.406, 0.752, 0.545)  # the picture poster the panel cue found (no text on it)
BARE_HOARDING = (0.83, 0.45, 0.88, 0.55)  # plain blue between the site sign and the train poster
VERIFY = VerifyConfig(confirm_s=2, cadence_s=0.5, gap_s=1, max_watch_s=3)
HOARDING = Zone(id="hoarding", name="施工围挡", kind=ZoneKind.ad_area, polygon=[[0.64, 0.30], [1.0, 0.30], [1.0, 0.60], [0.64, 0.60]])


def _config() -> Config:
    """The London camera (the dispatch test config's cam1) with its hoarding drawn as an ad area."""
    base = dispatch_config("")
    cam = base.cameras[0].model_copy(update={"zones": [HOARDING]})
    return base.model_copy(update={"verify": VERIFY, "cameras": [cam]})


@pytest.fixture(scope="module")
def detector():
    return load_detectors(Config().models)


@pytest.fixture(scope="module")
def reader():
    return RapidTextReader()


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'cases.db'}")
    yield s
    s.close()


def _handled(store, config, case_id: str, cue: str, box=POSTER_TEXT, zone: str = "hoarding",
             category: Category = Category.billboard) -> None:
    open_submitted(store, config, case_id, category=category, box=box, zone=zone, cue=cue, score=0.78)
    for status in (CaseStatus.approved, CaseStatus.dispatched, CaseStatus.handled):  # reviewed, filed, handled
        if store.get_case(case_id).case.status is not status:
            store.set_status(case_id, status, at=datetime.now(UTC), actor="test")


def test_text_case_whose_poster_is_still_there_is_reopened(store, detector, reader, sample_video, tmp_path):
    config = _config()
    _handled(store, config, "poster", TEXT_CUE)
    assert store.get_case("poster").case.cue == TEXT_CUE  # the store keeps the opening cue
    result = Verifier(store, config, detector, tmp_path / "evidence", text_reader=reader).verify_case(
        "poster", source=str(sample_video("london")))
    assert result.verdict is Verdict.present and result.status is CaseStatus.reopened
    assert "text cue" in result.reason and "核查未通过" in result.reason
    assert store.get_case("poster").case.status is CaseStatus.reopened
    assert result.evidence and (tmp_path / "evidence" / result.evidence[0]).is_file()


@pytest.mark.parametrize(("box", "verdict", "status"), [
    (RENDER_POSTER, Verdict.present, CaseStatus.reopened),
    (BARE_HOARDING, Verdict.gone, CaseStatus.closed),
])
def test_panel_case_is_judged_by_the_panel_search(store, detector, sample_video, tmp_path, box, verdict, status):
    # a walker and then a car pass in front of the render poster for a second (1.5 and 2.0 s)
    config = _config().model_copy(update={"verify": VERIFY.model_copy(update={"gap_s": 2.0})})
    _handled(store, config, "picture", PANEL_CUE, box=box)
    result = Verifier(store, config, detector, tmp_path / "evidence").verify_case("picture", source=str(sample_video("london")))
    assert result.verdict is verdict and result.status is status
    assert "panel cue" in result.reason
    assert store.get_case("picture").case.status is status


def test_the_detector_alone_would_have_closed_it(store, detector, sample_video, tmp_path):
    config = _config()
    _handled(store, config, "poster", "detector")
    result = Verifier(store, config, detector, tmp_path / "evidence").verify_case("poster", source=str(sample_video("london")))
    assert result.verdict is Verdict.gone and result.status is CaseStatus.closed
    assert "detector" in result.reason


def test_scene_change_case_is_judged_against_the_reference(store, detector, assets, tmp_path):
    """A case the scene-change cue opened: the bays' area still differs from the empty-lot reference."""
    parked, empty = frame_at(assets / PARKING, 4.0), frame_at(assets / PARKING, 0.0)
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), empty)
    area = Zone(id="bays", kind=ZoneKind.ad_area, polygon=PARKED_BAYS)
    base = _config()
    cam = base.cameras[0].model_copy(update={"zones": [area], "reference_image": reference})
    config = base.model_copy(update={"cameras": [cam]})
    store.upsert_camera(cam)
    _handled(store, config, "board", SCENE_CUE, box=(0.555, 0.55, 0.76, 0.74), zone="bays")
    still = encode(tmp_path / "still.mp4", 6, lambda s: parked)
    result = Verifier(store, config, detector, tmp_path / "evidence").verify_case("board", source=str(still))
    assert result.verdict is Verdict.present and result.status is CaseStatus.reopened
    assert "scene-change cue" in result.reason
    gone = encode(tmp_path / "gone.mp4", 6, lambda s: empty)
    _handled(store, config, "board2", SCENE_CUE, box=(0.555, 0.55, 0.76, 0.74), zone="bays")
    result = Verifier(store, config, detector, tmp_path / "evidence").verify_case("board2", source=str(gone))
    assert result.verdict is Verdict.gone and result.status is CaseStatus.closed


def test_vending_case_from_a_new_object_is_judged_against_the_reference(store, detector, assets, tmp_path):
    """A pitch the no-vendor-class cue opened: still a new object on its box → reopened; the lot empty → closed."""
    parked, empty = frame_at(assets / PARKING, 4.0), frame_at(assets / PARKING, 0.0)
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), empty)
    pavement = Zone(id="bays", kind=ZoneKind.no_vending, polygon=[[0.5, 0.5], [0.8, 0.5], [0.8, 0.8], [0.5, 0.8]])
    base = _config()
    cam = base.cameras[0].model_copy(update={"zones": [pavement], "reference_image": reference})
    config = base.model_copy(update={"cameras": [cam]})
    obj = max(new_objects(parked, empty, pavement, []), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))  # the parked cars
    for case_id, footage, verdict, status in (("pitch", parked, Verdict.present, CaseStatus.reopened),
                                              ("pitch2", empty, Verdict.gone, CaseStatus.closed)):
        _handled(store, config, case_id, SCENE_CUE, box=obj, zone="bays", category=Category.street_vending)
        src = encode(tmp_path / f"{case_id}.mp4", 6, lambda s, img=footage: img)
        result = Verifier(store, config, detector, tmp_path / "evidence").verify_case(case_id, source=str(src))
        assert (result.verdict, result.status) == (verdict, status)
        assert "scene-change cue" in result.reason
