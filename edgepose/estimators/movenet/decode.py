"""MoveNet outputs to `Poses`, and MultiPose's resize and pad (pure numpy).

The decoding of heatmaps into keypoints happens inside the models (it is part
of Google's graphs); what is left is the geometry back to frame pixels and the
pose scores, as TF.js pose-detection 2.1.3 computes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...constants import NUM_PARTS
from ...core import Poses
from .constants import (
    MIN_CROP_KEYPOINT_SCORE,
    MULTIPOSE_BOX_INDEX,
    MULTIPOSE_DIVISOR,
    MULTIPOSE_INSTANCE_SIZE,
    MULTIPOSE_SCORE_INDEX,
)
from .crop import CropRegion


def singlepose_score(scores: np.ndarray) -> float:
    """Mean of the keypoint scores above MIN_CROP_KEYPOINT_SCORE (0 when none is)."""
    keep = scores[scores > MIN_CROP_KEYPOINT_SCORE]
    return float(keep.astype(np.float64).mean()) if keep.size else 0.0


def singlepose_to_poses(output: np.ndarray, region: CropRegion, frame_w: int, frame_h: int) -> Poses:
    """(1, 17, 3) or (17, 3) y, x, score in 0..1 of the crop -> one pose in frame pixels
    (no score filter here: the estimator decides)."""
    kp = np.asarray(output, np.float32).reshape(NUM_PARTS, 3)
    xy = region.to_frame(kp[:, :2], frame_w, frame_h)
    scores = kp[:, 2].copy()
    return Poses(
        xy=xy[None].astype(np.float32),
        scores=scores[None],
        pose_scores=np.array([singlepose_score(scores)], np.float32),
    )


@dataclass(frozen=True, slots=True)
class MultiPoseInput:
    """Where the frame sits in the MultiPose input: resized to (resized_w,
    resized_h), zero-padded at the right and bottom to (padded_w, padded_h)."""

    resized_w: int
    resized_h: int
    padded_w: int
    padded_h: int

    @property
    def size(self) -> tuple[int, int]:
        return self.padded_w, self.padded_h


def multipose_input(frame_w: int, frame_h: int, long_side: int) -> MultiPoseInput:
    """TF.js's rule: the long side becomes `long_side`, the short side is rounded
    (half up, as Math.round), then padded up to a multiple of 32."""
    if long_side <= 0 or long_side % MULTIPOSE_DIVISOR:
        raise ValueError(f"MultiPose long side {long_side} must be a positive multiple of {MULTIPOSE_DIVISOR}")
    if frame_w > frame_h:
        rw, rh = long_side, int(math.floor(long_side * frame_h / frame_w + 0.5))
    else:
        rw, rh = int(math.floor(long_side * frame_w / frame_h + 0.5)), long_side
    rw, rh = max(rw, 1), max(rh, 1)
    pad = lambda v: int(math.ceil(v / MULTIPOSE_DIVISOR)) * MULTIPOSE_DIVISOR  # noqa: E731
    return MultiPoseInput(rw, rh, pad(rw), pad(rh))


def resize_bilinear(rgb: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(out_h, out_w, 3) float32: TF's resize_bilinear with align_corners and
    half_pixel_centers both false (source = dest * in / out), float32 arithmetic."""
    f32 = np.float32
    hgt, wid = rgb.shape[:2]

    def axis(n_out: int, n_in: int):
        src = np.arange(n_out, dtype=f32) * f32(f32(n_in) / f32(n_out))
        lo = np.floor(src)
        hi = np.minimum(np.ceil(src), n_in - 1)
        return lo.astype(np.intp), hi.astype(np.intp), (src - lo).astype(f32)

    t, b, yl = axis(out_h, hgt)
    left, right, xl = axis(out_w, wid)
    rows_t, rows_b = rgb[t].astype(f32), rgb[b].astype(f32)
    xl = xl[None, :, None]
    top = rows_t[:, left] + (rows_t[:, right] - rows_t[:, left]) * xl
    bottom = rows_b[:, left] + (rows_b[:, right] - rows_b[:, left]) * xl
    return top + (bottom - top) * yl[:, None, None]


def multipose_pixels(rgb: np.ndarray, plan: MultiPoseInput) -> np.ndarray:
    """(padded_h, padded_w, 3) uint8: the frame resized, truncated to integers as
    TF.js's cast to int32 does, zero-padded at the right and bottom."""
    out = np.zeros((plan.padded_h, plan.padded_w, 3), np.uint8)
    if (plan.resized_h, plan.resized_w) == rgb.shape[:2]:
        out[: plan.resized_h, : plan.resized_w] = rgb
    else:
        resized = resize_bilinear(rgb, plan.resized_h, plan.resized_w)
        out[: plan.resized_h, : plan.resized_w] = resized.astype(np.int32).clip(0, 255).astype(np.uint8)
    return out


def multipose_to_poses(output: np.ndarray, plan: MultiPoseInput, frame_w: int, frame_h: int,
                       min_pose_score: float) -> Poses:
    """(6, 56) model rows -> the instances scoring >= min_pose_score, in frame pixels,
    with boxes (x0, y0, x1, y1 clipped to the frame), in the model's order.

    Keypoints and boxes are in 0..1 of the padded input: times padded/resized
    gives 0..1 of the frame. (TF.js rescales the keypoints but passes the boxes
    on in padded coordinates; edgepose rescales both.)
    """
    rows = np.asarray(output, np.float32).reshape(-1, MULTIPOSE_INSTANCE_SIZE)
    rows = rows[rows[:, MULTIPOSE_SCORE_INDEX] >= min_pose_score]
    n = rows.shape[0]
    if n == 0:
        return Poses.empty().replace(boxes=np.zeros((0, 4), np.float32))
    sy = plan.padded_h / plan.resized_h * frame_h
    sx = plan.padded_w / plan.resized_w * frame_w
    kp = rows[:, :MULTIPOSE_BOX_INDEX].reshape(n, NUM_PARTS, 3).astype(np.float64)
    xy = np.stack([kp[..., 1] * sx, kp[..., 0] * sy], axis=-1)
    box = rows[:, MULTIPOSE_BOX_INDEX:MULTIPOSE_SCORE_INDEX].astype(np.float64)
    boxes = np.stack([box[:, 1] * sx, box[:, 0] * sy, box[:, 3] * sx, box[:, 2] * sy], axis=-1)
    boxes = np.clip(boxes, 0, [frame_w, frame_h, frame_w, frame_h])
    return Poses(
        xy=xy.astype(np.float32),
        scores=kp[..., 2].astype(np.float32),
        pose_scores=rows[:, MULTIPOSE_SCORE_INDEX].astype(np.float32),
        boxes=boxes.astype(np.float32),
    )
