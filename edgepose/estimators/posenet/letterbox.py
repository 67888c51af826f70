"""PoseNet's input: the frame to model input and back, keeping the aspect ratio (pure numpy).

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
read from elsewhere in the frame instead of TF's fill value 0, which multiplies
out to the same 0. On the 34 dev photos at 385x385 every keypoint lands within
0.0003 px of the TF.js reference (tests/unit/test_reference_agreement.py).
Float models get unrounded values: rounding to 8 bits first, as an 8-bit resize
would, made some dev photos decode differently (docs/performance-history.md).

Speed (this runs once per frame, as long as the model on a Pi did): the
interpolation is separable, so each frame row the input needs is interpolated
along x once (per band of BAND_ROWS input rows) and the input rows are then
interpolated along y from those rows; every sample still gets TF's own float32
products and sums, bit for bit. Work arrays are a band's size and reused,
indices are gathered byte by byte so that every arithmetic pass runs over whole
contiguous rows, an axis at scale 1 and an integer offset is copied, and the
int8 model's LUT (p -> p - (p >= 128)) is applied with two byte passes rather
than a table lookup. Integer models share the float arithmetic and get exactly
its rounding: a fixed-point path was a little faster but moved pixels by a grey
level (docs/performance-history.md).
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np

from ...core import Poses

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


def to_frame(poses: Poses, box: Letterbox, *, clip: bool = True) -> Poses:
    """Model-input pixels -> frame pixels; clipped to [0, W-1] x [0, H-1] unless clip=False.

    Clipping keeps every point usable as a pixel index (overlay, crops). PoseNet
    places some keypoints past the border; TF.js returns them unclipped.
    """
    xy = box.to_frame(poses.xy)
    boxes = None if poses.boxes is None else box.to_frame(poses.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    if clip:
        for points in (xy, boxes.reshape(-1, 2, 2) if boxes is not None else None):
            if points is not None:
                np.clip(points[..., 0], 0, box.frame_width - 1, out=points[..., 0])
                np.clip(points[..., 1], 0, box.frame_height - 1, out=points[..., 1])
    return poses.replace(xy=xy, scores=poses.scores.copy(), pose_scores=poses.pose_scores.copy(), boxes=boxes)


@dataclass(frozen=True, slots=True)
class _Axis:
    """Bilinear taps along one axis: sample i = w0[i] * p[i0[i]] + w1[i] * p[i1[i]]."""

    i0: np.ndarray  # (n,) intp
    i1: np.ndarray  # (n,) intp, clipped to the last pixel where its weight is 0
    w0: np.ndarray  # (n,) float32
    w1: np.ndarray  # (n,) float32

    @property
    def copies(self) -> bool:
        """Every sample is one whole pixel (weights 1 and 0), as at scale 1 and an integer offset."""
        return not self.w1.any()


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


class _Scratch:
    """The work arrays, reused from frame to frame, one set for the process.

    Fresh arrays cost allocations and page faults on every frame; these stay,
    sized for the largest letterbox seen, a band of BAND_ROWS input rows at a
    time (1.8 MB for 768x576 into an int8 481x353, 1.4 MB into a float one).
    One set behind a lock rather than one per thread: the daemon letterboxes on
    its capture thread (inputs made ahead) and, for the few frames not made
    ahead, on its inference thread; the two seldom overlap.
    Each call reuses what the last one returned, so `lock` is held for as long
    as a result is in use (`letterbox_into` holds it throughout).
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}
        self.lock = threading.RLock()

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """An uninitialised (shape) array of dtype, C-contiguous."""
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        buffer = self.buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self.buffers[name] = np.empty(nbytes, np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)


_scratch = _Scratch()


@dataclass(frozen=True, slots=True)
class _Band:
    """Input rows [start, stop) and the rows of the sampled-frame-row list they read."""

    start: int
    stop: int
    first: int  # index into the frame rows the input reads (`_Sampling.rows`)
    last: int  # exclusive
    top: np.ndarray  # (stop - start,) intp: upper tap, relative to `first`
    bottom: np.ndarray | None  # lower tap, relative to `first`; None when y only copies


@dataclass(frozen=True, slots=True)
class _Sampling:
    """Everything letterbox_into precomputes for one Letterbox.

    Separable, x first as TF does: each frame row the input needs is
    interpolated along x once (``hx``), then input rows are interpolated along y
    from those. Columns are gathered a byte at a time from the row viewed as
    (3 W,) so every array stays (rows, 3 w) contiguous and each arithmetic pass
    runs over whole rows; the weights are repeated per channel to match. The
    input is made in bands of BAND_ROWS rows, each from the frame rows it reads
    (a row shared by two bands is interpolated along x twice): the work arrays
    are a band's size, not the frame's.
    """

    rows: np.ndarray | None  # (n,) intp: frame rows the input reads; None: all, in order
    cols0: np.ndarray | None  # (3 w,) intp: byte of the left tap in a frame row; None: all, in order
    cols1: np.ndarray | None  # (3 w,) intp: right tap; None when x only copies
    wx0: np.ndarray  # (3 w,) float32
    wx1: np.ndarray
    wy0: np.ndarray  # (h, 1) float32
    wy1: np.ndarray
    bands: tuple[_Band, ...]


#: Input rows made (and value-mapped) at a time: a band's work arrays (under 1 MB)
#: fit a Pi's L2 cache where a whole frame's did not (docs/performance-history.md).
BAND_ROWS = 64


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _sampling(box: Letterbox) -> _Sampling:
    # TF.js computes the y scale on its own; it equals the x scale up to the last bit.
    sx, ox, sy, oy = _coefficients(box.frame_width, box.frame_height, box.input_width, box.input_height)
    ax = _axis(box.input_width, box.frame_width, sx, ox)
    ay = _axis(box.input_height, box.frame_height, sy, oy)
    # A tap of weight 0 adds exactly 0 whatever it reads: it needs no row of its own.
    ay_i1 = np.where(ay.w1 != 0, ay.i1, ay.i0)
    rows = np.unique(np.concatenate([ay.i0, ay_i1]))
    channel = np.arange(3)
    same_columns = ax.copies and np.array_equal(ax.i0, np.arange(box.frame_width))
    top = np.searchsorted(rows, ay.i0)
    bottom = None if ay.copies else np.searchsorted(rows, ay_i1)
    bands = []
    for start in range(0, box.input_height, BAND_ROWS):
        stop = min(start + BAND_ROWS, box.input_height)
        taps = top[start:stop] if bottom is None else np.concatenate([top[start:stop], bottom[start:stop]])
        first, last = int(taps.min()), int(taps.max()) + 1
        bands.append(_Band(
            start=start, stop=stop, first=first, last=last,
            top=top[start:stop] - first,
            bottom=None if bottom is None else bottom[start:stop] - first,
        ))

    return _Sampling(
        rows=None if len(rows) == box.frame_height else rows,
        cols0=None if same_columns else (3 * ax.i0[:, None] + channel).ravel(),
        cols1=None if ax.copies else (3 * ax.i1[:, None] + channel).ravel(),
        wx0=np.repeat(ax.w0, 3),
        wx1=np.repeat(ax.w1, 3),
        wy0=ay.w0[:, None],
        wy1=ay.w1[:, None],
        bands=tuple(bands),
    )


def _interpolate(rgb: np.ndarray, box: Letterbox, into: np.ndarray | None = None) -> np.ndarray:
    """(h, 3 w) float32 0..255, TF's bilinear samples, in `into` if given (float32,
    C-contiguous, any shape of that size) else in a scratch array of the input's size.

    Bit for bit the same float32 operations as TF's kernel: x then y, each
    ``p0 * w0 + p1 * w1``; only the order in which samples are computed differs.
    """
    shape = (box.input_height, 3 * box.input_width)
    values = _scratch.get("values", shape, np.float32) if into is None else into
    for _ in _bands(rgb, box, values):
        pass
    return values.reshape(shape)


def _bands(rgb: np.ndarray, box: Letterbox, into: np.ndarray | None = None):
    """`_interpolate` a band at a time: yields (start, stop, values), input rows
    [start, stop) as (stop - start, 3 w) float32 0..255 -- rows of `into` when
    given, else a band-sized scratch array that the next band overwrites."""
    if rgb.shape != (box.frame_height, box.frame_width, 3):
        raise ValueError(
            f"frame shape {rgb.shape} does not match the letterbox "
            f"({box.frame_height}, {box.frame_width}, 3)"
        )
    if rgb.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 RGB, not {rgb.dtype}")
    s = _sampling(box)
    get = _scratch.get
    h, w3, row_bytes = box.input_height, 3 * box.input_width, 3 * box.frame_width
    frame_rows = np.ascontiguousarray(rgb).reshape(box.frame_height, row_bytes)
    values = None if into is None else into.reshape(h, w3)
    # mode="clip": the indices are in range by construction, and "raise" copies `out`.
    for band in s.bands:
        n, m = band.last - band.first, band.stop - band.start
        if s.rows is None:
            src = frame_rows[band.first:band.last]
        else:
            src = get("rows", (n, row_bytes), np.uint8)
            np.take(frame_rows, s.rows[band.first:band.last], axis=0, out=src, mode="clip")
        taps = get("taps", (n, w3), np.uint8)
        hx = get("hx", (n, w3), np.float32)
        spare = get("spare", (max(n, m), w3), np.float32)  # second terms
        if s.cols0 is None:  # same width, no offset: the frame's own columns
            np.copyto(hx, src)
        elif s.cols1 is None:
            np.take(src, s.cols0, axis=1, out=taps, mode="clip")
            np.copyto(hx, taps)
        else:
            np.take(src, s.cols0, axis=1, out=taps, mode="clip")
            np.multiply(taps, s.wx0, out=hx)
            np.take(src, s.cols1, axis=1, out=taps, mode="clip")
            term = spare[:n]
            np.multiply(taps, s.wx1, out=term)
            hx += term
        out = get("band", (m, w3), np.float32) if values is None else values[band.start:band.stop]
        np.take(hx, band.top, axis=0, out=out, mode="clip")
        if band.bottom is not None:
            out *= s.wy0[band.start:band.stop]
            term = spare[:m]
            np.take(hx, band.bottom, axis=0, out=term, mode="clip")
            term *= s.wy1[band.start:band.stop]
            out += term
        yield band.start, band.stop, out


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _staircase(lut_bytes: bytes, dtype: str) -> tuple[int, tuple[int, ...]] | None:
    """(lut[0], steps) when ``lut[p] = lut[0] + p - #{t in steps: t <= p}`` for a
    1-byte table, so it costs a few byte passes instead of a dearer take;
    None otherwise. Quantized inputs give such tables: TF's int8 PoseNet maps
    p -> p - (p >= 128)."""
    lut = np.frombuffer(lut_bytes, dtype=dtype).astype(np.int64)
    step = np.diff(lut)
    if np.dtype(dtype).itemsize != 1 or not np.isin(step, (0, 1)).all():
        return None
    steps = tuple(int(t) for t in np.flatnonzero(step == 0) + 1)
    return (int(lut[0]), steps) if len(steps) <= 4 else None


def letterbox_into(rgb: np.ndarray, box: Letterbox, out: np.ndarray, lut: np.ndarray) -> None:
    """Write the frame, letterboxed and value-mapped, into the model's input.

    rgb: (H, W, 3) uint8 frame; out: (h, w, 3) float32 or uint8/int8 input view,
    written in place; lut: (256,) value to store for 8-bit pixel value p.
    Any thread may call it (the work arrays are shared behind a lock).
    """
    with _scratch.lock:
        _letterbox_into(rgb, box, out, lut)


def _letterbox_into(rgb: np.ndarray, box: Letterbox, out: np.ndarray, lut: np.ndarray) -> None:
    if out.shape != (box.input_height, box.input_width, 3):
        raise ValueError(
            f"input view shape {out.shape} does not match the letterbox "
            f"({box.input_height}, {box.input_width}, 3)"
        )
    # Each band is value-mapped as soon as it is made, while it is still in the cache.
    w = box.input_width
    if np.issubdtype(out.dtype, np.floating):
        # Interpolated straight into a float32 input: one array less to walk through.
        direct = out.dtype == np.float32 and out.flags.c_contiguous
        lo = np.float32(lut[0])
        slope = np.float32((float(lut[-1]) - float(lut[0])) / (len(lut) - 1))
        for start, stop, values in _bands(rgb, box, out if direct else None):
            band = out[start:stop]
            np.multiply(values.reshape(band.shape), slope, out=band)  # TF.js: tf.mul then tf.add, in float32
            band += lo
        return
    lut = np.asarray(lut, dtype=out.dtype)
    stairs = _staircase(lut.tobytes(), lut.dtype.str)
    bits_all = out.view(np.uint8)  # int8 tables wrap around in 8 bits just the same
    for start, stop, values in _bands(rgb, box):
        values += np.float32(0.5)  # then floor by truncation: values are in 0..255
        pixels = values.reshape(stop - start, w, 3)
        if stairs is None:
            index = _scratch.get("index", pixels.shape, np.uint8)
            np.copyto(index, pixels, casting="unsafe")
            np.take(lut, index, out=out[start:stop], mode="clip")
            continue
        first, steps = stairs
        bits = bits_all[start:stop]
        np.copyto(bits, pixels, casting="unsafe")
        if first:
            np.add(bits, np.uint8(first % 256), out=bits)
        if steps:
            below = _scratch.get("mask", pixels.shape, np.bool_)
            for t in steps:
                np.greater_equal(pixels, np.float32(t), out=below)  # round(v) >= t
                np.subtract(bits, below.view(np.uint8), out=bits)
