"""PoseDetector wiring with a stand-in model (no TF Lite)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose import letterbox
from edgepose.constants import INPUT_SCALE, INPUT_SHIFT, NUM_EDGES, NUM_PARTS
from edgepose.core import PoseNetOutputs, Poses
from edgepose.detector import PoseDetector

STRIDE = 16


class FakeModel:
    """Same attributes as backend.PoseModel; every part peaks at one known input point."""

    def __init__(self, point_xy=(20.0, 12.0), width=65, height=49):
        self.input_size = (width, height)
        self.output_stride = STRIDE
        self.quantized_input = False
        self.input_lut = (np.arange(256) * INPUT_SCALE + INPUT_SHIFT).astype(np.float32)
        self.name = "fake"
        self.accelerator = "cpu"
        self._input = np.zeros((height, width, 3), np.float32)
        self.point_xy = point_xy
        self.invocations = 0

    def input_view(self) -> np.ndarray:
        return self._input

    def invoke(self) -> PoseNetOutputs:
        self.invocations += 1
        w, h = self.input_size
        gh, gw = (h - 1) // STRIDE + 1, (w - 1) // STRIDE + 1
        heatmaps = np.full((gh, gw, NUM_PARTS), -5.0, np.float32)
        x, y = self.point_xy
        cy, cx = int(np.floor(y / STRIDE + 0.5)), int(np.floor(x / STRIDE + 0.5))
        heatmaps[cy, cx, :] = 3.0
        offsets = np.zeros((gh, gw, 2 * NUM_PARTS), np.float32)
        gy, gx = np.mgrid[0:gh, 0:gw]
        offsets[:, :, :NUM_PARTS] = (y - gy * STRIDE)[..., None]
        offsets[:, :, NUM_PARTS:] = (x - gx * STRIDE)[..., None]
        zeros = np.zeros((gh, gw, 2 * NUM_EDGES), np.float32)
        return PoseNetOutputs(heatmaps, offsets, zeros, zeros.copy(), STRIDE)


def frame(w=320, h=240) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_detect_returns_poses_in_frame_pixels():
    model = FakeModel()
    rgb = frame()
    poses = PoseDetector(model, min_pose_score=0.0).detect(rgb)
    box = letterbox.plan(320, 240, 65, 49)
    assert len(poses) == 1
    np.testing.assert_allclose(poses.xy[0], np.broadcast_to(box.to_frame(np.array(model.point_xy)), (NUM_PARTS, 2)), atol=1e-3)


def test_detect_writes_the_letterboxed_frame_into_the_model_input():
    model = FakeModel()
    rgb = frame()
    PoseDetector(model).detect(rgb)
    expected = np.empty_like(model.input_view())
    letterbox.letterbox_into(rgb, letterbox.plan(320, 240, 65, 49), expected, model.input_lut)
    np.testing.assert_array_equal(model.input_view(), expected)


def test_detect_applies_min_pose_score():
    assert len(PoseDetector(FakeModel(), min_pose_score=0.99).detect(frame())) == 0


def test_detect_records_stage_timing():
    detector = PoseDetector(FakeModel())
    detector.detect(frame())
    assert set(detector.last_timing) == {"preprocess", "invoke", "decode"}
    assert all(ms > 0 for ms in detector.last_timing.values())


def test_single_person_cleanup_is_selectable():
    poses = PoseDetector(FakeModel(), max_poses=5, cleanup="seed-single").detect(frame())
    assert len(poses) == 1


def test_rejects_unknown_cleanup():
    with pytest.raises(ValueError, match="cleanup"):
        PoseDetector(FakeModel(), cleanup="tidy")


def test_poses_from_a_decoder_model_skip_decoding_but_not_mapping():
    class DecoderModel(FakeModel):
        def invoke(self):
            xy = np.tile(np.array(self.point_xy, np.float32), (3, NUM_PARTS, 1))
            scores = np.full((3, NUM_PARTS), 0.9, np.float32)
            return Poses(xy, scores, np.float32([0.9, 0.8, 0.7]))

    poses = PoseDetector(DecoderModel(), max_poses=2).detect(frame())
    box = letterbox.plan(320, 240, 65, 49)
    assert len(poses) == 2
    np.testing.assert_allclose(poses.xy[:, 0], np.broadcast_to(box.to_frame(np.array((20.0, 12.0))), (2, 2)), atol=1e-3)
