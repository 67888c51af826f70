"""Post-processing rules, one test per rule."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.estimators import postprocess
from edgepose.constants import NUM_PARTS, SEED_CLEANUP_MIN_SCORE
from edgepose.core import Poses
from edgepose.estimators.posenet.letterbox import plan, to_frame


def make_poses(scores: list[list[float]] | np.ndarray, pose_scores=None, xy=None) -> Poses:
    scores = np.asarray(scores, np.float32).reshape(-1, NUM_PARTS)
    n = len(scores)
    if xy is None:
        xy = np.arange(n * NUM_PARTS * 2, dtype=np.float32).reshape(n, NUM_PARTS, 2)
    if pose_scores is None:
        pose_scores = scores.mean(axis=1)
    return Poses(np.asarray(xy, np.float32), scores, np.asarray(pose_scores, np.float32))


def test_filter_drops_poses_below_min_pose_score_inclusive():
    poses = make_poses(np.full((3, NUM_PARTS), 0.9), pose_scores=[0.1, 0.15, 0.5])
    kept = postprocess.filter_poses(poses, min_pose_score=np.float32(0.15))
    np.testing.assert_array_equal(kept.pose_scores, np.float32([0.15, 0.5]))


def test_filter_drops_poses_with_too_few_confident_keypoints():
    scores = np.zeros((2, NUM_PARTS))
    scores[0, :5] = 0.6
    scores[1, :4] = 0.6
    scores[1, 4] = 0.49
    kept = postprocess.filter_poses(make_poses(scores), min_keypoints=5, min_part_score=0.5)
    assert len(kept) == 1
    assert kept.scores[0, 4] == np.float32(0.6)


def test_filter_with_defaults_keeps_everything():
    poses = make_poses(np.zeros((2, NUM_PARTS)))
    assert len(postprocess.filter_poses(poses)) == 2


def test_seed_cleanup_hides_keypoints_below_threshold_in_each_pose():
    scores = np.full((2, NUM_PARTS), 0.8)
    scores[0, 3] = SEED_CLEANUP_MIN_SCORE - 0.01
    scores[1, 7] = 0.1
    poses = make_poses(scores)
    cleaned = postprocess.seed_cleanup(poses)
    assert len(cleaned) == 2  # people stay apart
    assert cleaned.scores[0, 3] == 0 and cleaned.scores[1, 7] == 0
    assert np.count_nonzero(cleaned.scores == 0) == 2
    np.testing.assert_array_equal(cleaned.xy, poses.xy)
    np.testing.assert_array_equal(cleaned.pose_scores, poses.pose_scores)


def test_seed_cleanup_keeps_a_keypoint_exactly_at_threshold():
    scores = np.full((1, NUM_PARTS), np.float32(SEED_CLEANUP_MIN_SCORE))
    assert (postprocess.seed_cleanup(make_poses(scores)).scores > 0).all()


def test_single_person_cleanup_takes_best_point_of_each_part_over_all_poses():
    scores = np.full((2, NUM_PARTS), 0.6, np.float32)
    scores[1, 0] = 0.9  # second person has the better nose
    scores[0, 5] = 0.95  # first person the better left shoulder
    poses = make_poses(scores)
    merged = postprocess.seed_cleanup_single_person(poses)
    assert len(merged) == 1
    np.testing.assert_array_equal(merged.xy[0, 0], poses.xy[1, 0])
    np.testing.assert_array_equal(merged.xy[0, 5], poses.xy[0, 5])
    np.testing.assert_array_equal(merged.xy[0, 1], poses.xy[0, 1])  # a tie goes to the first pose
    assert merged.scores[0, 0] == np.float32(0.9)
    assert merged.pose_scores[0] == pytest.approx(merged.scores[0].sum() / NUM_PARTS)


def test_single_person_cleanup_hides_parts_no_pose_scores_well():
    scores = np.full((2, NUM_PARTS), 0.9, np.float32)
    scores[:, 16] = [0.2, 0.4]
    merged = postprocess.seed_cleanup_single_person(make_poses(scores))
    assert merged.scores[0, 16] == 0
    np.testing.assert_array_equal(merged.xy[0, 16], make_poses(scores).xy[1, 16])


def test_single_person_cleanup_of_no_poses_is_empty():
    assert len(postprocess.seed_cleanup_single_person(Poses.empty())) == 0


def test_to_frame_maps_through_the_letterbox():
    box = plan(640, 480, 385, 385)
    poses = make_poses(np.ones((1, NUM_PARTS)), xy=np.full((1, NUM_PARTS, 2), 100.0))
    mapped = to_frame(poses, box)
    np.testing.assert_allclose(mapped.xy[0, 0], box.to_frame(np.array([100.0, 100.0])), rtol=1e-6)


def test_to_frame_clips_to_the_frame():
    box = plan(640, 480, 385, 385)
    xy = np.zeros((1, NUM_PARTS, 2), np.float32)
    xy[0, 0] = (-10, -10)
    xy[0, 1] = (400, 400)
    mapped = to_frame(make_poses(np.ones((1, NUM_PARTS)), xy=xy), box)
    np.testing.assert_allclose(mapped.xy[0, 0], (0, 0))
    np.testing.assert_allclose(mapped.xy[0, 1], (639, 479))
    unclipped = to_frame(make_poses(np.ones((1, NUM_PARTS)), xy=xy), box, clip=False)
    assert unclipped.xy[0, 0, 1] < -80  # the top padding is 80 frame pixels


def test_rules_return_new_poses_and_leave_their_input_alone():
    poses = make_poses(np.full((2, NUM_PARTS), 0.3))
    before = (poses.xy.copy(), poses.scores.copy(), poses.pose_scores.copy())
    for result in (
        postprocess.seed_cleanup(poses),
        postprocess.seed_cleanup_single_person(poses),
        to_frame(poses, plan(640, 480, 385, 385)),
        postprocess.filter_poses(poses, min_pose_score=0.5),
    ):
        assert result is not poses
    np.testing.assert_array_equal(poses.xy, before[0])
    np.testing.assert_array_equal(poses.scores, before[1])
    np.testing.assert_array_equal(poses.pose_scores, before[2])
