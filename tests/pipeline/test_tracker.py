"""StationaryTracker: same object at the same place across sparse frames; moving things get no dwell."""

from __future__ import annotations

import pytest

from citypatrol.pipeline.tracker import StationaryTracker, iou_matrix
from tests.fixtures_logic import cadence, dets

CAR = (100, 600, 300, 750)


def shifted(box, dx=0.0, dy=0.0):
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def run(frames, **kw):
    tr = StationaryTracker("cam1", **kw)
    out = []
    for pts, d in frames:
        out.append(tr.update(d, pts))
    return tr, out


def test_parked_car_one_track_with_dwell() -> None:
    frames = [(t, dets(("car", shifted(CAR, dx=(i % 3) - 1)))) for i, t in enumerate(cadence(0, 600))]  # ±1 px jitter
    _, out = run(frames)
    last = out[-1]
    assert len(last) == 1
    t = last[0]
    assert (t.track_id, t.first_seen, t.last_seen, t.hits) == (1, 0.0, 598.0, 300)
    assert t.stationary_since == 0.0 and t.stationary_for == 598.0
    assert out[0][0].stationary_since is None  # one sighting is no evidence of rest


@pytest.mark.parametrize("missing", [{2, 5, 7}, {3, 4, 5}, set(range(10, 25))])  # flicker; a 30 s occlusion
def test_flicker_and_occlusion_keep_track_and_dwell(missing: set[int]) -> None:
    frames = [(t, dets() if i in missing else dets(("car", CAR))) for i, t in enumerate(cadence(0, 80))]
    _, out = run(frames, max_gap_s=40)
    ids = {t.track_id for tracks in out for t in tracks}
    assert ids == {1}
    assert out[-1][0].stationary_since == 0.0 and out[-1][0].last_seen == 78.0
    # during the gap the track is still returned, not matched now
    gap_frame = out[min(missing)]
    assert gap_frame[0].last_seen < cadence(0, 80)[min(missing)]


def test_track_dropped_after_max_gap() -> None:
    frames = [(0.0, dets(("car", CAR))), (2.0, dets(("car", CAR))), (40.0, dets()), (62.0, dets()), (64.0, dets(("car", CAR)))]
    _, out = run(frames, max_gap_s=60)
    assert [t.track_id for t in out[3]] == [1]  # 60 s unseen: kept
    assert [t.track_id for t in out[4]] == [2]  # 62 s unseen: dropped; a new track with no dwell
    assert out[4][0].stationary_since is None


def test_class_flip_within_group_keeps_track_and_majority_class() -> None:
    names = ["car", "truck", "car", "car", "truck", "car"]
    frames = [(2.0 * i, dets((n, CAR))) for i, n in enumerate(names)]
    _, out = run(frames)
    assert {t.track_id for tr in out for t in tr} == {1}
    assert out[-1][0].class_name == "car" and out[-1][0].stationary_since == 0.0


def test_different_groups_do_not_match() -> None:
    frames = [(0.0, dets(("car", CAR))), (2.0, dets(("person", CAR)))]
    _, out = run(frames)
    assert sorted((t.track_id, t.class_name) for t in out[-1]) == [(1, "car"), (2, "person")]


@pytest.mark.parametrize("px_per_frame, max_dwell", [(30, 2.0), (60, 0.0), (120, 0.0)])
def test_vehicle_driving_through_never_accumulates_dwell(px_per_frame: int, max_dwell: float) -> None:
    # boxes of a crawling car overlap from frame to frame, so its track continues, but it keeps
    # leaving its resting box: at most one cadence step of rest, never a growing dwell
    n = 700 // px_per_frame + 1  # until it reaches the right edge of the frame
    frames = [(t, dets(("car", shifted(CAR, dx=px_per_frame * i)))) for i, t in enumerate(cadence(0, 2 * n))]
    _, out = run(frames)
    assert max(t.stationary_for for tracks in out for t in tracks) == max_dwell
    assert len({t.track_id for tracks in out for t in tracks}) <= 3


def test_fast_vehicle_new_track_each_frame_no_dwell() -> None:
    frames = [(t, dets(("car", shifted(CAR, dx=250 * i)))) for i, t in enumerate(cadence(0, 8))]
    _, out = run(frames)
    assert all(t.stationary_since is None for tracks in out for t in tracks)


def test_stop_then_park_counts_from_arrival() -> None:
    moving = [(2.0 * i, dets(("car", shifted(CAR, dx=60 * i)))) for i in range(5)]  # 0..8 s moving
    parked_box = shifted(CAR, dx=60 * 5)
    parked = [(10.0 + 2.0 * i, dets(("car", parked_box))) for i in range(50)]  # from 10 s on, still
    _, out = run(moving + parked)
    t = out[-1][0]
    assert t.stationary_since == 10.0
    assert t.stationary_for == pytest.approx(98.0)  # last frame at 108 s


def test_moving_off_resets_dwell() -> None:
    frames = [(2.0 * i, dets(("car", CAR))) for i in range(10)]
    frames += [(20.0, dets(("car", shifted(CAR, dx=120))))]  # pulled forward 0.6 car widths
    frames += [(22.0, dets(("car", shifted(CAR, dx=120))))]
    _, out = run(frames)
    assert out[9][0].stationary_since == 0.0
    assert out[10][0].track_id == 1 and out[10][0].stationary_since is None
    assert out[11][0].stationary_since == 20.0


def test_partial_occlusion_shrinks_box_but_not_dwell() -> None:
    half = (CAR[0], CAR[1], (CAR[0] + CAR[2]) / 2, CAR[3])  # left half visible
    frames = [(0.0, dets(("car", CAR))), (2.0, dets(("car", half))), (4.0, dets(("car", CAR)))]
    _, out = run(frames)
    assert [t.track_id for t in out[-1]] == [1]
    assert out[1][0].stationary_since == 0.0 and out[2][0].stationary_since == 0.0


def test_two_parked_cars_keep_their_ids() -> None:
    other = (500, 600, 700, 750)
    frames = [(2.0 * i, dets(("car", CAR), ("car", other)) if i % 2 == 0 else dets(("car", other), ("car", CAR)))
              for i in range(6)]
    _, out = run(frames)
    by_id = {t.track_id: t.box for t in out[-1]}
    assert by_id[1][0] == pytest.approx(0.1) and by_id[2][0] == pytest.approx(0.5)


def test_duplicate_boxes_of_one_object_are_one_track() -> None:
    frames = [(0.0, dets(("car", CAR, 0.8), ("vehicle", shifted(CAR, dx=3), 0.6)))]
    _, out = run(frames)
    assert len(out[0]) == 1 and out[0][0].score == pytest.approx(0.8)


def test_pts_backwards_is_an_error() -> None:
    tr = StationaryTracker("cam1")
    tr.update(dets(("car", CAR)), 10.0)
    with pytest.raises(ValueError, match="backwards"):
        tr.update(dets(("car", CAR)), 8.0)
    tr.reset()
    assert tr.update(dets(("car", CAR)), 0.0)[0].track_id == 2


def test_iou_matrix_values() -> None:
    import numpy as np

    a = np.array([[0, 0, 2, 2]], dtype=float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], dtype=float)
    assert iou_matrix(a, b).tolist()[0] == pytest.approx([1 / 7, 1.0, 0.0])


@pytest.mark.parametrize("every, at_rest", [(1, True), (2, False), (4, False)])
def test_rest_needs_most_frames_at_the_place(every: int, at_rest: bool) -> None:
    # seen at the spot only every 2nd / 4th frame (passing traffic): not a parked car
    frames = [(t, dets(("car", CAR)) if i % every == 0 else dets()) for i, t in enumerate(cadence(0, 200))]
    _, out = run(frames)
    assert (max(t.stationary_for for tracks in out for t in tracks) > 100) is at_rest


def test_sparse_source_keeps_tracks_between_frames() -> None:
    """A stills camera one frame every 5 minutes: a parked car is one track across the frames."""
    frames = [(t, dets(("car", CAR))) for t in (0.0, 300.0, 600.0, 900.0)]
    _, out = run(frames, max_gap_s=60)
    assert [t.track_id for t in out[-1]] == [1]
    assert out[-1][0].stationary_since == 0.0 and out[-1][0].stationary_for == 900.0
    # three missed frames are tolerated, a fourth is not
    frames = [(0.0, dets(("car", CAR))), (300.0, dets(("car", CAR)))] + [(300.0 * k, dets()) for k in range(2, 6)] + [(1800.0, dets(("car", CAR)))]
    _, out = run(frames, max_gap_s=60, max_gap_frames=3)
    assert [t.track_id for t in out[-1]] == [2]
