"""PoseNet decoding on synthetic outputs whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.constants import NUM_PARTS, PART_IDS
from edgepose.estimators.posenet import decode
from edgepose.estimators.posenet.constants import NUM_EDGES, POSE_CHAIN_IDS
from edgepose.estimators.posenet.outputs import PoseNetOutputs

STRIDE = 16
GRID_H, GRID_W = 17, 23  # a 257 x 353 input
LOW = -8.0  # background logit: sigmoid ~ 0.0003
PEAK = 4.0  # sigmoid ~ 0.982


def skeleton(x0: float, y0: float) -> np.ndarray:
    """(17, 2) model-input pixels, x first: a standing person whose nose is at (x0, y0)."""
    rel = {
        "nose": (0, 0), "leftEye": (5, -5), "rightEye": (-5, -5), "leftEar": (10, -2),
        "rightEar": (-10, -2), "leftShoulder": (20, 30), "rightShoulder": (-20, 30),
        "leftElbow": (25, 65), "rightElbow": (-25, 65), "leftWrist": (28, 100),
        "rightWrist": (-28, 100), "leftHip": (15, 100), "rightHip": (-15, 100),
        "leftKnee": (16, 140), "rightKnee": (-16, 140), "leftAnkle": (17, 175),
        "rightAnkle": (-17, 175),
    }
    return np.array([rel[name] for name in sorted(PART_IDS, key=PART_IDS.get)], float) + (x0, y0)


def cell_of(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.floor(xy[..., 1] / STRIDE + 0.5).astype(int), np.floor(xy[..., 0] / STRIDE + 0.5).astype(int)


class Scene:
    """Synthetic outputs: each person owns a band of columns; inside it every
    offset points at that person's keypoint and every displacement is exact."""

    def __init__(self) -> None:
        self.heatmaps = np.full((GRID_H, GRID_W, NUM_PARTS), LOW, np.float32)
        self.offsets = np.zeros((GRID_H, GRID_W, 2 * NUM_PARTS), np.float32)
        self.fwd = np.zeros((GRID_H, GRID_W, 2 * NUM_EDGES), np.float32)
        self.bwd = np.zeros((GRID_H, GRID_W, 2 * NUM_EDGES), np.float32)

    def add_person(self, xy: np.ndarray, columns: slice, peak: float = PEAK) -> None:
        gy, gx = np.mgrid[0:GRID_H, 0:GRID_W]
        gy, gx = gy[:, columns], gx[:, columns]
        for k in range(NUM_PARTS):
            self.offsets[:, columns, k] = xy[k, 1] - gy * STRIDE
            self.offsets[:, columns, k + NUM_PARTS] = xy[k, 0] - gx * STRIDE
        for edge, (parent, child) in enumerate(POSE_CHAIN_IDS):
            d = xy[child] - xy[parent]
            self.fwd[:, columns, edge], self.fwd[:, columns, edge + NUM_EDGES] = d[1], d[0]
            self.bwd[:, columns, edge], self.bwd[:, columns, edge + NUM_EDGES] = -d[1], -d[0]
        cy, cx = cell_of(xy)
        self.heatmaps[cy, cx, np.arange(NUM_PARTS)] = peak

    def outputs(self) -> PoseNetOutputs:
        return PoseNetOutputs(self.heatmaps, self.offsets, self.fwd, self.bwd, STRIDE)


def multi(scene: Scene, **kwargs) -> "decode.Poses":
    args = dict(max_poses=5, min_part_score=0.5, nms_radius=20.0) | kwargs
    return decode.decode_multiple(scene.outputs(), **args)


def test_one_person_is_found_at_its_keypoints():
    truth = skeleton(100, 40)
    scene = Scene()
    scene.add_person(truth, slice(None))
    poses = multi(scene)
    assert len(poses) == 1
    np.testing.assert_allclose(poses.xy[0], truth, atol=1e-4)
    expected = decode.sigmoid(np.float32(PEAK))
    np.testing.assert_allclose(poses.scores[0], expected)
    assert poses.pose_scores[0] == pytest.approx(expected)


def test_several_people_come_out_in_decreasing_root_score():
    scene = Scene()
    people = [skeleton(60, 30), skeleton(180, 40), skeleton(300, 35)]
    peaks = [2.0, 5.0, 3.0]
    for person, columns, peak in zip(people, [slice(0, 8), slice(8, 16), slice(16, None)], peaks):
        scene.add_person(person, columns, peak)
    poses = multi(scene)
    assert len(poses) == 3
    for got, want in zip(poses.xy, [people[1], people[2], people[0]]):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert list(poses.pose_scores) == sorted(poses.pose_scores, reverse=True)


def test_max_poses_keeps_the_best_roots():
    scene = Scene()
    people = [skeleton(60, 30), skeleton(180, 40), skeleton(300, 35)]
    for person, columns, peak in zip(people, [slice(0, 8), slice(8, 16), slice(16, None)], [2.0, 5.0, 3.0]):
        scene.add_person(person, columns, peak)
    poses = multi(scene, max_poses=2)
    assert len(poses) == 2
    np.testing.assert_allclose(poses.xy[:, 0], [people[1][0], people[2][0]], atol=1e-4)


def _one_strong_part(scene: Scene, xy: np.ndarray, columns: slice, peak: float) -> None:
    """A person found by one keypoint only (its nose at `peak`), every other part near 0."""
    scene.add_person(xy, columns, LOW)
    cy, cx = cell_of(xy[0])
    scene.heatmaps[cy, cx, 0] = peak


def test_max_poses_keeps_the_highest_pose_scores_not_the_first_roots():
    """Two weak poses with a strong root come first in TF.js's queue; the person whose
    every keypoint is found, with a weaker root, is the one kept."""
    scene = Scene()
    people = [skeleton(60, 30), skeleton(180, 40), skeleton(300, 35)]
    _one_strong_part(scene, people[0], slice(0, 8), 6.0)
    scene.add_person(people[1], slice(8, 16), 2.0)
    _one_strong_part(scene, people[2], slice(16, None), 5.0)
    queue_order = decode.decode_in_root_order(scene.outputs(), limit=2, min_part_score=0.5, nms_radius=20.0)
    np.testing.assert_allclose(queue_order.xy[:, 0], [people[0][0], people[2][0]], atol=1e-4)
    poses = multi(scene, max_poses=2)
    np.testing.assert_allclose(poses.xy[0], people[1], atol=1e-4)
    assert poses.pose_scores[0] == pytest.approx(float(decode.sigmoid(np.float32(2.0))))
    np.testing.assert_allclose(poses.xy[1, 0], people[0][0], atol=1e-4)  # the better of the other two
    assert poses.pose_scores[1] < poses.pose_scores[0]


def test_a_longer_decode_starts_with_the_poses_of_a_shorter_one():
    """A pose's score depends only on the poses before it: decoding more changes none of them."""
    scene = Scene()
    for x, columns, peak in ((60, slice(0, 8), 2.0), (180, slice(8, 16), 5.0), (300, slice(16, None), 3.0)):
        scene.add_person(skeleton(x, 30), columns, peak)
    _second_nose_root(scene, skeleton(180, 30), offset_to_truth=False)
    args = dict(min_part_score=0.5, nms_radius=20.0)
    longer = decode.decode_in_root_order(scene.outputs(), limit=64, **args)
    for limit in range(1, len(longer) + 1):
        shorter = decode.decode_in_root_order(scene.outputs(), limit=limit, **args)
        np.testing.assert_array_equal(shorter.xy, longer.xy[:limit])
        np.testing.assert_array_equal(shorter.pose_scores, longer.pose_scores[:limit])


def _second_nose_root(scene: Scene, truth: np.ndarray, offset_to_truth: bool) -> None:
    """A weaker, separate nose maximum two cells right of the true nose."""
    cy, cx = cell_of(truth[0])
    scene.heatmaps[cy, cx + 2, 0] = PEAK - 1
    if not offset_to_truth:  # its root lands on the cell column, 28 px from the nose
        scene.offsets[cy, cx + 2, 0] = truth[0, 1] - cy * STRIDE
        scene.offsets[cy, cx + 2, NUM_PARTS] = 0.0


def test_root_within_nms_radius_of_same_part_is_skipped():
    truth = skeleton(100, 40)
    scene = Scene()
    scene.add_person(truth, slice(None))
    _second_nose_root(scene, truth, offset_to_truth=True)
    assert len(multi(scene)) == 1


def test_root_outside_nms_radius_starts_a_new_pose_scored_by_unclaimed_parts():
    truth = skeleton(100, 40)
    scene = Scene()
    scene.add_person(truth, slice(None))
    _second_nose_root(scene, truth, offset_to_truth=False)
    poses = multi(scene, nms_radius=20.0)
    assert len(poses) == 2
    # The walk from the second root reaches the same person: only its root is unclaimed.
    np.testing.assert_allclose(poses.xy[1, 1:], truth[1:], atol=1e-4)
    assert poses.pose_scores[1] == pytest.approx(poses.scores[1, 0] / NUM_PARTS)
    # A radius covering the gap suppresses it (the boundary is inclusive).
    gap = float(np.hypot(*(poses.xy[1, 0] - truth[0])))
    assert len(multi(scene, nms_radius=gap)) == 1


def test_peak_at_image_corner_is_a_candidate_and_decodes():
    truth = skeleton(100, 40)
    truth[PART_IDS["rightEar"]] = (-3.0, -2.0)  # cell (0, 0), just outside the input
    scene = Scene()
    scene.add_person(truth, slice(None))
    candidates = decode.local_maxima(decode.sigmoid(scene.heatmaps), 0.5)
    assert [0, 0, PART_IDS["rightEar"]] in candidates.tolist()
    poses = multi(scene)
    np.testing.assert_allclose(poses.xy[0], truth, atol=1e-4)


def test_local_maxima_counts_ties_and_clips_window_at_border():
    scores = np.zeros((4, 5, 1), np.float32)
    scores[0, 0, 0] = 0.9  # corner
    scores[2, 3, 0] = scores[2, 4, 0] = 0.7  # plateau on the right edge: both count
    scores[3, 3, 0] = 0.6  # beaten by its neighbour
    found = decode.local_maxima(scores, 0.5).tolist()
    assert found == [[0, 0, 0], [2, 3, 0], [2, 4, 0]]


def test_min_part_score_is_inclusive():
    truth = skeleton(100, 40)
    scene = Scene()
    scene.add_person(truth, slice(None), peak=0.3)
    score = float(decode.sigmoid(np.float32(0.3)))
    assert len(multi(scene, min_part_score=score)) == 1
    assert len(multi(scene, min_part_score=np.nextafter(np.float32(score), np.float32(1)))) == 0


def test_strided_index_rounds_halves_up_and_clamps_to_grid():
    assert decode._strided(8.0, 16, 10) == 1  # Math.round(0.5) == 1
    assert decode._strided(-8.0, 16, 10) == 0  # Math.round(-0.5) == -0
    assert decode._strided(-40.0, 16, 10) == 0
    assert decode._strided(1000.0, 16, 10) == 9


def test_displacement_leaving_the_grid_is_clamped_then_refined():
    truth = skeleton(100, 40)
    scene = Scene()
    scene.add_person(truth, slice(None))
    # Only the nose is a candidate; nose -> leftEye now points 200 px above the input.
    scene.heatmaps[:, :, 1:] = LOW
    scene.fwd[:, :, 0] = -200.0
    poses = multi(scene)
    # The clamped cell (row 0) holds an offset to the true eye.
    np.testing.assert_allclose(poses.xy[0, PART_IDS["leftEye"]], truth[PART_IDS["leftEye"]], atol=1e-4)


def test_no_candidate_gives_no_pose():
    assert len(multi(Scene())) == 0


def test_single_pose_is_argmax_plus_offset():
    scene = Scene()
    rng = np.random.default_rng(1)
    scene.heatmaps[:] = rng.normal(-3, 1, scene.heatmaps.shape)
    scene.offsets[:] = rng.normal(0, 4, scene.offsets.shape)
    poses = decode.decode_single(scene.outputs())
    scores = decode.sigmoid(scene.heatmaps)
    assert len(poses) == 1
    for k in range(NUM_PARTS):
        y, x = np.unravel_index(np.argmax(scores[:, :, k]), (GRID_H, GRID_W))
        want = (x * STRIDE + scene.offsets[y, x, k + NUM_PARTS], y * STRIDE + scene.offsets[y, x, k])
        np.testing.assert_allclose(poses.xy[0, k], want, atol=1e-4)
        assert poses.scores[0, k] == scores[y, x, k]
    assert poses.pose_scores[0] == pytest.approx(scores.max(axis=(0, 1)).mean())


def test_decode_uses_single_pose_when_max_poses_is_one():
    truth = skeleton(100, 40)
    scene = Scene()
    scene.add_person(truth, slice(None))
    single = decode.decode(scene.outputs(), max_poses=1, min_part_score=0.99, nms_radius=20.0)
    np.testing.assert_array_equal(single.xy, decode.decode_single(scene.outputs()).xy)


def test_rejects_non_positive_nms_radius():
    with pytest.raises(ValueError):
        multi(Scene(), nms_radius=0.0)


def test_sigmoid_saturates_without_warnings():
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(decode.sigmoid(np.float32([-200, 0, 200])), np.float32([0, 0.5, 1]))


def test_skateboarder_of_the_demo_photo_is_kept_over_two_spectators():
    """The bundled photo 129648 at PoseNet's defaults (max_poses 5): the skateboarder (pose score
    about 0.42, the 8th root in TF.js's queue) is kept and two spectators scoring about
    0.24 are not; whatever is kept outscores whatever was dropped."""
    from edgepose.config import load_config
    from edgepose.errors import EdgePoseError
    from edgepose.estimators import open_estimator
    from edgepose.images import read_rgb
    from edgepose.sources import demo_dir

    photo = read_rgb(demo_dir() / "000000129648.jpg")
    try:
        posenet = {"model.name": "posenet-mnv1-075"}
        kept = open_estimator(*_model_and_decode(load_config(None, posenet))).estimate_still(photo)
        everyone = open_estimator(*_model_and_decode(load_config(None, {
            **posenet, "decode.max_poses": 20, "tracking.max_tracks": 20}))).estimate_still(photo)
    except EdgePoseError as exc:  # no TF Lite runtime here
        pytest.skip(str(exc))
    assert len(kept) == 5 and len(everyone) > 5
    assert kept.pose_scores.min() > np.sort(everyone.pose_scores)[::-1][5:].max()

    def on_the_skateboarder(poses) -> np.ndarray:
        """Poses whose keypoints found lie on the skateboarder (x 60-260, y 130-330 of 640x427)."""
        found = poses.scores >= 0.5
        centre = (poses.xy * found[..., None]).sum(axis=1) / np.maximum(found.sum(axis=1), 1)[:, None]
        return (centre[:, 0] > 60) & (centre[:, 0] < 260) & (centre[:, 1] > 130) & (centre[:, 1] < 330)

    skater = on_the_skateboarder(kept)
    assert skater.sum() == 1 and 0.35 < kept.pose_scores[skater][0] < 0.5
    assert (np.abs(everyone.pose_scores - 0.24) < 0.01).sum() == 2, "the two spectators are still found"
    assert not (np.abs(kept.pose_scores - 0.24) < 0.01).any(), "and dropped for the skateboarder"


def _model_and_decode(config):
    return config.model, config.decode
