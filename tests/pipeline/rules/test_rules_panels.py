"""The panel cue for picture posters, on real footage: the London street's construction hoarding.

The hoarding is one plain blue surface with adverts pasted on it. The station render poster is a
picture with no text: OCR reads nothing on it and the city model's billboard class never fires.
The panel cue finds it as a panel the blue runs all the way round. Judged by looking at the frames:

- the render poster (with the narrow light-blue panel touching its left side) at x 0.70–0.75;
- the small GRAHAM site sign at x 0.78–0.82 (a printed sign: a panel too);
- the train poster runs off the frame's right edge, so it is no panel (the text cue finds it);
- a walker crossing in front of the hoarding carries a white badge on his chest, at x≈0.85 in the
  frame at 0.5 s: a panel only if people are not left out.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from citypatrol.models.text import TextReading, TextRegion
from citypatrol.pipeline.config.models import BillboardSettings, Category, Rules, ZoneKind
from citypatrol.pipeline.detection.panels import find_panels
from citypatrol.pipeline.evaluation.scoring import boxes_match
from citypatrol.pipeline.rules import PanelRule, build_rules
from citypatrol.pipeline.types import PANEL_CUE, cue_of
from tests.fixtures_logic import NOON, camera, ctx, dets, rect, zone
from tests.footage import frame_at

HOARDING_BOX = (0.64, 0.30, 1.0, 0.60)
HOARDING = zone("hoarding", ZoneKind.ad_area, rect(*HOARDING_BOX), name="施工围挡")
RENDER_POSTER = (0.705, 0.395, 0.76, 0.545)
GRAHAM_SIGN = (0.775, 0.415, 0.82, 0.465)
TRAIN_POSTER = (0.89, 0.35, 1.0, 0.56)
WALKER_AT_HALF_S = (0.84, 0.38, 0.90, 0.62)  # the person detector's box around the walker with the badge
ON = Rules(billboard=BillboardSettings(dwell_s=60, text_every_s=30, panel_cue=True))
NO_TEXT = TextReading((), HOARDING_BOX, 0.0)


@pytest.fixture(scope="module")
def frames(sample_video) -> dict[float, object]:
    path = sample_video("london")
    return {t: frame_at(path, t) for t in (0.0, 0.5, 1.0, 3.0)}


def boxes(reading) -> list:
    return [p.box for p in reading.panels]


def test_the_render_poster_and_the_site_sign_are_panels_on_the_hoarding(frames) -> None:
    for t in (0.0, 1.0, 3.0):
        found = boxes(find_panels(frames[t], HOARDING_BOX, HOARDING.polygon))
        assert any(boxes_match(b, RENDER_POSTER, min_iou=0.5) for b in found), (t, found)
        assert any(boxes_match(b, GRAHAM_SIGN, min_iou=0.5) for b in found), (t, found)
        assert not any(boxes_match(b, TRAIN_POSTER) for b in found)  # runs off the frame: not an island
        assert len(found) == 2


def test_a_badge_on_a_walker_is_a_panel_only_if_people_are_not_left_out(frames) -> None:
    def on_walker(found) -> list:
        return [b for b in found if WALKER_AT_HALF_S[0] <= (b[0] + b[2]) / 2 <= WALKER_AT_HALF_S[2]]
    assert on_walker(boxes(find_panels(frames[0.5], HOARDING_BOX, HOARDING.polygon)))
    assert not on_walker(boxes(find_panels(frames[0.5], HOARDING_BOX, HOARDING.polygon, exclude=[WALKER_AT_HALF_S])))


def test_bare_hoarding_gives_no_panels(frames) -> None:
    bare = find_panels(frames[0.0], (0.82, 0.33, 0.89, 0.58))  # the blue between the sign and the train poster
    assert bare.panels == () and bare.surface_share > 0.5


def run(rules: Rules, frames, readings=None, cam=None, step: float = 30.0):
    """The frames as readings taken every `step` seconds of a fixed camera."""
    rule = PanelRule(rules, refresh_s=600)
    events = []
    for i, t in enumerate((0.0, 1.0, 3.0)):
        c = ctx(cam or camera(HOARDING), [], dets(size=(1920, 1080)), pts=i * step, rules=rules, local_time=NOON, image=frames[t])
        events += rule.evaluate(replace(c, texts=(readings or [NO_TEXT] * 3)[i]))
    return events


def test_the_render_poster_at_rest_is_a_billboard_for_review(frames) -> None:
    events = run(ON, frames)
    render = [e for e in events if boxes_match(e.box, RENDER_POSTER, min_iou=0.5)]
    assert render and all(e.category is Category.billboard and e.zone_id == "hoarding" for e in render)
    assert all(e.classes == (PANEL_CUE,) and cue_of(e.classes) == PANEL_CUE for e in events)
    assert all(e.score < 0.85 and "picture poster" in e.detail for e in events)  # a shape, not a reading: reviewed
    assert all(e.pts == 60.0 and e.since_pts == 0.0 for e in events)  # at rest for the 60 s dwell
    assert not any(boxes_match(e.box, TRAIN_POSTER) for e in events)


def test_off_by_default_not_yet_at_rest_or_registered_is_nothing(frames) -> None:
    assert run(Rules(billboard=BillboardSettings(dwell_s=60, text_every_s=30)), frames) == []  # default: off
    assert run(ON, frames, step=20.0) == []  # last reading at 40 s < 60 s
    permit = zone("site_permit", ZoneKind.approved_ad, rect(0.69, 0.38, 0.83, 0.57))
    assert run(ON, frames, cam=camera(HOARDING, permit)) == []
    assert run(ON, frames, cam=camera()) == []  # no advertising area drawn


def test_a_panel_that_carries_text_is_the_text_cues(frames) -> None:
    caption = TextRegion((0.72, 0.50, 0.74, 0.52), "STATION", 0.9, True)  # a text line on the render poster
    with_caption = [TextReading((caption,), HOARDING_BOX, 0.0)] * 3
    events = run(ON, frames, readings=with_caption)
    assert events and not any(boxes_match(e.box, RENDER_POSTER, min_iou=0.5) for e in events)


def test_the_rule_is_built_so_a_camera_can_turn_it_on() -> None:
    active, _ = build_rules({"car", "person", "billboard"})
    assert any(isinstance(r, PanelRule) for r in active)  # off globally, on per camera at evaluation time
