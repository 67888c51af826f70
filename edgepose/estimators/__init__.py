"""Pose estimators: one interface for every model family, and the registry of named models.

A model family (PoseNet, MoveNet, ...) lives in a folder of its own with its
constants, pure pre/post-processing and an estimator class; it reaches the TF
Lite runtime only through `edgepose.runtime`. The rest of edgepose sees only
`Estimator`: an RGB frame in, `Poses` in frame pixels out. To add a model,
write its folder and add a `ModelSpec` to `MODELS` below.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..core import Poses
from ..errors import ModelError
from .movenet import constants as _movenet
from .posenet import constants as _posenet

if TYPE_CHECKING:
    from ..config import DecodeConfig, ModelConfig

log = logging.getLogger(__name__)

#: Environment variable naming the folder that holds the .tflite files.
MODELS_DIR_ENV = "EDGEPOSE_MODELS_DIR"


@dataclass(frozen=True, slots=True)
class EstimatorInfo:
    """What an estimator runs, for logs, messages, stats and `edgepose check`."""

    name: str  # registry name, e.g. "posenet-mnv1-075"
    family: str  # "posenet", "movenet"
    input_size: tuple[int, int]  # (w, h) the model runs at
    precision: str  # "float32", "float16", "int8"
    accelerator: str  # "cpu", "edgetpu"
    runtime: str  # "ai-edge-litert", "tflite-runtime"
    path: Path  # the model file
    threads: int = 1
    #: True: the model looks at people at the full frame's detail (it crops them), so
    #: picamera2 gives it the main stream, not a small "lores" copy.
    full_frame: bool = False

    @property
    def lores_size(self) -> tuple[int, int] | None:
        """The box picamera2's small inference stream is fitted into; None: no lores stream."""
        return None if self.full_frame else self.input_size

    @property
    def label(self) -> str:
        """Short text for messages: file stem and input size."""
        return f"{self.path.stem} {self.input_size[0]}x{self.input_size[1]}"


@dataclass(frozen=True, slots=True)
class PreparedInput:
    """A frame's model input, made ahead of inference by an estimator's `prepare`.

    Families whose pre-processing needs no earlier frame (PoseNet's letterbox)
    offer `prepare(rgb) -> PreparedInput`; the daemon's capture thread calls it
    while the model runs on the frame before, and the inference thread passes
    it to `estimate(rgb, prepared)`, which then only copies it into the
    interpreter. Families that carry state from frame to frame (single-pose
    MoveNet's crop) have no `prepare`.
    """

    made_by: Any  # the estimator that made it: only that one can use it
    tensor: np.ndarray  # the input tensor's contents, (h, w, 3) in its dtype
    transform: Any  # the family's mapping from model input back to the frame
    frame_shape: tuple[int, ...]  # the rgb it was made from, (H, W, 3)
    preprocess_ms: float  # what making it took (on the capture thread)


class Estimator(Protocol):
    """What every model family implements. Not thread-safe: one caller at a time
    (`prepare`, where a family has it, is the exception: it touches no state).
    `estimate` takes an optional `prepared` input from that family's `prepare`."""

    info: EstimatorInfo
    #: Milliseconds of the last estimate(): "preprocess", "invoke", "decode".
    last_timing: dict[str, float]

    def estimate(self, rgb: np.ndarray) -> Poses:
        """(H, W, 3) uint8 RGB -> every person found, in frame pixels."""
        ...

    def estimate_still(self, rgb: np.ndarray) -> Poses:
        """An unrelated still image (`detect`, `eval`, `bench`): reset, then as many
        passes as the family documents (PoseNet: one; single-pose MoveNet:
        model.still_passes, each on the crop the previous one found).
        `last_timing` then sums the passes."""
        ...

    def reset(self) -> None:
        """Forget state carried between frames (a crop that follows a person):
        call it between unrelated images."""
        ...

    def time_invoke(self, runs: int, warmup: int) -> list[float]:
        """Milliseconds of each of `runs` model invokes alone, after `warmup` untimed
        ones (`edgepose bench --model-only`). A family that runs two models times
        the one that runs on every person (top-down MoveNet: the refiner)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One named model in the registry."""

    name: str
    family: str
    summary: str
    precisions: tuple[str, ...]
    input_rule: str  # how the input size is chosen, for `edgepose models`
    edgetpu: str  # whether and how an Edge TPU build can be had
    licence: str  # of the weights; models/LICENSE-weights.md says where it is stated
    files: tuple[str, ...]  # file names in models_dir()
    #: "module:function" taking (ModelConfig, DecodeConfig) -> Estimator; imported when opened.
    opener: str
    #: Config keys that only some models take (config.FAMILY_KEYS) which this one does:
    #: any other of them written in a config is an error naming model.name.
    options: frozenset[str] = frozenset()
    #: Defaults of keys whose default depends on the model (config.MODEL_DEFAULT_KEYS),
    #: used when the config does not write them.
    defaults: tuple[tuple[str, object], ...] = ()
    #: False when the int8 build scores below the reference (TF.js on the same weights)
    #: on the dev photos where the float build does not: `model.quantized = "auto"`
    #: then picks the float build on the CPU on every runtime (runtime/defaults.py).
    int8_on_cpu: bool = True
    #: The most people the model can find (decode.max_poses may not ask for more); None: no limit.
    max_poses_limit: int | None = None


_MOVENET_LICENCE = "Apache-2.0"
_MOVENET_FILES = "movenet_{}_{}.tflite"

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
        licence=_MOVENET_LICENCE,
        files=tuple(_MOVENET_FILES.format(variant, p) for p in ("float16", "int8")),
        opener="edgepose.estimators.movenet.estimator:open_movenet",
        options=frozenset({"model.still_passes", "model.first_crop"}),
        defaults=(("decode.min_pose_score", _movenet.DEFAULT_MIN_POSE_SCORE), ("decode.max_poses", 1)),
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
        licence=_MOVENET_LICENCE,
        files=(_MOVENET_FILES.format("multipose", "int8"), _MOVENET_FILES.format("multipose", "float16"),
               *(_MOVENET_FILES.format(refiner, p) for p in ("int8", "float16"))),
        opener="edgepose.estimators.movenet.topdown:open_topdown",
        options=frozenset({"model.multipose_long_side", "decode.max_poses"}),
        defaults=(("decode.min_pose_score", _movenet.DEFAULT_MIN_POSE_SCORE),
                  ("decode.max_poses", _movenet.MULTIPOSE_MAX_INSTANCES)),
        max_poses_limit=_movenet.MULTIPOSE_MAX_INSTANCES,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="posenet-mnv1-075",
            family="posenet",
            summary="PoseNet MobileNetV1 0.75, multi-person (TF.js PoseNet, converted)",
            precisions=("float32", "int8"),
            input_rule="resizable: W-1 and H-1 multiples of model.stride (8, 16, 32); default 481x353",
            edgetpu="no build shipped; compile the int8 build with edgetpu_compiler (README)",
            licence="Apache-2.0",
            files=tuple(
                f"posenet_mnv1_075_stride{s}_{p}.tflite" for s in (8, 16, 32) for p in ("float32", "int8")
            ),
            opener="edgepose.estimators.posenet.estimator:open_posenet",
            options=frozenset({"model.stride", "model.input_size", "decode.nms_radius", "decode.max_poses"}),
            defaults=(("decode.min_pose_score", _posenet.DEFAULT_MIN_POSE_SCORE),
                      ("decode.max_poses", _posenet.DEFAULT_MAX_POSES)),
        ),
        # Lightning int8, 3 passes: AP 0.160 on the dev photos, below TF.js's 0.163
        # (2 passes); float16 0.171, for about 4 ms more an invoke (README). Thunder
        # int8 scores as its float16 build (0.215 / 0.213) at half the time.
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
            licence=_MOVENET_LICENCE,
            files=tuple(_MOVENET_FILES.format("multipose", p) for p in ("float16", "int8")),
            opener="edgepose.estimators.movenet.estimator:open_movenet",
            options=frozenset({"model.multipose_long_side", "decode.max_poses"}),
            defaults=(("decode.min_pose_score", _movenet.DEFAULT_MIN_POSE_SCORE),
                      ("decode.max_poses", _movenet.MULTIPOSE_MAX_INSTANCES)),
            max_poses_limit=_movenet.MULTIPOSE_MAX_INSTANCES,
        ),
        _topdown_spec("thunder"),
        _topdown_spec("lightning"),
    )
}
#: The model a config without [model] runs: the one that sees the people a fall sensor
#: watches, lying down included (docs/falls.md, "The default model").
DEFAULT_MODEL = "movenet-topdown-thunder"


def models_dir() -> Path:
    """Where the bundled .tflite files are.

    $EDGEPOSE_MODELS_DIR when set; else the checkout's models/ (a clone or an
    editable install); else <prefix>/share/edgepose/models, where a regular
    `pip install .` puts them.
    """
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root / "models"
    return Path(sysconfig.get_path("data")) / "share" / "edgepose" / "models"


def model_file(name: str) -> Path:
    """The bundled file `name`, or a ModelError that says where it was looked for."""
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(
            f"model file {path} is missing: see models/SOURCES.md, or point "
            f"{MODELS_DIR_ENV} at the folder that holds it"
        )
    return path


def resolve_auto(model: ModelConfig) -> ModelConfig:
    """`model.quantized = "auto"` and `model.threads = 0` decided for the TF Lite runtime
    installed, the cores this process may use and the accelerator (runtime/defaults.py)."""
    if model.quantized is not None and model.threads:
        return model
    from ..runtime.defaults import choose_defaults
    from ..runtime.tflite import import_runtime

    runtime = import_runtime()[2]
    compiled = Path(model.path).name.endswith("_edgetpu.tflite") if model.path else False
    accelerator = "edgetpu" if compiled or model.accelerator == "edgetpu" else "cpu"
    spec = MODELS.get(model.name)
    defaults = choose_defaults(runtime, len(os.sched_getaffinity(0)), accelerator,
                               int8_on_cpu=spec is None or spec.int8_on_cpu)
    log.info("model defaults: %s, %d thread(s) (%s)", defaults.precision, defaults.threads, defaults.reason)
    return dataclasses.replace(
        model,
        quantized=defaults.precision == "int8" if model.quantized is None else model.quantized,
        threads=model.threads or defaults.threads,
    )


def open_estimator(model: ModelConfig, decode: DecodeConfig) -> Estimator:
    """The estimator `model.name` names, loaded and ready. Each family's opener decides
    the "auto" settings first (`resolve_auto`)."""
    spec = MODELS.get(model.name)
    if spec is None:
        raise ModelError(f"unknown model {model.name!r} (known: {', '.join(MODELS)})")
    module_name, _, function = spec.opener.partition(":")
    opener: Callable[..., Estimator] = getattr(importlib.import_module(module_name), function)
    return opener(model, decode)


__all__ = ["DEFAULT_MODEL", "MODELS", "Estimator", "EstimatorInfo", "ModelSpec", "model_file",
           "models_dir", "open_estimator"]
