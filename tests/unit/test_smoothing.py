"""smoothing.py: the One Euro filter takes jitter out of still keypoints and barely lags moving ones."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.config import SmoothingConfig
from edgepose.core import Poses
from edgepose.smoothing import OneEuro, Smoother

from .synthetic import CANONICAL, person, poses_of

W, H = 640, 480
FPS = 10.0


def tracked(xy, scores=None, tid=1) -> Poses:
    scores = np.full(17, 0.9) if scores is None else scores
    return poses_of((xy, scores)).replace(track_ids=np.array([tid]))


def run(smoother: Smoother, frames: list[np.ndarray]) -> np.ndarray:
    return np.array([smoother.process(tracked(f), k / FPS, W, H).xy[0] for k, f in enumerate(frames)], np.float64)


def test_still_jitter_is_cut_by_more_than_half_and_walking_lags_under_10_px():
    """The figure behind the default: 220 px person, 4 px keypoint noise, 10 fps,
    still for 4 s then walking at 0.3 frame widths a second."""
    rng = np.random.default_rng(0)
    truth, frames = [], []
    for k in range(80):
        t = k / FPS
        x = 200 + 0.3 * W * min(max(t - 4.0, 0.0), 4.0)
        xy, _ = person(CANONICAL.xy, 220, (x, 420))
        truth.append(xy)
        frames.append(xy + rng.normal(0, 4.0, xy.shape))
    truth, frames = np.array(truth), np.array(frames)
    out = run(Smoother(SmoothingConfig()), list(frames))
    still = slice(10, 40)
    raw_jitter = np.linalg.norm(np.diff(frames[still], axis=0), axis=-1).mean()
    smooth_jitter = np.linalg.norm(np.diff(out[still], axis=0), axis=-1).mean()
    assert smooth_jitter < 0.5 * raw_jitter
    walking = slice(50, 80)
    lag = -(out[walking, :, 0] - truth[walking, :, 0]).mean()
    assert 0 < lag < 10.0


def test_without_track_ids_or_when_disabled_poses_pass_through():
    poses = poses_of(person(CANONICAL.xy, 200, (320, 420)))
    assert Smoother(SmoothingConfig()).process(poses, 0.0, W, H) is poses
    off = Smoother(SmoothingConfig(enabled=False))
    t = tracked(poses.xy[0])
    assert off.process(t, 0.0, W, H) is t


def test_each_track_has_its_own_filter():
    sm = Smoother(SmoothingConfig())
    a = person(CANONICAL.xy, 200, (150, 420))[0]
    b = person(CANONICAL.xy, 200, (500, 420))[0]
    sm.process(tracked(a, tid=1), 0.0, W, H)
    out = sm.process(tracked(b, tid=2), 0.1, W, H)
    np.testing.assert_allclose(out.xy[0], b, atol=1e-3)  # a new track starts where it is


def test_a_keypoint_found_again_restarts_instead_of_being_dragged():
    sm = Smoother(SmoothingConfig())
    xy = person(CANONICAL.xy, 200, (320, 420))[0]
    scores = np.full(17, 0.9)
    sm.process(tracked(xy, scores), 0.0, W, H)
    lost = scores.copy()
    lost[9] = 0.0
    moved = xy.copy()
    moved[9] += 80  # the wrist is lost, then found far away
    out = sm.process(tracked(moved, lost), 0.1, W, H)
    assert out.xy[0, 9] == pytest.approx(moved[9].astype(np.float32))  # passed through while lost
    out = sm.process(tracked(moved, scores), 0.2, W, H)
    assert out.xy[0, 9] == pytest.approx(moved[9].astype(np.float32), abs=1e-3)


def test_a_long_gap_restarts_the_filter():
    f = OneEuro(0.5, 10.0, 1.0)
    f(np.array([0.1]), 0.0)
    assert f(np.array([0.9]), 5.0)[0] == pytest.approx(0.9)


def test_the_same_time_twice_changes_nothing():
    f = OneEuro(0.5, 10.0, 1.0)
    f(np.array([0.1]), 0.0)
    first = f(np.array([0.5]), 0.1)
    assert f(np.array([0.9]), 0.1)[0] == pytest.approx(first[0])
