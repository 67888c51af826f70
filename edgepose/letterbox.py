"""Frame to model input and back, keeping the aspect ratio (pure numpy).

Aspect ratio: the whole frame is scaled by one factor so that it fits the model
input, and centred; the strips left over (top and bottom for a frame wider than
the input, left and right for a taller one) repeat the frame's edge pixels.
PoseNet never sees a stretched person, and a keypoint maps back to the frame
with one scale and one offset: ``frame = input * scale + offset``.

Resampling is what TensorFlow.js pose-detection 2.1.3 does (PoseNet's
``convertImageToTensor``: the ROI padded to the input's aspect ratio, then
``tf.image.transform`` with fill mode "nearest" and bilinear interpolation):

* output pixel i samples the frame at ``i * scale + offset`` (pixel centres at
  integer coordinates, no half-pixel shift), ``offset = (W - scale * w) / 2``,
  negative on the padded axis; transform coefficients and coordinates are
  float32, as in the kernel;
* the coordinate is clamped to ``[0, W - 1]`` (edge replication), then
  ``x0 = floor(x)``, weights ``(x0 + 1 - x, x - x0)``; x is interpolated first,
  then y, in float32 and in that order, as tfjs-backend-wasm's ``Transform``
  kernel does, followed by ``shiftImageValue``'s ``* (2/255) - 1``;
* a float model gets ``value * slope + lut[0]`` with the slope taken from the
  LUT's end points, unrounded. An integer model gets the interpolated value
  rounded to 8 bits, then looked up in the LUT: TF.js has no integer path, and
  the rounding costs at most half a grey level.

What differs from TF.js: nothing in the arithmetic (same float32 operations in
the same order). Pixels sampled with weight 0 past the right or bottom edge are
read from the last row or column instead of TF's fill value 0, which multiplies
out to the same 0. On the 34 dev photos at 385x385 every keypoint lands within
0.0003 px of the TF.js reference (tests/unit/test_reference_agreement.py).
Variants tried on the same photos: interpolating rows first (the textbook
separable order) changes nothing that matters (within 0.0002 px); rounding the
interpolated values to 8 bits before scaling, as an 8-bit resize would, makes
3 of 34 photos decode differently (2.3% of confident keypoints off by more than
2 px, OKS AP 0.181 instead of 0.185), so float models get unrounded values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: Plans and sampling tables kept per (frame size, input size); a daemon sees few.
_CACHE_SIZE = 16


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where the model input sits in the frame."""

    scale: float  # frame pixels per input pixel
    offset_x: float  # frame x of input x = 0; negative when the sides are padded
    offset_y: float  # frame y of input y = 0; negative when top and bottom are padded
    input_width: int
    input_height: int
    frame_width: int
    frame_height: int

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) input pixels, x first -> (..., 2) frame pixels (float32)."""
        xy = np.asarray(xy, dtype=np.float64)
        out = xy * self.scale + np.array([self.offset_x, self.offset_y])
        return out.astype(np.float32)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) frame pixels, x first -> (..., 2) input pixels (float32)."""
        xy = np.asarray(xy, dtype=np.float64)
        out = (xy - np.array([self.offset_x, self.offset_y])) / self.scale
        return out.astype(np.float32)


def _coefficients(frame_w: int, frame_h: int, input_w: int, input_h: int) -> tuple[float, float, float, float]:
    """(scale x, offset x, scale y, offset y): TF.js's padRoi and projective matrix,
    the same operations in double, so the float32 coefficients match too."""
    input_aspect = input_h / input_w
    frame_aspect = frame_h / frame_w
    if input_aspect > frame_aspect:  # pad top and bottom
        roi_w, roi_h = float(frame_w), frame_w * input_aspect
    else:  # pad left and right
        roi_w, roi_h = frame_h / input_aspect, float(frame_h)
    return (
        (1.0 / input_w) * (roi_w * (1.0 / frame_w)) * frame_w,
        ((-0.5 * roi_w + 0.5 * frame_w) * (1.0 / frame_w)) * frame_w,
        (1.0 / input_h) * (roi_h * (1.0 / frame_h)) * frame_h,
        ((-0.5 * roi_h + 0.5 * frame_h) * (1.0 / frame_h)) * frame_h,
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def plan(frame_w: int, frame_h: int, input_w: int, input_h: int) -> Letterbox:
    """The letterbox TF.js uses for a frame of this size and this model input."""
    if min(frame_w, frame_h, input_w, input_h) <= 0:
        raise ValueError(
            f"sizes must be positive: frame {frame_w}x{frame_h}, input {input_w}x{input_h}"
        )
    scale, offset_x, _, offset_y = _coefficients(frame_w, frame_h, input_w, input_h)
    return Letterbox(
        scale=scale,
        offset_x=offset_x,
        offset_y=offset_y,
        input_width=int(input_w),
        input_height=int(input_h),
        frame_width=int(frame_w),
        frame_height=int(frame_h),
    )


@dataclass(frozen=True, slots=True)
class _Axis:
    """Bilinear taps along one axis: sample i = w0[i] * p[i0[i]] + w1[i] * p[i1[i]]."""

    i0: np.ndarray  # (n,) intp
    i1: np.ndarray  # (n,) intp, clipped to the last pixel where its weight is 0
    w0: np.ndarray  # (n,) float32
    w1: np.ndarray  # (n,) float32


def _axis(n_out: int, n_in: int, scale: float, offset: float) -> _Axis:
    """Sample coordinates as the wasm Transform kernel computes them, in float32."""
    coord = np.float32(scale) * np.arange(n_out, dtype=np.float32) + np.float32(offset)
    coord = np.clip(coord, np.float32(0), np.float32(n_in - 1))
    lo = np.floor(coord)
    hi = lo + np.float32(1)
    i0 = lo.astype(np.intp)
    return _Axis(
        i0=i0,
        i1=np.minimum(i0 + 1, n_in - 1),
        w0=(hi - coord).astype(np.float32),
        w1=(coord - lo).astype(np.float32),
    )


@dataclass(frozen=True, slots=True)
class _Sampling:
    """Everything letterbox_into precomputes for one Letterbox."""

    flat: np.ndarray  # (4, h, w) intp: flat pixel index of the y0x0, y0x1, y1x0, y1x1 taps
    wx0: np.ndarray  # (1, w, 1) float32
    wx1: np.ndarray
    wy0: np.ndarray  # (h, 1, 1) float32
    wy1: np.ndarray


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _sampling(box: Letterbox) -> _Sampling:
    # TF.js computes the y scale on its own; it equals the x scale up to the last bit.
    sx, ox, sy, oy = _coefficients(box.frame_width, box.frame_height, box.input_width, box.input_height)
    ax = _axis(box.input_width, box.frame_width, sx, ox)
    ay = _axis(box.input_height, box.frame_height, sy, oy)
    rows0 = ay.i0[:, None] * box.frame_width
    rows1 = ay.i1[:, None] * box.frame_width
    flat = np.stack(
        [rows0 + ax.i0[None, :], rows0 + ax.i1[None, :], rows1 + ax.i0[None, :], rows1 + ax.i1[None, :]]
    )
    return _Sampling(
        flat=flat,
        wx0=ax.w0[None, :, None],
        wx1=ax.w1[None, :, None],
        wy0=ay.w0[:, None, None],
        wy1=ay.w1[:, None, None],
    )


def sample(rgb: np.ndarray, box: Letterbox) -> np.ndarray:
    """(h, w, 3) float32 0..255: the frame resampled into the model input, unscaled."""
    if rgb.shape != (box.frame_height, box.frame_width, 3):
        raise ValueError(
            f"frame shape {rgb.shape} does not match the letterbox "
            f"({box.frame_height}, {box.frame_width}, 3)"
        )
    s = _sampling(box)
    pixels = np.ascontiguousarray(rgb).reshape(-1, 3)
    taps = pixels.take(s.flat, axis=0).astype(np.float32)  # (4, h, w, 3)
    # TF's order: along x on both rows, then along y.
    top = taps[0]
    top *= s.wx0
    taps[1] *= s.wx1
    top += taps[1]
    bottom = taps[2]
    bottom *= s.wx0
    taps[3] *= s.wx1
    bottom += taps[3]
    top *= s.wy0
    bottom *= s.wy1
    top += bottom
    return top


def letterbox_into(rgb: np.ndarray, box: Letterbox, out: np.ndarray, lut: np.ndarray) -> None:
    """Write the frame, letterboxed and value-mapped, into the model's input.

    rgb: (H, W, 3) uint8 frame; out: (h, w, 3) float32 or uint8/int8 input view,
    written in place; lut: (256,) value to store for 8-bit pixel value p.
    """
    if out.shape != (box.input_height, box.input_width, 3):
        raise ValueError(
            f"input view shape {out.shape} does not match the letterbox "
            f"({box.input_height}, {box.input_width}, 3)"
        )
    values = sample(rgb, box)
    if np.issubdtype(out.dtype, np.floating):
        lo = np.float32(lut[0])
        slope = np.float32((float(lut[-1]) - float(lut[0])) / (len(lut) - 1))
        np.multiply(values, slope, out=out)  # TF.js: tf.mul then tf.add, in float32
        out += lo
    else:
        values += np.float32(0.5)
        index = values.astype(np.uint8)  # floor(v + 0.5): values are in 0..255
        np.take(np.asarray(lut, dtype=out.dtype), index, out=out)
