"""Letterbox planning, resampling and the mapping back to frame pixels."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose import letterbox
from edgepose.constants import INPUT_SCALE, INPUT_SHIFT

FLOAT_LUT = (np.arange(256) * INPUT_SCALE + INPUT_SHIFT).astype(np.float32)
IDENTITY_LUT = np.arange(256, dtype=np.uint8)


def random_frame(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bilinear(rgb: np.ndarray, x: float, y: float) -> np.ndarray:
    """One sample by the textbook formula: coordinate clamped, pixel i at i."""
    h, w = rgb.shape[:2]
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    p = rgb.astype(np.float64)
    top = (1 - fx) * p[y0, x0] + fx * p[y0, x1]
    bottom = (1 - fx) * p[y1, x0] + fx * p[y1, x1]
    return (1 - fy) * top + fy * bottom


def test_landscape_frame_is_padded_top_and_bottom():
    box = letterbox.plan(640, 480, 385, 385)
    assert box.scale == pytest.approx(640 / 385)
    assert box.offset_x == pytest.approx(0.0)
    assert box.offset_y == pytest.approx((480 - 640) / 2)


def test_portrait_frame_is_padded_left_and_right():
    box = letterbox.plan(480, 640, 353, 257)
    assert box.scale == pytest.approx(640 / 257)
    assert box.offset_x == pytest.approx((480 - 353 * 640 / 257) / 2)
    assert box.offset_y == pytest.approx(0.0)


@pytest.mark.parametrize("frame", [(640, 480), (480, 640), (1920, 1080), (353, 257)])
def test_to_frame_and_to_input_are_inverse(frame):
    box = letterbox.plan(*frame, 353, 257)
    xy = np.random.default_rng(2).uniform(-20, 400, (5, 17, 2))
    np.testing.assert_allclose(box.to_input(box.to_frame(xy)), xy, atol=1e-3)
    # The input's centre lands on the frame's centre (same convention both ways).
    np.testing.assert_allclose(box.to_frame([353 / 2, 257 / 2]), [frame[0] / 2, frame[1] / 2], atol=1e-3)


def test_to_frame_is_input_times_scale_plus_offset():
    box = letterbox.plan(1920, 1080, 481, 353)
    np.testing.assert_allclose(
        box.to_frame(np.array([[10.0, 20.0]])),
        [[10 * box.scale + box.offset_x, 20 * box.scale + box.offset_y]],
        rtol=1e-6,
    )


@pytest.mark.parametrize("frame", [(64, 48), (48, 64), (1000, 37)])
def test_samples_are_bilinear_at_scaled_coordinates(frame):
    rgb = random_frame(*frame)
    box = letterbox.plan(*frame, 33, 25)
    got = letterbox.sample(rgb, box)
    for iy, ix in [(0, 0), (3, 7), (12, 16), (24, 32), (24, 0)]:
        want = bilinear(rgb, ix * box.scale + box.offset_x, iy * box.scale + box.offset_y)
        np.testing.assert_allclose(got[iy, ix], want, atol=1e-3)


def test_border_replicates_the_frame_edge():
    rgb = random_frame(64, 32)
    box = letterbox.plan(64, 32, 33, 33)  # pads top and bottom
    got = letterbox.sample(rgb, box)
    ys = np.arange(33) * box.scale + box.offset_y
    xs = np.arange(33) * box.scale + box.offset_x

    def frame_row(r: int) -> np.ndarray:
        return np.stack([np.interp(xs, np.arange(64), rgb[r, :, c].astype(float)) for c in range(3)], -1)

    above, below = np.flatnonzero(ys < 0), np.flatnonzero(ys > 31)
    assert len(above) > 0 and len(below) > 0
    for r in above:
        np.testing.assert_allclose(got[r], frame_row(0), atol=1e-3)
    for r in below:
        np.testing.assert_allclose(got[r], frame_row(31), atol=1e-3)


def test_same_size_frame_is_copied_exactly():
    rgb = random_frame(33, 25)
    out = np.empty((25, 33, 3), np.uint8)
    letterbox.letterbox_into(rgb, letterbox.plan(33, 25, 33, 25), out, IDENTITY_LUT)
    np.testing.assert_array_equal(out, rgb)


def test_float_input_is_scaled_to_minus_one_one_without_rounding():
    rgb = random_frame(64, 48)
    box = letterbox.plan(64, 48, 33, 33)
    out = np.empty((33, 33, 3), np.float32)
    letterbox.letterbox_into(rgb, box, out, FLOAT_LUT)
    want = letterbox.sample(rgb, box) * np.float32(2 / 255) - np.float32(1)
    np.testing.assert_array_equal(out, want)
    assert out.min() >= -1 and out.max() <= 1


def test_integer_input_is_rounded_then_looked_up():
    rgb = random_frame(64, 48)
    box = letterbox.plan(64, 48, 33, 33)
    lut = (255 - np.arange(256)).astype(np.uint8)  # any table: here an inversion
    out = np.empty((33, 33, 3), np.uint8)
    letterbox.letterbox_into(rgb, box, out, lut)
    want = lut[np.floor(letterbox.sample(rgb, box) + 0.5).astype(int)]
    np.testing.assert_array_equal(out, want)


def test_uniform_frame_stays_uniform_including_border():
    rgb = np.full((48, 64, 3), 77, np.uint8)
    out = np.empty((33, 33, 3), np.float32)
    letterbox.letterbox_into(rgb, letterbox.plan(64, 48, 33, 33), out, FLOAT_LUT)
    np.testing.assert_allclose(out, 77 * INPUT_SCALE + INPUT_SHIFT, atol=1e-6)


def test_rejects_frame_of_another_size():
    box = letterbox.plan(64, 48, 33, 33)
    with pytest.raises(ValueError):
        letterbox.letterbox_into(random_frame(48, 64), box, np.empty((33, 33, 3), np.float32), FLOAT_LUT)


def test_rejects_non_positive_size():
    with pytest.raises(ValueError):
        letterbox.plan(0, 480, 353, 257)
