"""PoseNetEstimator wiring over a stand-in TfliteModel (no TF Lite runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepose.estimators.posenet import letterbox
from edgepose.constants import NUM_PARTS
from edgepose.errors import ModelError
from edgepose.estimators.posenet.constants import NUM_EDGES
from edgepose.estimators.posenet.estimator import PoseNetEstimator
from edgepose.estimators.posenet.outputs import input_lut

STRIDE = 16


def _detail(index, name, shape):
    return {"index": index, "name": name, "shape": np.array(shape, np.int32), "dtype": np.float32,
            "quantization": (0.0, 0)}


class FakeTflite:
    """The TfliteModel attributes the estimator reads; every part peaks at one known input point."""

    def __init__(self, point_xy=(20.0, 12.0), width=65, height=49):
        self.input_size = (width, height)
        self.input_dtype = np.float32
        self.input_quantization = (0.0, 0)
        self.path = Path("fake_posenet.tflite")
        self.accelerator = "cpu"
        self.runtime = "fake"
        self._input = np.zeros((height, width, 3), np.float32)
        self.point_xy = point_xy
        self.invocations = 0
        gh, gw = (height - 1) // STRIDE + 1, (width - 1) // STRIDE + 1
        self.grid = (gh, gw)
        self.output_details = [_detail(1, "heatmaps", [1, gh, gw, 17]), _detail(2, "offsets", [1, gh, gw, 34]),
                               _detail(3, "displacement_fwd", [1, gh, gw, 32]),
                               _detail(4, "displacement_bwd", [1, gh, gw, 32])]

    def input_view(self) -> np.ndarray:
        return self._input

    def invoke(self) -> list[np.ndarray]:
        self.invocations += 1
        gh, gw = self.grid
        heatmaps = np.full((gh, gw, NUM_PARTS), -5.0, np.float32)
        x, y = self.point_xy
        cy, cx = int(np.floor(y / STRIDE + 0.5)), int(np.floor(x / STRIDE + 0.5))
        heatmaps[cy, cx, :] = 3.0
        offsets = np.zeros((gh, gw, 2 * NUM_PARTS), np.float32)
        gy, gx = np.mgrid[0:gh, 0:gw]
        offsets[:, :, :NUM_PARTS] = (y - gy * STRIDE)[..., None]
        offsets[:, :, NUM_PARTS:] = (x - gx * STRIDE)[..., None]
        zeros = np.zeros((gh, gw, 2 * NUM_EDGES), np.float32)
        return [heatmaps, offsets, zeros, zeros.copy()]

    def close(self) -> None:
        pass


def estimator(model=None, **options) -> PoseNetEstimator:
    settings = dict(output_stride=STRIDE, max_poses=5, min_pose_score=0.15, min_part_score=0.5, nms_radius=20.0)
    settings.update(options)
    return PoseNetEstimator(model or FakeTflite(), **settings)


def frame(w=320, h=240) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_estimate_returns_poses_in_frame_pixels():
    model = FakeTflite()
    poses = estimator(model, min_pose_score=0.0).estimate(frame())
    box = letterbox.plan(320, 240, 65, 49)
    assert len(poses) == 1
    np.testing.assert_allclose(poses.xy[0], np.broadcast_to(box.to_frame(np.array(model.point_xy)), (NUM_PARTS, 2)), atol=1e-3)


def test_estimate_writes_the_letterboxed_frame_into_the_model_input():
    model = FakeTflite()
    rgb = frame()
    estimator(model).estimate(rgb)
    expected = np.empty_like(model.input_view())
    lut = input_lut(np.float32, (0.0, 0))
    letterbox.letterbox_into(rgb, letterbox.plan(320, 240, 65, 49), expected, lut)
    np.testing.assert_array_equal(model.input_view(), expected)


def test_estimate_applies_min_pose_score():
    assert len(estimator(min_pose_score=0.99).estimate(frame())) == 0


def test_estimate_records_stage_timing():
    posenet = estimator()
    posenet.estimate(frame())
    assert set(posenet.last_timing) == {"preprocess", "invoke", "decode"}
    assert all(ms > 0 for ms in posenet.last_timing.values())


def test_describes_itself():
    info = estimator().info
    assert (info.name, info.family, info.input_size, info.precision) == ("posenet-mnv1-075", "posenet", (65, 49), "float32")
    assert info.label == "fake_posenet 65x49"


def test_single_person_cleanup_is_selectable():
    assert len(estimator(cleanup="seed-single").estimate(frame())) == 1


def test_rejects_unknown_cleanup():
    with pytest.raises(ValueError, match="cleanup"):
        estimator(cleanup="tidy")


def test_stride_asked_for_must_match_the_file():
    with pytest.raises(ModelError, match="output stride 8 was asked for"):
        estimator(output_stride=8)


def test_poses_from_a_decoder_model_skip_decoding_but_not_mapping():
    class DecoderModel(FakeTflite):
        def __init__(self):
            super().__init__()
            self.output_details = [_detail(5, "poses", [1, 3, 17, 2]), _detail(6, "poses:1", [1, 3, 17]),
                                   _detail(7, "poses:2", [1, 3]), _detail(8, "poses:3", [])]

        def invoke(self):
            yx = np.tile(np.array(self.point_xy[::-1], np.float32), (3, NUM_PARTS, 1))
            return [yx, np.full((3, NUM_PARTS), 0.9, np.float32), np.float32([0.9, 0.8, 0.7]), np.float32(3)]

    poses = estimator(DecoderModel(), max_poses=2).estimate(frame())
    box = letterbox.plan(320, 240, 65, 49)
    assert len(poses) == 2
    np.testing.assert_allclose(poses.xy[:, 0], np.broadcast_to(box.to_frame(np.array((20.0, 12.0))), (2, 2)), atol=1e-3)


def test_an_input_prepared_ahead_gives_the_same_poses_as_one_made_in_estimate():
    rgb = frame()
    inline_model, ahead_model = FakeTflite(), FakeTflite()
    inline, ahead = estimator(inline_model), estimator(ahead_model)
    want = inline.estimate(rgb)
    prepared = ahead.prepare(rgb)
    got = ahead.estimate(rgb, prepared)
    np.testing.assert_array_equal(ahead_model.input_view(), inline_model.input_view())
    np.testing.assert_array_equal(got.xy, want.xy)
    np.testing.assert_array_equal(got.scores, want.scores)
    assert ahead.last_timing["preprocess"] >= prepared.preprocess_ms > 0


def test_an_input_prepared_by_another_estimator_or_for_another_frame_is_refused():
    one, other = estimator(), estimator()
    rgb = frame()
    with pytest.raises(ValueError):
        one.estimate(rgb, other.prepare(rgb))
    with pytest.raises(ValueError):
        one.estimate(rgb, one.prepare(frame(w=160, h=120)))


def test_preparing_touches_no_interpreter_state():
    """prepare runs on the capture thread while the model runs on the frame before."""
    model = FakeTflite()
    posenet = estimator(model)
    before = model.input_view().copy()
    posenet.prepare(frame())
    np.testing.assert_array_equal(model.input_view(), before)
    assert model.invocations == 0
