"""tracking.py: people keep their ids through crossings, occlusions and missed frames."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.config import TrackingConfig
from edgepose.core import Poses
from edgepose.tracking import COCO_SIGMAS, Tracker, box_iou, oks

from .synthetic import CANONICAL, bend, person, poses_of, walk

FPS = 10.0
BASE = CANONICAL.xy


def ids_by_person(tracker: Tracker, frames: list[list[tuple[int, tuple]]], dt: float = 1 / FPS) -> dict[int, list[int]]:
    """Run frames of [(person label, (xy, scores)), ...]; the ids each labelled person got."""
    seen: dict[int, list[int]] = {}
    for k, people in enumerate(frames):
        poses = poses_of(*[p for _, p in people])
        out = tracker.process(poses, k * dt)
        assert out.track_ids is not None and len(out) == len(people)
        for (label, _), tid in zip(people, out.track_ids.tolist()):
            seen.setdefault(label, []).append(tid)
    return seen


def test_oks_is_one_for_the_same_pose_and_falls_with_distance():
    xy, _ = person(BASE, 200, (320, 400))
    ok = np.ones(17, bool)
    assert oks(xy, ok, xy, ok, 200 * 60)[0] == pytest.approx(1.0)
    near, _ = oks(xy + 3, ok, xy, ok, 200 * 60)
    far, _ = oks(xy + 30, ok, xy, ok, 200 * 60)
    assert 1.0 > near > far > 0.0
    assert COCO_SIGMAS[0] == 0.026 and COCO_SIGMAS[-1] == 0.089


def test_oks_uses_only_keypoints_both_poses_have():
    xy, _ = person(BASE, 200, (320, 400))
    a_ok = np.ones(17, bool)
    b_ok = np.zeros(17, bool)
    b_ok[:5] = True
    moved = xy.copy()
    moved[5:] += 100  # far off, but not confident in b
    sim, shared = oks(xy, a_ok, moved, b_ok, 12000)
    assert shared == 5 and sim == pytest.approx(1.0)
    assert oks(xy, a_ok, xy, np.zeros(17, bool), 12000) == (0.0, 0)


def test_box_iou():
    a = np.array([0, 0, 10, 10.0])
    assert box_iou(a, a) == 1.0
    assert box_iou(a, np.array([5, 0, 15, 10.0])) == pytest.approx(50 / 150)
    assert box_iou(a, np.array([20, 20, 30, 30.0])) == 0.0


def test_a_person_standing_still_keeps_one_id():
    frames = [[(1, person(BASE, 200, (320, 400)))] for _ in range(30)]
    assert set(ids_by_person(Tracker(), frames)[1]) == {1}


def test_two_people_crossing_keep_their_ids():
    # A walks right in front (bigger), B walks left behind (smaller, higher in the frame);
    # they overlap in the middle of the sequence.
    frames = []
    for k in range(40):
        t = k / FPS
        a = person(walk(BASE, t * 6), 220, (120 + 100 * t, 430))
        b = person(walk(BASE, t * 6 + 1), 170, (520 - 100 * t, 380), score=0.8)
        frames.append([(1, a), (2, b)])
    seen = ids_by_person(Tracker(), frames)
    assert len(set(seen[1])) == 1 and len(set(seen[2])) == 1
    assert seen[1][0] != seen[2][0]


def test_two_people_side_by_side_keep_their_ids_while_one_bends_over():
    frames = []
    for k in range(40):
        deg = 90 * min(1.0, max(0.0, (k - 10) / 5)) if k < 30 else 0.0
        frames.append([(1, person(BASE, 200, (280, 420))), (2, person(bend(BASE, deg), 195, (370, 420)))])
    seen = ids_by_person(Tracker(), frames)
    assert len(set(seen[1])) == 1 and len(set(seen[2])) == 1 and seen[1][0] != seen[2][0]


@pytest.mark.parametrize("missing", [1, 2, 3, 5])
def test_a_few_missed_frames_or_an_occlusion_keep_the_id(missing):
    # Walking steadily; gone for `missing` frames (<= 0.5 s, below max_age_s = 1 s),
    # found again further along: the track's velocity carries it across the gap.
    tracker = Tracker()
    ids = []
    for k in range(30):
        if 10 <= k < 10 + missing:
            out = tracker.process(Poses.empty(), k / FPS)
            assert len(out) == 0
            continue
        feet = (100 + 150 * k / FPS, 420)
        out = tracker.process(poses_of(person(walk(BASE, k * 0.6), 200, feet)), k / FPS)
        ids.append(int(out.track_ids[0]))
    assert set(ids) == {1}


@pytest.mark.parametrize(("gap_s", "same"), [(0.5, True), (0.9, True), (1.5, False), (5.0, False)])
def test_leaving_and_coming_back_keeps_the_id_only_within_max_age(gap_s, same):
    tracker = Tracker(TrackingConfig(max_age_s=1.0))
    here = poses_of(person(BASE, 200, (320, 420)))
    first = tracker.process(here, 0.0).track_ids[0]
    tracker.process(here, 0.1)
    # Frames with nobody in between, as a camera delivers them.
    t = 0.1
    while t + 0.1 < 0.1 + gap_s:
        t += 0.1
        tracker.process(Poses.empty(), t)
    again = tracker.process(here, 0.1 + gap_s).track_ids[0]
    assert bool(again == first) is same
    if not same:
        assert again > first  # ids are never reused


def test_few_confident_keypoints_are_matched_by_box_overlap():
    tracker = Tracker(TrackingConfig(min_keypoints=4))
    xy, scores = person(BASE, 200, (320, 420))
    scores = np.full(17, 0.05)
    scores[[0, 5, 12]] = 0.9  # nose, a shoulder and a hip: too few for OKS, a box all the same
    first = tracker.process(poses_of((xy, scores)), 0.0).track_ids[0]
    second = tracker.process(poses_of((xy + 4, scores)), 0.1).track_ids[0]
    assert first == second


def test_a_body_changing_shape_fast_keeps_its_id_by_box_overlap():
    # A fall: the keypoints move too far for OKS between two frames, the box still overlaps.
    from .synthetic import fallen

    tracker = Tracker()
    ids = [tracker.process(poses_of(person(fallen(BASE, deg), 200, (320, 420))), k / FPS).track_ids[0]
           for k, deg in enumerate([0, 0, 0, 20, 45, 70, 88, 88, 88])]
    assert set(ids) == {ids[0]}


def test_track_cap_drops_the_lowest_scoring_new_pose_when_all_tracks_are_in_view():
    tracker = Tracker(TrackingConfig(max_tracks=2))
    people = [person(BASE, 150, (100 + 200 * i, 420), score=s) for i, s in enumerate((0.9, 0.5, 0.7))]
    out = tracker.process(poses_of(*people), 0.0)
    assert len(out) == 2
    assert sorted(out.pose_scores.tolist()) == pytest.approx([0.7, 0.9])
    assert len(tracker.live_ids) == 2


def test_track_cap_evicts_the_longest_unseen_track():
    tracker = Tracker(TrackingConfig(max_tracks=2, max_age_s=5.0))
    a = person(BASE, 150, (100, 420))
    b = person(BASE, 150, (300, 420))
    c = person(BASE, 150, (500, 420))
    ida = tracker.process(poses_of(a), 0.0).track_ids[0]
    idb = tracker.process(poses_of(b), 0.5).track_ids[0]
    out = tracker.process(poses_of(c), 1.0)
    assert len(out) == 1 and out.track_ids[0] not in (ida, idb)
    assert sorted(tracker.live_ids) == sorted([idb, out.track_ids[0]])


def test_output_keeps_the_input_order_and_arrays():
    tracker = Tracker()
    people = [person(BASE, 150, (100 + 200 * i, 420), score=s) for i, s in enumerate((0.5, 0.9, 0.7))]
    poses = poses_of(*people)
    out = tracker.process(poses, 0.0)
    np.testing.assert_array_equal(out.xy, poses.xy)
    # The best pose is matched (and numbered) first.
    assert out.track_ids.tolist() == [3, 1, 2]


def test_time_going_backwards_is_held_not_trusted():
    tracker = Tracker()
    here = poses_of(person(BASE, 200, (320, 420)))
    a = tracker.process(here, 10.0).track_ids[0]
    b = tracker.process(here, 5.0).track_ids[0]  # a replayed file with a clock step
    assert a == b


def test_reset_forgets_tracks_but_not_the_id_counter():
    tracker = Tracker()
    here = poses_of(person(BASE, 200, (320, 420)))
    assert tracker.process(here, 0.0).track_ids[0] == 1
    tracker.reset()
    assert tracker.process(here, 0.1).track_ids[0] == 2


def test_the_match_tables_equal_oks_and_iou_pair_by_pair():
    """The tracker scores every pose against every track in one pass of array
    arithmetic; each entry must be what `oks` and `box_iou` (the same tables for one
    pair) give for that pair: the broadcasting puts every pair in its place."""
    from edgepose.tracking import _match_tables, box_iou, oks

    rng = np.random.default_rng(7)
    n, m = 5, 4
    xy = rng.uniform(0, 200, (n, 17, 2))
    ok = rng.uniform(size=(n, 17)) > 0.3
    ok[0] = False  # a pose with no confident keypoint
    boxes = np.sort(rng.uniform(0, 200, (n, 2, 2)), axis=1).transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]]
    t_xy = xy[:m] + rng.normal(0, 8, (m, 17, 2))
    t_ok = rng.uniform(size=(m, 17)) > 0.3
    t_box = boxes[:m] + rng.normal(0, 15, (m, 4))
    t_box[3] = [500, 500, 520, 530]  # overlaps nothing
    sim, shared, iou = _match_tables(xy, ok, boxes, list(zip(t_xy, t_box)), list(t_ok))
    for i in range(n):
        for j in range(m):
            area = float((t_box[j, 2] - t_box[j, 0]) * (t_box[j, 3] - t_box[j, 1]))
            want_sim, want_shared = oks(xy[i], ok[i], t_xy[j], t_ok[j], area)
            assert shared[i, j] == want_shared
            assert sim[i, j] == pytest.approx(want_sim, rel=1e-12, abs=1e-15)
            assert iou[i, j] == pytest.approx(box_iou(boxes[i], t_box[j]), rel=1e-12, abs=1e-15)
    assert _match_tables(xy[:0], ok[:0], boxes[:0], [], [])[0].shape == (0, 0)


def test_a_scene_cut_starts_every_track_afresh():
    """Frame.scene_cut (the demo's next photo): a person at the same place is someone else."""
    from edgepose.core import Frame, FrameResult
    from edgepose.scene import TrackStage

    stage = TrackStage(Tracker(TrackingConfig()))
    poses = poses_of(person(BASE, 200, (320, 400)))
    rgb = np.zeros((480, 640, 3), np.uint8)

    def ids(seq: int, cut: bool) -> list[int]:
        frame = Frame(rgb=rgb, seq=seq, captured_at=0.0, captured_mono=seq / FPS, scene_cut=cut)
        return stage.process(FrameResult(frame, poses, 0.0)).poses.track_ids.tolist()

    assert ids(0, True) == ids(1, False) == [1]
    assert ids(2, True) == [2], "the same place after a cut is a new person"
    assert ids(3, False) == [2]


def test_nobody_in_a_demo_photo_inherits_a_track_id_from_the_photo_before():
    """The bundled photos through the model and the tracker as the daemon runs them
    (5 fps, each photo held DEMO_FRAMES_PER_PHOTO frames): within a photo everyone keeps
    one id; no id found in one photo appears in the next."""
    from edgepose.config import load_config
    from edgepose.core import Frame
    from edgepose.errors import EdgePoseError
    from edgepose.estimators import open_estimator
    from edgepose.pipeline import EstimateStage
    from edgepose.scene import TrackStage
    from edgepose.sources import DEMO_FRAMES_PER_PHOTO, DemoSource, demo_dir, list_images

    config = load_config(None)
    try:
        estimate = EstimateStage(open_estimator(config.model, config.decode))
    except EdgePoseError as exc:  # no TF Lite runtime here
        pytest.skip(str(exc))
    track = TrackStage(Tracker(config.tracking))
    source = DemoSource()
    source.open()
    photos = len(list_images(demo_dir()))
    ids: list[set[int]] = [set() for _ in range(photos)]
    per_frame: list[list[int]] = [[] for _ in range(photos)]
    for seq in range(photos * DEMO_FRAMES_PER_PHOTO):
        frame = Frame(rgb=source.read(), seq=seq, captured_at=0.0, captured_mono=seq / 5.0,
                      scene_cut=source.scene_cut)
        found = track.process(estimate(frame)).poses.track_ids.tolist()
        ids[seq // DEMO_FRAMES_PER_PHOTO].update(found)
        per_frame[seq // DEMO_FRAMES_PER_PHOTO].append(len(found))
    source.close()
    assert all(ids), "every photo shows people"
    for before, after in zip(ids, ids[1:]):
        assert not before & after, ids
    for photo, counts in zip(ids, per_frame):
        assert len(photo) == max(counts), "within a photo nobody changes id"
