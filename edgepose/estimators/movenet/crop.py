"""Single-pose MoveNet crop logic (pure numpy), as TF.js pose-detection 2.1.3 does it.

A single-pose model sees one square crop of the frame. After a reset the crop
is the centred square whose side is the frame's short side (TF.js's best guess
for a first frame). After each pass, the next crop is a square around the hip
centre, sized from the torso and the confident keypoints; when the torso is not
visible, or the square would be larger than the frame, it is the whole frame
padded to a square. Crop corners are low-pass filtered from frame to frame.

All regions are in normalised frame coordinates (0..1 of height and width);
sampling is TF's ``crop_and_resize`` (bilinear, extrapolation value 0) in
float32, then truncated to integers as TF.js's cast to int32 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...constants import PART_IDS
from .constants import BODY_EXPANSION, CROP_FILTER_ALPHA, MIN_CROP_KEYPOINT_SCORE, TORSO_EXPANSION

_L_SHOULDER, _R_SHOULDER = PART_IDS["leftShoulder"], PART_IDS["rightShoulder"]
_L_HIP, _R_HIP = PART_IDS["leftHip"], PART_IDS["rightHip"]
_TORSO = (_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP)


@dataclass(frozen=True, slots=True)
class CropRegion:
    """A crop in normalised frame coordinates; height/width as TF.js computes them."""

    y_min: float
    x_min: float
    y_max: float
    x_max: float
    height: float
    width: float

    @classmethod
    def from_corners(cls, y_min: float, x_min: float, y_max: float, x_max: float) -> "CropRegion":
        return cls(y_min, x_min, y_max, x_max, y_max - y_min, x_max - x_min)

    def to_frame(self, yx: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
        """(..., 2) y, x in 0..1 of the crop -> (..., 2) x, y frame pixels (float64)."""
        y = (self.y_min + yx[..., 0].astype(np.float64) * self.height) * frame_h
        x = (self.x_min + yx[..., 1].astype(np.float64) * self.width) * frame_w
        return np.stack([x, y], axis=-1)


def initial_crop(frame_w: int, frame_h: int, *, first_frame: bool) -> CropRegion:
    """TF.js's initCropRegion: the centred square of the short side (first frame),
    else the whole frame padded to a square (person lost)."""
    w, h = float(frame_w), float(frame_h)
    if first_frame == (w > h):
        # full height, width h: the centred square of a landscape frame, or a
        # portrait frame padded left and right
        box_h, box_w, y_min, x_min = 1.0, h / w, 0.0, (w / 2 - h / 2) / w
    else:
        box_h, box_w, y_min, x_min = w / h, 1.0, (h / 2 - w / 2) / h, 0.0
    return CropRegion(y_min, x_min, y_min + box_h, x_min + box_w, box_h, box_w)


def torso_visible(scores: np.ndarray) -> bool:
    """A hip and a shoulder both score above MIN_CROP_KEYPOINT_SCORE."""
    s = scores
    return bool(
        (s[_L_HIP] > MIN_CROP_KEYPOINT_SCORE or s[_R_HIP] > MIN_CROP_KEYPOINT_SCORE)
        and (s[_L_SHOULDER] > MIN_CROP_KEYPOINT_SCORE or s[_R_SHOULDER] > MIN_CROP_KEYPOINT_SCORE)
    )


def next_crop(xy: np.ndarray, scores: np.ndarray, frame_w: int, frame_h: int, *, had_crop: bool = True) -> CropRegion:
    """TF.js's determineNextCropRegion from one pose in frame pixels.

    xy: (17, 2) x, y frame pixels; scores: (17,). The square is centred on the
    hip midpoint; half its side is the largest of 1.9 x the torso's extent
    (all four torso joints, whatever their score) and 1.2 x the extent of the
    keypoints scoring at least MIN_CROP_KEYPOINT_SCORE, capped by the hip
    centre's largest distance to a frame edge. Falls back to initial_crop.
    """
    w, h = float(frame_w), float(frame_h)
    if not torso_visible(scores):
        return initial_crop(frame_w, frame_h, first_frame=not had_crop)
    xy = np.asarray(xy, np.float64)
    cy = (xy[_L_HIP, 1] + xy[_R_HIP, 1]) / 2
    cx = (xy[_L_HIP, 0] + xy[_R_HIP, 0]) / 2
    torso = np.array(_TORSO)
    torso_y = float(np.abs(cy - xy[torso, 1]).max())
    torso_x = float(np.abs(cx - xy[torso, 0]).max())
    body = np.asarray(scores) >= MIN_CROP_KEYPOINT_SCORE
    body_y = float(np.abs(cy - xy[body, 1]).max()) if body.any() else 0.0
    body_x = float(np.abs(cx - xy[body, 0]).max()) if body.any() else 0.0
    half = max(torso_x * TORSO_EXPANSION, torso_y * TORSO_EXPANSION, body_y * BODY_EXPANSION, body_x * BODY_EXPANSION)
    half = min(half, max(cx, w - cx, cy, h - cy))
    if half > max(w, h) / 2:
        return initial_crop(frame_w, frame_h, first_frame=not had_crop)
    y0, x0, side = cy - half, cx - half, half * 2
    y_min, x_min, y_max, x_max = y0 / h, x0 / w, (y0 + side) / h, (x0 + side) / w
    return CropRegion(y_min, x_min, y_max, x_max, y_max - y_min, x_max - x_min)


class CropFilter:
    """TF.js's low-pass filter on the four crop corners (alpha 0.9); the first
    value after a reset passes through unchanged."""

    def __init__(self, alpha: float = CROP_FILTER_ALPHA) -> None:
        self.alpha = alpha
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        self._last = None

    def apply(self, region: CropRegion) -> CropRegion:
        new = np.array([region.y_min, region.x_min, region.y_max, region.x_max], np.float64)
        if self._last is not None:
            new = self.alpha * new + (1 - self.alpha) * self._last
        self._last = new
        return CropRegion.from_corners(*(float(v) for v in new))


def crop_and_resize(rgb: np.ndarray, region: CropRegion, out_h: int, out_w: int) -> np.ndarray:
    """(out_h, out_w, 3) uint8: TF's crop_and_resize of the region (bilinear,
    extrapolation 0), float32 arithmetic as in the kernel, truncated to integers.

    Sample row i reads frame row ``y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (out_h - 1)``
    (the same for columns); a sample outside the frame is 0.
    """
    f32 = np.float32
    hgt, wid = rgb.shape[:2]
    box = np.array([region.y_min, region.x_min, region.y_max, region.x_max], np.float32)
    y1, x1, y2, x2 = box
    ys = _coords(y1, y2, hgt, out_h)
    xs = _coords(x1, x2, wid, out_w)
    y_ok = (ys >= 0) & (ys <= f32(hgt - 1))
    x_ok = (xs >= 0) & (xs <= f32(wid - 1))
    yc = np.where(y_ok, ys, f32(0))
    xc = np.where(x_ok, xs, f32(0))
    top, left = np.floor(yc), np.floor(xc)
    bottom, right = np.ceil(yc), np.ceil(xc)
    y_lerp = (yc - top).astype(f32)[:, None, None]
    x_lerp = (xc - left).astype(f32)[None, :, None]
    ti, bi = top.astype(np.intp), bottom.astype(np.intp)
    li, ri = left.astype(np.intp), right.astype(np.intp)
    rows_t = rgb[ti].astype(f32)
    rows_b = rgb[bi].astype(f32)
    tl, tr = rows_t[:, li], rows_t[:, ri]
    bl, br = rows_b[:, li], rows_b[:, ri]
    top_v = tl + (tr - tl) * x_lerp
    bottom_v = bl + (br - bl) * x_lerp
    out = top_v + (bottom_v - top_v) * y_lerp
    out[~y_ok] = 0
    out[:, ~x_ok] = 0
    return out.astype(np.int32).clip(0, 255).astype(np.uint8)


def _coords(a: np.float32, b: np.float32, size: int, n: int) -> np.ndarray:
    f32 = np.float32
    if n > 1:
        scale = f32((b - a) * f32(size - 1)) / f32(n - 1)
        return (a * f32(size - 1) + np.arange(n, dtype=f32) * f32(scale)).astype(f32)
    return np.full(1, f32(0.5) * (a + b) * f32(size - 1), f32)
