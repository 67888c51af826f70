"""MoveNet's pure numpy steps (crop, resize/pad, decoding) and the estimators
on the committed models through a stand-in of edgepose.runtime's API."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.constants import PART_IDS
from edgepose.estimators.movenet import crop, decode
from edgepose.estimators.movenet.estimator import MoveNetMultiPose, MoveNetSinglePose, write_pixels

from .movenet_helpers import open_model


def test_initial_crop_centred_square_and_padded_square() -> None:
    first = crop.initial_crop(640, 480, first_frame=True)
    assert (first.y_min, first.y_max) == (0.0, 1.0)
    assert first.x_min == pytest.approx(80 / 640) and first.width == pytest.approx(480 / 640)
    lost = crop.initial_crop(640, 480, first_frame=False)
    assert (lost.x_min, lost.x_max) == (0.0, 1.0)
    assert lost.y_min == pytest.approx(-80 / 480) and lost.height == pytest.approx(640 / 480)
    portrait = crop.initial_crop(480, 640, first_frame=True)
    assert portrait.y_min == pytest.approx(80 / 640) and portrait.x_max == 1.0


def _standing(cx: float, cy: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    xy = np.zeros((17, 2))
    xy[:, 0], xy[:, 1] = cx, cy
    for name, dx, dy in [("leftShoulder", 20, -60), ("rightShoulder", -20, -60), ("leftHip", 15, 0),
                         ("rightHip", -15, 0), ("leftAnkle", 15, 90), ("nose", 0, -90)]:
        xy[PART_IDS[name]] = (cx + dx * scale, cy + dy * scale)
    scores = np.full(17, 0.1)
    for name in ("leftShoulder", "rightShoulder", "leftHip", "rightHip", "leftAnkle", "nose"):
        scores[PART_IDS[name]] = 0.9
    return xy, scores


def test_next_crop_square_around_hips() -> None:
    xy, scores = _standing(300, 240, 1.0)
    region = crop.next_crop(xy, scores, 640, 480)
    # half side = max(1.9 * torso (60 up), 1.2 * body (90 down/up)) = 114
    assert region.y_min * 480 == pytest.approx(240 - 114)
    assert region.x_min * 640 == pytest.approx(300 - 114)
    assert region.height * 480 == pytest.approx(228) and region.width * 640 == pytest.approx(228)


def test_next_crop_falls_back_without_torso() -> None:
    xy, scores = _standing(300, 240, 1.0)
    scores[[PART_IDS["leftHip"], PART_IDS["rightHip"]]] = 0.2  # not above 0.2
    assert crop.next_crop(xy, scores, 640, 480) == crop.initial_crop(640, 480, first_frame=False)


def test_crop_filter_first_value_passes_then_smooths() -> None:
    f = crop.CropFilter(0.9)
    a = crop.CropRegion.from_corners(0.0, 0.0, 1.0, 1.0)
    b = crop.CropRegion.from_corners(0.5, 0.5, 1.5, 1.5)
    assert f.apply(a) == a
    assert f.apply(b).y_min == pytest.approx(0.45)
    f.reset()
    assert f.apply(b) == b


def test_crop_and_resize_matches_tf_formula_and_zero_outside() -> None:
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    whole = crop.crop_and_resize(rgb, crop.CropRegion.from_corners(0, 0, 1, 1), 5, 7)
    assert np.array_equal(whole, rgb)  # same size: every sample is a pixel
    half = crop.crop_and_resize(rgb, crop.CropRegion.from_corners(0, 0, 1, 1), 3, 4)
    # row i samples y = i * 4 / 2, column j samples x = j * 6 / 3: integer positions
    assert np.array_equal(half, rgb[::2][:, ::2])
    padded = crop.crop_and_resize(rgb, crop.CropRegion.from_corners(-1, 0, 1, 1), 9, 7)
    assert not padded[:4].any() and np.array_equal(padded[4:], rgb)
    frac = crop.crop_and_resize(rgb, crop.CropRegion.from_corners(0, 0, 0.25, 1 / 6), 2, 2)
    # y in {0, 1}, x in {0, 1}: corners of the top-left 2x2 block
    assert np.array_equal(frac, rgb[:2, :2])


def test_multipose_input_rule() -> None:
    plan = decode.multipose_input(640, 425, 256)
    assert (plan.resized_w, plan.resized_h, plan.padded_w, plan.padded_h) == (256, 170, 256, 192)
    plan = decode.multipose_input(480, 640, 256)
    assert (plan.resized_w, plan.resized_h, plan.padded_w, plan.padded_h) == (192, 256, 192, 256)
    with pytest.raises(ValueError, match="multiple of 32"):
        decode.multipose_input(640, 480, 250)


def test_multipose_to_poses_rescales_keypoints_and_boxes() -> None:
    plan = decode.multipose_input(640, 425, 256)  # resized 256x170, padded 256x192
    out = np.zeros((6, 56), np.float32)
    out[0, 0:51:3] = 0.5  # y in 0..1 of the padded input
    out[0, 1:51:3] = 0.25
    out[0, 2:51:3] = 0.8
    out[0, 51:55] = [0.1, 0.2, 0.9, 0.6]
    out[0, 55] = 0.7
    out[1, 55] = 0.2  # below the threshold
    poses = decode.multipose_to_poses(out, plan, 640, 425, 0.25)
    assert len(poses) == 1 and poses.pose_scores[0] == pytest.approx(0.7)
    sy = 192 / 170 * 425
    assert poses.xy[0, 0, 1] == pytest.approx(0.5 * sy, rel=1e-6)
    assert poses.xy[0, 0, 0] == pytest.approx(0.25 * 640, rel=1e-6)
    assert poses.boxes[0] == pytest.approx([0.2 * 640, 0.1 * sy, 0.6 * 640, 425.0])  # y1 clipped
    empty = decode.multipose_to_poses(out, plan, 640, 425, 0.9)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def test_singlepose_score_mean_above_threshold() -> None:
    scores = np.array([0.9, 0.5, 0.2, 0.1] + [0.0] * 13, np.float32)
    assert decode.singlepose_score(scores) == pytest.approx(0.7)
    assert decode.singlepose_score(np.zeros(17, np.float32)) == 0.0


def test_write_pixels_raw_pixels_for_every_input_type() -> None:
    px = np.array([[[0, 128, 255]]], np.uint8)
    view = np.zeros((1, 1, 3), np.uint8)
    write_pixels(view, px)
    assert np.array_equal(view, px)
    view8 = np.zeros((1, 1, 3), np.int8)
    write_pixels(view8, px)
    assert view8.tolist() == [[[-128, 0, 127]]]
    fview = np.zeros((1, 1, 3), np.float32)
    write_pixels(fview, px)
    assert fview.tolist() == [[[0.0, 128.0, 255.0]]]


@pytest.mark.parametrize("precision", ["float16", "int8"])
@pytest.mark.parametrize("stem", ["lightning", "thunder"])
def test_singlepose_follows_and_resets(stem: str, precision: str) -> None:
    rgb = _demo_photo()
    est = MoveNetSinglePose(open_model(stem, precision))
    first = est.estimate(rgb)
    assert len(first) == 1 and first.boxes is None
    crop_after_first = est._crop
    assert crop_after_first is not None
    second = est.estimate(rgb)
    assert len(second) == 1
    est.reset()
    again = est.estimate(rgb)
    assert np.array_equal(again.xy, first.xy)  # reset: same first crop, same answer
    assert set(est.last_timing) == {"preprocess", "invoke", "decode"}
    still = est.estimate_still(rgb, passes=2)
    assert np.array_equal(still.xy, second.xy)


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_multipose_resizes_and_gives_boxes(precision: str) -> None:
    rgb = _demo_photo()
    est = MoveNetMultiPose(open_model("multipose", precision), long_side=320)
    poses = est.estimate(rgb)
    h, w = rgb.shape[:2]
    assert est.model.input_size == decode.multipose_input(w, h, 320).size
    assert len(poses) >= 1 and poses.boxes is not None
    assert (poses.boxes[:, 2] > poses.boxes[:, 0]).all() and (poses.boxes[:, 3] > poses.boxes[:, 1]).all()
    assert (poses.pose_scores >= 0.25).all()


def _demo_photo() -> np.ndarray:
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[2] / "edgepose" / "demo" / "000000000785.jpg"
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_singlepose_lost_person_resets_crop() -> None:
    """A frame without a person scores below min_pose_score: no pose, and the
    next frame starts again from the first crop (TF.js resets too)."""
    est = MoveNetSinglePose(open_model("lightning", "float16"))
    assert len(est.estimate(_demo_photo())) == 1 and est._crop is not None
    blank = np.zeros((240, 320, 3), np.uint8)
    assert len(est.estimate(blank)) == 0
    assert est._crop is None


# --- opened from the config, as the daemon and the CLI open them ---------------------

from edgepose.config import DecodeConfig, ModelConfig, load_config  # noqa: E402
from edgepose.errors import ModelError  # noqa: E402
from edgepose.estimators import MODELS, open_estimator  # noqa: E402
from edgepose.estimators.movenet.estimator import open_movenet  # noqa: E402


@pytest.mark.parametrize("quantized,precision", [(True, "int8"), (False, "float16")])
@pytest.mark.parametrize("name,side", [("movenet-lightning", 192), ("movenet-thunder", 256)])
def test_registry_opens_the_bundled_singlepose_build(name: str, side: int, quantized: bool, precision: str) -> None:
    config = load_config(None, {"model.name": name, "model.quantized": quantized})
    est = open_estimator(config.model, config.decode)
    try:
        info = est.info
        assert (info.name, info.family, info.precision, info.input_size) == (name, "movenet", precision, (side, side))
        assert info.path.name == f"movenet_{name.split('-')[1]}_{precision}.tflite"
        assert info.runtime in ("ai-edge-litert", "tflite-runtime") and info.accelerator == "cpu"
        assert name in MODELS and info.path.name in MODELS[name].files
        poses = est.estimate_still(_demo_photo())
        assert len(poses) == 1 and est.min_pose_score == 0.25  # MoveNet's default, not PoseNet's
        h, w = _demo_photo().shape[:2]
        assert (poses.xy[..., 0] <= w - 1).all() and (poses.xy[..., 1] <= h - 1).all()  # clipped
    finally:
        est.close()


class _CountingModel:
    """The real model, counting its invokes."""

    def __init__(self, model) -> None:
        self._model, self.invokes = model, 0

    def invoke(self):
        self.invokes += 1
        return self._model.invoke()

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_still_image_runs_the_configured_passes() -> None:
    rgb = _demo_photo()
    est = open_movenet(ModelConfig(name="movenet-lightning", still_passes=2), DecodeConfig())
    est.model = counting = _CountingModel(est.model)
    two = est.estimate_still(rgb)
    assert counting.invokes == 2 and set(est.last_timing) == {"preprocess", "invoke", "decode"}
    est.reset()
    est.estimate(rgb)
    second = est.estimate(rgb)
    assert np.array_equal(two.xy, second.xy)  # a still = reset, then the passes of a stream
    est.close()


@pytest.mark.parametrize("quantized", [True, False])
def test_registry_opens_multipose_sized_for_a_4_3_frame_and_follows_the_frame(quantized: bool) -> None:
    config = load_config(None, {"model.name": "movenet-multipose", "model.quantized": quantized,
                                "model.multipose_long_side": 320})
    est = open_estimator(config.model, config.decode)
    try:
        assert est.info.input_size == (320, 256)  # 320x240 padded to multiples of 32
        rgb = _demo_photo()
        poses = est.estimate_still(rgb)
        h, w = rgb.shape[:2]
        assert est.info.input_size == decode.multipose_input(w, h, 320).size == est.model.input_size
        assert poses.boxes is not None and len(poses) >= 1
        capped = open_movenet(config.model, DecodeConfig(max_poses=1, min_pose_score=0.0))
        one = capped.estimate_still(rgb)
        assert len(one) == 1 and one.pose_scores[0] == pytest.approx(poses.pose_scores.max())
        capped.close()
    finally:
        est.close()


def test_model_path_of_another_family_is_refused_by_name(tmp_path) -> None:
    posenet_file = MODELS["posenet-mnv1-075"].files[3]
    from edgepose.estimators import models_dir

    with pytest.raises(ModelError, match="is not a movenet-thunder model"):
        open_movenet(ModelConfig(name="movenet-thunder", path=str(models_dir() / posenet_file)), DecodeConfig())
    with pytest.raises(ModelError, match="is not a movenet-multipose model"):
        open_movenet(ModelConfig(name="movenet-multipose", path=str(model_path_of("lightning"))), DecodeConfig())
    with pytest.raises(ModelError, match="does not exist"):
        open_movenet(ModelConfig(name="movenet-lightning", path=str(tmp_path / "none.tflite")), DecodeConfig())


def test_model_path_of_the_same_family_is_used() -> None:
    est = open_movenet(ModelConfig(name="movenet-thunder", path=str(model_path_of("lightning"))), DecodeConfig())
    assert est.info.input_size == (192, 192) and est.info.path == model_path_of("lightning")
    est.close()


def model_path_of(stem: str):
    from .movenet_helpers import model_path

    return model_path(stem, "int8")
