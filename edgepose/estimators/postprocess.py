"""Rules applied to decoded poses of any model (pure); each returns a new Poses and they compose."""

from __future__ import annotations

import numpy as np

from ..constants import NUM_PARTS, SEED_CLEANUP_MIN_SCORE
from ..core import Poses

__all__ = ["CLEANUPS", "best_poses", "filter_poses", "seed_cleanup", "seed_cleanup_single_person"]


def filter_poses(
    poses: Poses, *, min_pose_score: float = 0.0, min_keypoints: int = 0, min_part_score: float = 0.0
) -> Poses:
    """Only the poses scoring >= min_pose_score with >= min_keypoints keypoints scoring >= min_part_score."""
    keep = poses.pose_scores >= min_pose_score
    if min_keypoints > 0:
        keep &= (poses.scores >= min_part_score).sum(axis=1) >= min_keypoints
    return poses.select(keep)


def best_poses(poses: Poses, count: int) -> Poses:
    """The `count` highest-scoring poses, best first (a stable sort: ties keep their order)."""
    order = np.argsort(-poses.pose_scores, kind="stable")[:count]
    return poses.select(order)


def _best_per_part(
    parts: np.ndarray, xy: np.ndarray, scores: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """The early user's clean-up of a flat keypoint list, as one person.

    parts (M,), xy (M, 2), scores (M,): points scoring < min_score are dropped,
    exact duplicates (same part, same place) count once, and only the
    best-scoring point of each part is kept. Returns (17, 2) xy and (17,)
    scores; a part with no point left scores 0 and keeps its best position.
    """
    out_xy = np.zeros((NUM_PARTS, 2), np.float32)
    out_scores = np.zeros((NUM_PARTS,), np.float32)
    best = np.full((NUM_PARTS,), -np.inf)
    # Stable descending sort: on equal scores the first point wins, and an
    # exact duplicate can never replace its twin.
    for i in np.argsort(-scores, kind="stable"):
        part = int(parts[i])
        if scores[i] > best[part]:
            best[part] = scores[i]
            out_xy[part] = xy[i]
            out_scores[part] = scores[i] if scores[i] >= min_score else 0.0
    return out_xy, out_scores


def seed_cleanup(poses: Poses) -> Poses:
    """The early user's clean-up, applied to each pose on its own.

    Keypoints scoring < SEED_CLEANUP_MIN_SCORE get score 0 (hidden); a pose
    already holds one point per part, so "best point per part" and "no exact
    duplicates" hold by construction. The user wrote it for one person: run
    over everyone's keypoints at once it merges all people into one (that is
    seed_cleanup_single_person). Pose scores are the decoder's, unchanged.
    """
    scores = np.where(poses.scores >= SEED_CLEANUP_MIN_SCORE, poses.scores, 0).astype(np.float32)
    return poses.replace(xy=poses.xy.copy(), scores=scores, pose_scores=poses.pose_scores.copy())


def seed_cleanup_single_person(poses: Poses) -> Poses:
    """All poses merged into one person (N <= 1): the best point of each part.

    The mode the early clean-up was meant for (one person in view): every
    part's best-scoring point over all poses, hidden (score 0) when it scores
    < SEED_CLEANUP_MIN_SCORE. Pose score: the sum of the kept scores / 17.
    """
    if len(poses) == 0:
        return Poses.empty()
    n = len(poses)
    parts = np.tile(np.arange(NUM_PARTS), n)
    xy, scores = _best_per_part(
        parts, poses.xy.reshape(-1, 2), poses.scores.reshape(-1), SEED_CLEANUP_MIN_SCORE
    )
    pose_score = np.float32(scores.astype(np.float64).sum() / NUM_PARTS)
    return Poses(xy=xy[None], scores=scores[None], pose_scores=np.array([pose_score], np.float32))


#: Names accepted by the `cleanup` setting.
CLEANUPS = {
    "none": lambda poses: poses,
    "seed": seed_cleanup,
    "seed-single": seed_cleanup_single_person,
}
