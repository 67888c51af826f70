"""PoseNet (TF.js PoseNet, MobileNetV1 0.75): its named model, the config keys only it
takes, and its rule across them. The estimator (estimator.py) is imported when opened."""

from __future__ import annotations

from ..spec import ModelOption, ModelSpec
from .constants import (
    DEFAULT_MAX_POSES,
    DEFAULT_MIN_POSE_SCORE,
    DEFAULT_NMS_RADIUS,
    DEFAULT_STRIDE,
    MAX_NMS_RADIUS,
    MODEL_NAME,
    OUTPUT_STRIDES,
    input_size_problem,
    parse_input_size,
)

OPTIONS = (
    ModelOption("model.stride", "only PoseNet models have an output stride",
                type=int, default=DEFAULT_STRIDE, choices=OUTPUT_STRIDES),
    #: (w, h); None ("auto"): 481x353 for a resizable file, else the file's own size.
    ModelOption("model.input_size", "only PoseNet models take an input size (single-pose MoveNet runs at its "
                                    "fixed size, MultiPose at model.multipose_long_side)",
                type=tuple[int, int] | None, default=None, toml=str, parse=parse_input_size, auto=True),
    ModelOption("decode.nms_radius", "only PoseNet's decoder has an NMS radius",  # model-input pixels
                type=float, default=DEFAULT_NMS_RADIUS, gt=0, le=MAX_NMS_RADIUS),
)


def _check(model, decode, bad: frozenset[str]) -> list[str]:
    """The input size must fit the output stride."""
    if model.input_size is None or {"model.stride", "model.input_size"} & bad:
        return []
    if problem := input_size_problem(model.input_size, model.stride):
        return [f"model.input_size: {problem} (model.stride {model.stride})"]
    return []


SPECS = (
    ModelSpec(
        name=MODEL_NAME,
        family="posenet",
        summary="PoseNet MobileNetV1 0.75, multi-person (TF.js PoseNet, converted)",
        precisions=("float32", "int8"),
        input_rule="resizable: W-1 and H-1 multiples of model.stride (8, 16, 32); default 481x353",
        edgetpu="no build shipped; compile the int8 build with edgetpu_compiler (docs/coral.md)",
        licence="Apache-2.0",
        files=tuple(
            f"posenet_mnv1_075_stride{s}_{p}.tflite" for s in (8, 16, 32) for p in ("float32", "int8")
        ),
        opener="edgepose.estimators.posenet.estimator:open_posenet",
        options=frozenset({"model.stride", "model.input_size", "decode.nms_radius", "decode.max_poses"}),
        defaults=(("decode.min_pose_score", DEFAULT_MIN_POSE_SCORE),
                  ("decode.max_poses", DEFAULT_MAX_POSES)),
        check=_check,
    ),
)
