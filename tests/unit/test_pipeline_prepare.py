"""Work done ahead of inference on the capture thread (`Pipeline.prepare`): the motion
gate's thumbnail and the model's input, and only where they will be used."""

from __future__ import annotations

import numpy as np

from edgepose.config import MotionConfig
from edgepose.constants import NUM_PARTS
from edgepose.core import Frame, Poses
from edgepose.estimators import PreparedInput
from edgepose.motion import grey_from_rgb
from edgepose.pipeline import EstimateStage, Pipeline
from edgepose.scene import MotionGateStage


class PreparingEstimator:
    """Finds one person wherever told; records which inputs it was given."""

    def __init__(self) -> None:
        self.prepared: list[int] = []  # seq of each frame prepared ahead
        self.given: list[bool] = []  # per estimate: was an input given
        self.info = type("Info", (), {"label": "fake 8x8"})()

    def prepare(self, rgb: np.ndarray) -> PreparedInput:
        self.prepared.append(int(rgb[0, 0, 0]))
        return PreparedInput(self, rgb[::8, ::8].copy(), None, rgb.shape, 1.5)

    def estimate(self, rgb: np.ndarray, prepared: PreparedInput | None = None) -> Poses:
        self.given.append(prepared is not None)
        xy = np.full((1, NUM_PARTS, 2), 10.0, np.float32)
        return Poses(xy, np.full((1, NUM_PARTS), 0.9, np.float32), np.array([0.9], np.float32))


class NoPrepareEstimator(PreparingEstimator):
    prepare = None  # a family with state between frames (single-pose MoveNet)


def frame(seq: int, t: float, value: int | None = None) -> Frame:
    rgb = np.full((48, 64, 3), seq if value is None else value, np.uint8)
    return Frame(rgb=rgb, seq=seq, captured_at=1000.0 + t, captured_mono=t)


def test_without_a_gate_every_frame_gets_its_model_input_ahead_and_estimate_uses_it():
    estimator = PreparingEstimator()
    pipeline = Pipeline(EstimateStage(estimator))
    ready = pipeline.prepare(frame(1, 0.0))
    assert ready.model_input is not None and estimator.prepared == [1]
    result = pipeline.process(ready)
    assert estimator.given == [True]
    assert result.inference_ms >= 1.5, "the time spent ahead counts in the model's time"


def test_the_capture_thread_can_ask_for_no_model_input():
    estimator = PreparingEstimator()
    ready = Pipeline(EstimateStage(estimator)).prepare(frame(1, 0.0), model_input=False)
    assert ready.model_input is None and estimator.prepared == []


def test_a_family_without_prepare_estimates_as_before():
    estimator = NoPrepareEstimator()
    pipeline = Pipeline(EstimateStage(estimator))
    ready = pipeline.prepare(frame(1, 0.0))
    assert ready.model_input is None
    pipeline.process(ready)
    assert estimator.given == [False]


def test_with_the_motion_gate_the_input_is_made_ahead_only_while_someone_is_tracked():
    """A static, empty room costs no letterbox for frames the gate skips."""
    estimator = PreparingEstimator()
    gate = MotionGateStage(MotionConfig())
    pipeline = Pipeline(EstimateStage(estimator), gate=gate, stages=[gate], inline=1)
    first = pipeline.prepare(frame(0, 0.0, value=50))
    assert first.motion_grey is not None and first.model_input is None, "nobody seen yet"
    assert pipeline.process(first) is not None  # the first frame runs; it finds someone
    assert gate.expects_to_run(0.1)
    second = pipeline.prepare(frame(1, 0.1, value=50))
    assert second.model_input is not None
    pipeline.process(second)
    assert estimator.given == [False, True]
    hold = MotionConfig().hold_s
    assert not gate.expects_to_run(0.1 + hold), "nobody seen for hold_s: the gate may skip again"


def test_the_gate_decides_the_same_on_a_thumbnail_made_ahead():
    rng = np.random.default_rng(0)
    frames = [Frame(rgb=rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), seq=i, captured_at=0.0,
                    captured_mono=i * 0.1) for i in range(6)]
    frames[3] = frames[2].__class__(rgb=frames[2].rgb, seq=3, captured_at=0.0, captured_mono=0.3)
    inline, ahead = MotionGateStage(MotionConfig()), MotionGateStage(MotionConfig())
    for f in frames:
        prepared = ahead.prepare(f)
        np.testing.assert_array_equal(prepared.motion_grey, grey_from_rgb(f.rgb, ahead.gate.settings.grid))
        assert ahead.admit(prepared) == inline.admit(f)
    assert ahead.reasons == inline.reasons


def test_the_prepared_input_is_not_kept_with_the_result():
    """Results wait in queues (stages, snapshots): they must not hold model inputs."""
    estimator = PreparingEstimator()
    pipeline = Pipeline(EstimateStage(estimator))
    result = pipeline.process(pipeline.prepare(frame(1, 0.0)))
    assert estimator.given == [True] and result.frame.model_input is None


def test_a_scene_cut_resets_the_estimator_and_passes_the_motion_gate():
    """The demo's next photo: a single-pose model's crop is about someone else, and the
    frame runs even where the gate would skip it (a cut to a picture like the last)."""
    resets: list[int] = []
    estimator = NoPrepareEstimator()
    estimator.reset = lambda: resets.append(len(estimator.given))
    gate = MotionGateStage(MotionConfig())
    pipeline = Pipeline(EstimateStage(estimator), gate=gate)
    idle = MotionConfig().idle_interval_s
    assert pipeline.process(frame(0, 0.0, value=50)) is not None  # the first frame always runs
    assert pipeline.process(frame(1, idle / 4, value=50)) is None, "a still, empty scene is skipped"
    cut = Frame(rgb=np.full((48, 64, 3), 50, np.uint8), seq=2, captured_at=0.0, captured_mono=idle / 2,
                scene_cut=True)
    assert pipeline.process(cut) is not None
    assert resets == [1] and gate.reasons["scene_cut"] == 1
