"""PoseNet outputs to Poses in model-input pixels (pure numpy).

Decoding follows TensorFlow.js pose-detection 2.1.3's PoseNet decoders, so
edgepose and the TF.js reference find the same people at the same places:

* single pose: per part, the heatmap argmax plus its offset; pose score is the
  mean keypoint score;
* multiple poses: every part's local maxima (3x3 window clipped at the border,
  ties count as maxima) scoring >= min_part_score go into one queue, best
  first; a root within nms_radius of the same part of an earlier pose is
  skipped; the rest of the pose is found by walking the part tree backwards,
  then forwards, each step following a displacement and refining twice with
  the target part's offset; a pose scores the sum of its keypoint scores not
  within nms_radius of the same keypoint of an earlier pose, divided by 17.
  TF.js stops after max_poses roots; here up to MAX_DECODED_POSES are decoded
  and the max_poses highest-scoring are kept, so a person whose root keypoint
  is weak but whose pose is strong (the skateboarder of the demo photo, behind
  two spectators) is not lost to the first roots in queue order.
  No pose is dropped for its score here: that is postprocess's job.

PoseNet's (y, x) becomes (x, y) here, once. Walk arithmetic is done in Python
floats (double), as TF.js does in JavaScript numbers.
"""

from __future__ import annotations

import math

import numpy as np

from ...constants import NUM_PARTS
from ...core import Poses
from ..postprocess import best_poses
from .constants import LOCAL_MAXIMUM_RADIUS, NUM_EDGES, OFFSET_REFINE_STEPS, POSE_CHAIN_IDS
from .outputs import PoseNetOutputs

#: Poses decoded before the best max_poses are chosen: more than a scene a camera
#: node watches holds, and a bound on the work a noisy heatmap can cause.
MAX_DECODED_POSES = 64


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Heatmap logits -> part scores 0..1, float32."""
    x = np.asarray(logits, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):  # saturates to exactly 0 or 1
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def decode(
    outputs: PoseNetOutputs, *, max_poses: int, min_part_score: float, nms_radius: float
) -> Poses:
    """One pose via argmax when max_poses == 1 (as TF.js does), else multi-pose decoding."""
    if max_poses < 1:
        raise ValueError(f"max_poses must be >= 1, got {max_poses}")
    if max_poses == 1:
        return decode_single(outputs)
    return decode_multiple(
        outputs, max_poses=max_poses, min_part_score=min_part_score, nms_radius=nms_radius
    )


def decode_single(outputs: PoseNetOutputs) -> Poses:
    """The one best position of every part: (1, 17, 2) model-input pixels."""
    scores = sigmoid(outputs.heatmaps)
    h, w, k = scores.shape
    best = scores.reshape(h * w, k).argmax(axis=0)  # first maximum, like tf.argMax
    ys, xs = np.divmod(best, w)
    parts = np.arange(k)
    stride = outputs.output_stride
    y = ys * stride + outputs.offsets[ys, xs, parts].astype(np.float64)
    x = xs * stride + outputs.offsets[ys, xs, parts + k].astype(np.float64)
    part_scores = scores[ys, xs, parts]
    return Poses(
        xy=np.stack([x, y], axis=-1)[None].astype(np.float32),
        scores=part_scores[None].astype(np.float32),
        pose_scores=np.array([part_scores.astype(np.float64).mean()], np.float32),
    )


def local_maxima(scores: np.ndarray, min_score: float, radius: int = LOCAL_MAXIMUM_RADIUS) -> np.ndarray:
    """(M, 3) int (y, x, part) of scores >= min_score that no neighbour exceeds.

    scores: (h, w, parts). The window is (2 * radius + 1) squared, clipped at
    the border; an equal neighbour does not disqualify. Rows are in (y, x,
    part) raster order.
    """
    h, w, _ = scores.shape
    padded = np.pad(scores, ((radius, radius), (radius, radius), (0, 0)), constant_values=-np.inf)
    window = np.full_like(scores, -np.inf)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            np.maximum(window, padded[dy : dy + h, dx : dx + w], out=window)
    return np.argwhere((scores >= min_score) & (scores >= window))


def _strided(value: float, stride: int, size: int) -> int:
    """Nearest output cell of a model-input coordinate, clamped to the grid.

    JavaScript's Math.round (halves go up), not Python's round (halves to even).
    """
    i = math.floor(value / stride + 0.5)
    return 0 if i < 0 else (size - 1 if i > size - 1 else i)


#: The tree walk as (edge, source part, target part, use forward displacements):
#: children to parents for the edges in reverse order, then parents to children.
_WALK: tuple[tuple[int, int, int, bool], ...] = tuple(
    (edge, child, parent, False) for edge, (parent, child) in reversed(list(enumerate(POSE_CHAIN_IDS)))
) + tuple((edge, parent, child, True) for edge, (parent, child) in enumerate(POSE_CHAIN_IDS))


class _Maps:
    """The output maps, read one scalar at a time (ndarray.item) by the walk."""

    def __init__(self, outputs: PoseNetOutputs, scores: np.ndarray) -> None:
        self.height, self.width = scores.shape[:2]
        self.stride = outputs.output_stride
        self.scores = scores
        self.offsets = np.asarray(outputs.offsets, np.float32)
        self.fwd = np.asarray(outputs.displacements_fwd, np.float32)
        self.bwd = np.asarray(outputs.displacements_bwd, np.float32)

    def point(self, y: int, x: int, part: int) -> tuple[float, float]:
        """(y, x) model-input pixels of `part` anchored at cell (y, x)."""
        item = self.offsets.item
        return y * self.stride + item(y, x, part), x * self.stride + item(y, x, part + NUM_PARTS)

    def follow(
        self, edge: int, source: tuple[float, float], target: int, forward: bool
    ) -> tuple[float, float, float]:
        """(y, x, score) of `target`, reached from the source point along `edge`."""
        h, w, s = self.height, self.width, self.stride
        sy, sx = source
        item = (self.fwd if forward else self.bwd).item
        iy, ix = _strided(sy, s, h), _strided(sx, s, w)
        ty, tx = sy + item(iy, ix, edge), sx + item(iy, ix, edge + NUM_EDGES)
        for _ in range(OFFSET_REFINE_STEPS):
            iy, ix = _strided(ty, s, h), _strided(tx, s, w)
            ty, tx = self.point(iy, ix, target)
        iy, ix = _strided(ty, s, h), _strided(tx, s, w)
        return ty, tx, self.scores.item(iy, ix, target)


def _walk(maps: _Maps, root_y: int, root_x: int, root_part: int, root_score: float) -> tuple[list, list]:
    """Decode one pose from its root: 17 (y, x) points and 17 scores."""
    points: list = [None] * NUM_PARTS
    scores = [0.0] * NUM_PARTS
    points[root_part] = maps.point(root_y, root_x, root_part)
    scores[root_part] = root_score
    for edge, source, target, forward in _WALK:
        if points[source] is not None and points[target] is None:
            ty, tx, score = maps.follow(edge, points[source], target, forward)
            points[target] = (ty, tx)
            scores[target] = score
    return points, scores


def _near_earlier(poses: list[list], part: int, y: float, x: float, squared_radius: float) -> bool:
    """Whether any earlier pose has `part` within the NMS radius (inclusive) of (y, x)."""
    for points in poses:
        py, px = points[part]
        if (py - y) * (py - y) + (px - x) * (px - x) <= squared_radius:
            return True
    return False


def decode_multiple(
    outputs: PoseNetOutputs, *, max_poses: int, min_part_score: float, nms_radius: float
) -> Poses:
    """The max_poses highest-scoring people, best first: (N, 17, 2) model-input pixels.

    Up to MAX_DECODED_POSES are decoded (`decode_in_root_order`), then the best
    are kept; equal pose scores keep root order.
    """
    decoded = decode_in_root_order(outputs, limit=max(max_poses, MAX_DECODED_POSES),
                                   min_part_score=min_part_score, nms_radius=nms_radius)
    return best_poses(decoded, max_poses)


def decode_in_root_order(
    outputs: PoseNetOutputs, *, limit: int, min_part_score: float, nms_radius: float
) -> Poses:
    """The first `limit` poses in decreasing root score, as TF.js decodes them.

    Candidate roots with equal scores are taken in (y, x, part) raster order.
    A pose's score depends only on the poses before it, so the first poses of a
    longer decode are those of a shorter one.
    """
    if nms_radius <= 0:
        raise ValueError(f"nms_radius must be > 0, got {nms_radius}")
    scores = sigmoid(outputs.heatmaps)
    candidates = local_maxima(scores, min_part_score)
    if len(candidates) == 0:
        return Poses.empty()
    cy, cx, cp = candidates.T
    candidate_scores = scores[cy, cx, cp]
    order = np.argsort(-candidate_scores, kind="stable")

    maps = _Maps(outputs, scores)
    squared_radius = float(nms_radius) * float(nms_radius)
    poses: list[list] = []
    pose_keypoint_scores: list[list] = []
    pose_scores: list[float] = []
    for i in order.tolist():
        if len(poses) >= limit:
            break
        y, x, part = int(cy[i]), int(cx[i]), int(cp[i])
        root_y, root_x = maps.point(y, x, part)
        if _near_earlier(poses, part, root_y, root_x, squared_radius):
            continue
        points, keypoint_scores = _walk(maps, y, x, part, float(candidate_scores[i]))
        unclaimed = sum(
            score
            for k, (score, (py, px)) in enumerate(zip(keypoint_scores, points))
            if not _near_earlier(poses, k, py, px, squared_radius)
        )
        poses.append(points)
        pose_keypoint_scores.append(keypoint_scores)
        pose_scores.append(unclaimed / NUM_PARTS)

    if not poses:
        return Poses.empty()
    yx = np.asarray(poses, dtype=np.float64)  # (N, 17, 2), y first
    return Poses(
        xy=yx[..., ::-1].astype(np.float32),
        scores=np.asarray(pose_keypoint_scores, dtype=np.float32),
        pose_scores=np.asarray(pose_scores, dtype=np.float32),
    )
