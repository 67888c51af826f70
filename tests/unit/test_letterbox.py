"""Letterbox planning, resampling and the mapping back to frame pixels."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.estimators.posenet import letterbox
from edgepose.estimators.posenet.constants import INPUT_SCALE, INPUT_SHIFT

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
    got = sample(rgb, box)
    for iy, ix in [(0, 0), (3, 7), (12, 16), (24, 32), (24, 0)]:
        want = bilinear(rgb, ix * box.scale + box.offset_x, iy * box.scale + box.offset_y)
        np.testing.assert_allclose(got[iy, ix], want, atol=1e-3)


def test_border_replicates_the_frame_edge():
    rgb = random_frame(64, 32)
    box = letterbox.plan(64, 32, 33, 33)  # pads top and bottom
    got = sample(rgb, box)
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
    want = sample(rgb, box) * np.float32(2 / 255) - np.float32(1)
    np.testing.assert_array_equal(out, want)
    assert out.min() >= -1 and out.max() <= 1


def test_integer_input_is_rounded_then_looked_up():
    rgb = random_frame(64, 48)
    box = letterbox.plan(64, 48, 33, 33)
    lut = (255 - np.arange(256)).astype(np.uint8)  # any table: here an inversion
    out = np.empty((33, 33, 3), np.uint8)
    letterbox.letterbox_into(rgb, box, out, lut)
    want = lut[np.floor(sample(rgb, box) + 0.5).astype(int)]
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


# Sizes for the exactness checks: the usual cases plus every shortcut (all rows
# needed or not, an axis at scale 1 with an integer offset, an axis copied at
# scale 2, same size, one-pixel frames, upscaling).
EXACT_SIZES = [
    ((640, 425), (481, 353)),
    ((640, 480), (353, 257)),
    ((1920, 1080), (481, 353)),
    ((470, 352), (481, 353)),  # picamera2 lores, scale ~1
    ((481, 300), (481, 353)),  # x copied as is, y padded by half pixels
    ((470, 353), (481, 353)),  # y copied as is, x padded
    ((10, 100), (10, 50)),  # x at scale 2, integer coordinates: copied, not identity
    ((33, 25), (33, 25)),
    ((1, 1), (33, 25)),
    ((1, 50), (33, 25)),
    ((50, 1), (33, 25)),
    ((1000, 37), (33, 25)),
    ((20, 15), (97, 65)),
]


def sample(rgb: np.ndarray, box: letterbox.Letterbox) -> np.ndarray:
    """(h, w, 3) float32 0..255: the frame resampled into the model input, unscaled."""
    return letterbox._interpolate(rgb, box).reshape(box.input_height, box.input_width, 3).copy()


def four_tap_sample(rgb: np.ndarray, box: letterbox.Letterbox) -> np.ndarray:
    """The kernel's formula, sample by sample: four taps, x then y, in float32."""
    sx, ox, sy, oy = letterbox._coefficients(box.frame_width, box.frame_height, box.input_width, box.input_height)
    ax = letterbox._axis(box.input_width, box.frame_width, sx, ox)
    ay = letterbox._axis(box.input_height, box.frame_height, sy, oy)
    p = rgb.astype(np.float32)
    y0, y1, x0, x1 = ay.i0[:, None], ay.i1[:, None], ax.i0[None, :], ax.i1[None, :]
    wx0, wx1 = ax.w0[None, :, None], ax.w1[None, :, None]
    top = p[y0, x0] * wx0 + p[y0, x1] * wx1
    bottom = p[y1, x0] * wx0 + p[y1, x1] * wx1
    return top * ay.w0[:, None, None] + bottom * ay.w1[:, None, None]


def quantized_lut(dtype, scale: float, zero_point: int) -> np.ndarray:
    from edgepose.estimators.posenet.outputs import input_lut

    return input_lut(dtype, (scale, zero_point))


LUTS = {
    "identity": IDENTITY_LUT,
    "posenet int8 model (uint8 input)": (np.arange(256) - (np.arange(256) >= 128)).astype(np.uint8),
    "uint8 scale 1/128 zero 128": quantized_lut(np.uint8, 1 / 128, 128),
    "int8 scale 1/128 zero 0": quantized_lut(np.int8, 1 / 128, 0),
    "int8 scale 2/254 zero -1": quantized_lut(np.int8, 2 / 254, -1),
    "int8 four flat steps": quantized_lut(np.int8, 2 / 252, -3),
    "int8 five flat steps": quantized_lut(np.int8, 2 / 250, -3),
    "inversion (a real lookup)": (255 - np.arange(256)).astype(np.uint8),
    "int16": quantized_lut(np.int16, 1 / 4096, 0),
}


@pytest.mark.parametrize("frame, size", EXACT_SIZES)
def test_samples_are_the_kernels_float32_arithmetic_bit_for_bit(frame, size):
    rgb = random_frame(*frame, seed=3)
    box = letterbox.plan(*frame, *size)
    np.testing.assert_array_equal(sample(rgb, box), four_tap_sample(rgb, box))


@pytest.mark.parametrize("frame, size", EXACT_SIZES)
@pytest.mark.parametrize("lut_name", LUTS)
def test_integer_input_is_the_float_samples_rounded_then_looked_up(frame, size, lut_name):
    lut = LUTS[lut_name]
    rgb = random_frame(*frame, seed=4)
    box = letterbox.plan(*frame, *size)
    out = np.empty((size[1], size[0], 3), lut.dtype)
    letterbox.letterbox_into(rgb, box, out, lut)
    want = lut[np.floor(four_tap_sample(rgb, box) + np.float32(0.5)).astype(int)]
    np.testing.assert_array_equal(out, want)


def test_staircase_tables_are_recognised():
    def stairs(lut):
        return letterbox._staircase(lut.tobytes(), lut.dtype.str)

    assert stairs(IDENTITY_LUT) == (0, ())
    assert stairs(LUTS["posenet int8 model (uint8 input)"]) == (0, (128,))
    assert stairs(LUTS["int8 scale 2/254 zero -1"]) == (-128, (128,))
    assert stairs(LUTS["int8 four flat steps"]) == (-128, (1, 43, 128, 213))
    assert stairs(LUTS["int8 five flat steps"]) is None  # more passes than a lookup is worth
    assert stairs(LUTS["int8 scale 1/128 zero 0"]) is None  # steps of 2: a real lookup
    assert stairs(LUTS["inversion (a real lookup)"]) is None
    assert stairs(LUTS["int16"]) is None


@pytest.mark.parametrize("frame, size", [((640, 425), (481, 353)), ((481, 353), (481, 353))])
def test_float_input_is_the_same_in_any_layout(frame, size):
    rgb = random_frame(*frame, seed=5)
    box = letterbox.plan(*frame, *size)
    want = np.empty((size[1], size[0], 3), np.float32)
    letterbox.letterbox_into(rgb, box, want, FLOAT_LUT)
    np.testing.assert_array_equal(want, four_tap_sample(rgb, box) * np.float32(2 / 255) - np.float32(1))
    # A strided frame and a strided input view (written through, not into a copy).
    wide = np.zeros((frame[1], frame[0] + 3, 4), np.uint8)
    wide[:, 1 : frame[0] + 1, :3] = rgb
    strided = np.zeros((size[1], size[0], 4), np.float32)
    letterbox.letterbox_into(wide[:, 1 : frame[0] + 1, :3], box, strided[..., :3], FLOAT_LUT)
    np.testing.assert_array_equal(strided[..., :3], want)
    assert not strided[..., 3].any()


def test_sample_returns_its_own_array():
    box = letterbox.plan(64, 48, 33, 33)
    first = sample(random_frame(64, 48, seed=6), box)
    kept = first.copy()
    sample(random_frame(64, 48, seed=7), box)
    np.testing.assert_array_equal(first, kept)


def test_threads_letterboxing_at_once_each_get_their_own_frame():
    """The work arrays are shared behind a lock: no thread sees another's frame."""
    from concurrent.futures import ThreadPoolExecutor

    box = letterbox.plan(320, 240, 161, 129)
    frames = [random_frame(320, 240, seed=s) for s in range(4)]
    want = [four_tap_sample(f, box) for f in frames]

    def run(i: int) -> bool:
        out = np.empty((129, 161, 3), np.float32)
        for _ in range(30):
            letterbox.letterbox_into(frames[i], box, out, FLOAT_LUT)
            if not np.array_equal(out, want[i] * np.float32(2 / 255) - np.float32(1)):
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(4)))


def test_rejects_frame_that_is_not_uint8():
    box = letterbox.plan(64, 48, 33, 33)
    with pytest.raises(ValueError):
        sample(random_frame(64, 48).astype(np.float32), box)


@pytest.mark.parametrize("frame_size", [(768, 576), (1920, 1080), (353, 481), (481, 353), (100, 700)])
def test_bands_give_the_same_bits_as_the_whole_input_at_once(monkeypatch, frame_size):
    """The input is made (and value-mapped) BAND_ROWS rows at a time; band edges must not show."""
    width, height = frame_size
    rgb = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    box = letterbox.plan(width, height, 481, 353)
    int8_lut = LUTS["int8 scale 2/254 zero -1"]

    def everything() -> list[np.ndarray]:
        as_float = np.empty((353, 481, 3), np.float32)
        letterbox.letterbox_into(rgb, box, as_float, FLOAT_LUT)
        as_int8 = np.empty((353, 481, 3), np.int8)
        letterbox.letterbox_into(rgb, box, as_int8, int8_lut)
        looked_up = np.empty((353, 481, 3), np.uint8)
        letterbox.letterbox_into(rgb, box, looked_up, LUTS["inversion (a real lookup)"])
        return [letterbox._interpolate(rgb, box).copy(), as_float, as_int8, looked_up]

    banded = everything()
    assert len(letterbox._sampling(box).bands) > 1
    monkeypatch.setattr(letterbox, "BAND_ROWS", 10_000)
    letterbox._sampling.cache_clear()
    try:
        whole = everything()
        assert len(letterbox._sampling(box).bands) == 1
    finally:
        letterbox._sampling.cache_clear()
    for got, want in zip(banded, whole):
        np.testing.assert_array_equal(got, want)
