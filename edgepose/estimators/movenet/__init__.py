"""MoveNet (SinglePose Lightning / Thunder, MultiPose Lightning, and the two top-down
pairs): its named models and the config keys only they take. The estimators
(estimator.py, topdown.py) are imported when opened."""

from __future__ import annotations

from ..spec import ModelOption, ModelSpec
from .constants import (
    DEFAULT_MIN_POSE_SCORE,
    FIRST_CROPS,
    MULTIPOSE_DEFAULT_LONG_SIDE,
    MULTIPOSE_DIVISOR,
    MULTIPOSE_LONG_SIDE_MAX,
    MULTIPOSE_LONG_SIDE_MIN,
    MULTIPOSE_MAX_INSTANCES,
    STILL_IMAGE_PASSES,
    STILL_IMAGE_PASSES_MAX,
)

_SINGLE_POSE = "only the single-pose MoveNet models (movenet-lightning, movenet-thunder)"


def _multiple_of_divisor(value: int) -> int:
    if value % MULTIPOSE_DIVISOR:
        raise ValueError(f"must be a multiple of {MULTIPOSE_DIVISOR}, got {value}")
    return value


OPTIONS = (
    #: MultiPose (alone or finding people for a top-down model): the frame's long side in its input.
    ModelOption("model.multipose_long_side", "only movenet-multipose and the models that run it "
                                             "(movenet-topdown-*) have a long side to choose",
                type=int, default=MULTIPOSE_DEFAULT_LONG_SIDE, ge=MULTIPOSE_LONG_SIDE_MIN,
                le=MULTIPOSE_LONG_SIDE_MAX, parse=_multiple_of_divisor),
    #: Passes over a still image (detect, eval, bench), each on the crop the previous pass
    #: found; video frames always get one pass each.
    ModelOption("model.still_passes", f"{_SINGLE_POSE} run several passes over a still image",
                type=int, default=STILL_IMAGE_PASSES, ge=1, le=STILL_IMAGE_PASSES_MAX),
    #: The crop after a reset ("centre": TF.js's centred square; "letterbox": the whole
    #: frame padded to a square).
    ModelOption("model.first_crop", f"{_SINGLE_POSE} crop", type=str, default="centre", choices=FIRST_CROPS),
    ModelOption("decode.max_poses", "single-pose models find one person at most"),
)

_LICENCE = "Apache-2.0"
_FILES = "movenet_{}_{}.tflite"


def _singlepose_spec(variant: str, side: int, *, int8_on_cpu: bool) -> ModelSpec:
    """MoveNet SinglePose Lightning and Thunder differ only in name, size, files and
    which build the CPU runs by default."""
    return ModelSpec(
        name=f"movenet-{variant}",
        family="movenet",
        summary=f"MoveNet SinglePose {variant.capitalize()} v4: one person, follows them frame to frame",
        precisions=("float16", "int8"),
        input_rule=f"fixed {side}x{side} crop of the frame; stills: model.still_passes passes",
        edgetpu="no build shipped; the int8 build (static shape) is meant for edgetpu_compiler (untested)",
        licence=_LICENCE,
        files=tuple(_FILES.format(variant, p) for p in ("float16", "int8")),
        opener="edgepose.estimators.movenet.estimator:open_movenet",
        options=frozenset({"model.still_passes", "model.first_crop"}),
        defaults=(("decode.min_pose_score", DEFAULT_MIN_POSE_SCORE), ("decode.max_poses", 1)),
        int8_on_cpu=int8_on_cpu,
    )


def _topdown_spec(refiner: str) -> ModelSpec:
    """MultiPose finds the people, single-pose `refiner` places each one's keypoints."""
    side = 256 if refiner == "thunder" else 192
    return ModelSpec(
        name=f"movenet-topdown-{refiner}",
        family="movenet",
        summary=f"MoveNet top-down: MultiPose finds up to 6 people, SinglePose {refiner.capitalize()} "
                "places each one's keypoints in a crop that follows them",
        precisions=("float16", "int8"),
        input_rule=f"MultiPose at model.multipose_long_side, then one {side}x{side} crop per person",
        edgetpu="no: MultiPose's input is resizable (the compiler needs a static-size copy, not written)",
        licence=_LICENCE,
        files=(_FILES.format("multipose", "int8"), _FILES.format("multipose", "float16"),
               *(_FILES.format(refiner, p) for p in ("int8", "float16"))),
        opener="edgepose.estimators.movenet.topdown:open_topdown",
        options=frozenset({"model.multipose_long_side", "decode.max_poses"}),
        defaults=(("decode.min_pose_score", DEFAULT_MIN_POSE_SCORE),
                  ("decode.max_poses", MULTIPOSE_MAX_INSTANCES)),
        max_poses_limit=MULTIPOSE_MAX_INSTANCES,
    )


SPECS = (
    # Lightning's int8 build scores below TF.js on the dev photos where its float16
    # build does not, so the CPU runs float16 (docs/benchmarks.md, "MoveNet beside PoseNet").
    _singlepose_spec("lightning", 192, int8_on_cpu=False),
    _singlepose_spec("thunder", 256, int8_on_cpu=True),
    ModelSpec(
        name="movenet-multipose",
        family="movenet",
        summary="MoveNet MultiPose Lightning v1: up to 6 people, with boxes",
        precisions=("float16", "int8"),
        input_rule="resizable: long side model.multipose_long_side (multiple of 32), "
                   "the other side padded to a multiple of 32",
        edgetpu="no: resizable input (the compiler needs a static-size copy, not written)",
        licence=_LICENCE,
        files=tuple(_FILES.format("multipose", p) for p in ("float16", "int8")),
        opener="edgepose.estimators.movenet.estimator:open_movenet",
        options=frozenset({"model.multipose_long_side", "decode.max_poses"}),
        defaults=(("decode.min_pose_score", DEFAULT_MIN_POSE_SCORE),
                  ("decode.max_poses", MULTIPOSE_MAX_INSTANCES)),
        max_poses_limit=MULTIPOSE_MAX_INSTANCES,
    ),
    _topdown_spec("thunder"),
    _topdown_spec("lightning"),
)
