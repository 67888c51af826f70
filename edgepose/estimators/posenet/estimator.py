"""PoseNet as an `Estimator`: letterbox, invoke, decode, post-process."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...core import Poses
from ...errors import ModelError
from ...runtime import RuntimeModel, open_model
from ...runtime.tflite import check_library
from .. import EstimatorInfo, PreparedInput, model_file, postprocess, resolve_auto
from . import decode as decoding
from . import letterbox
from .constants import (
    CORAL_RAW_MODEL_HINT,
    DEFAULT_INPUT_SIZE,
    DEFAULT_MAX_POSES,
    DEFAULT_MIN_POSE_SCORE,
    MODEL_FILE,
    MODEL_NAME,
    POSENET_DECODER_LIBRARY,
    POSENET_DECODER_OP,
    input_size_problem,
)
from .outputs import PoseNetOutputs, identify_decoded_outputs, identify_raw_outputs, input_lut

log = logging.getLogger(__name__)

#: Environment variable pointing at Coral's posenet_decoder.so, for its decoder-op models.
DECODER_LIBRARY_ENV = "EDGEPOSE_POSENET_DECODER"
_DECODER_HINT = (
    f"that op lives in Coral's {POSENET_DECODER_LIBRARY} (project-posenet's posenet_lib/<arch>/). "
    f"edgepose decodes PoseNet itself: use the raw-output model {CORAL_RAW_MODEL_HINT} from the "
    f"same Coral release, or edgepose's own models (model.name = \"{MODEL_NAME}\"); or point "
    f"{DECODER_LIBRARY_ENV} at the library"
)


def load_decoder_delegate(load_delegate: Callable[..., Any]) -> Any:
    library = os.environ.get(DECODER_LIBRARY_ENV, POSENET_DECODER_LIBRARY)
    try:
        check_library(library)
        return load_delegate(library)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"this is Coral's PoseNet with the {POSENET_DECODER_OP} appended, whose library could "
            f"not be loaded ({exc}): {_DECODER_HINT}"
        ) from exc


class PoseNetEstimator:
    """PoseNet on one TF Lite model; not thread-safe (it owns the interpreter's input).

    cleanup: "none", "seed" (the early clean-up, per pose) or "seed-single"
    (everyone merged into one person), see postprocess. clip=False keeps
    keypoints PoseNet puts past the frame border where it put them (as TF.js).
    """

    def __init__(
        self,
        model: RuntimeModel,
        *,
        output_stride: int | None,
        max_poses: int,
        min_pose_score: float,
        min_part_score: float,
        nms_radius: float,
        cleanup: str = "none",
        min_keypoints: int = 0,
        clip: bool = True,
        name: str = MODEL_NAME,
        threads: int = 1,
    ) -> None:
        if cleanup not in postprocess.CLEANUPS:
            raise ValueError(f"cleanup must be one of {sorted(postprocess.CLEANUPS)}, got {cleanup!r}")
        self.model = model
        self.max_poses = max_poses
        self.min_pose_score = min_pose_score
        self.min_part_score = min_part_score
        self.nms_radius = nms_radius
        self.cleanup = cleanup
        self.min_keypoints = min_keypoints
        self.clip = clip
        self.input_lut = input_lut(model.input_dtype, model.input_quantization)
        view = model.input_view()  # its shape and type, for inputs prepared off the interpreter
        self._input_shape, self._input_dtype = view.shape, view.dtype
        details = model.output_details
        self._decoded = identify_decoded_outputs(details)
        self._raw = None if self._decoded else identify_raw_outputs(details)
        self.output_stride = self._check_stride(output_stride)
        self.info = EstimatorInfo(
            name=name,
            family="posenet",
            input_size=model.input_size,
            precision="float32" if model.input_dtype == np.float32 else "int8",
            accelerator=model.accelerator,
            runtime=model.runtime,
            path=model.path,
            threads=threads,
        )
        self.last_timing: dict[str, float] = {"preprocess": 0.0, "invoke": 0.0, "decode": 0.0}

    def _check_stride(self, asked: int | None) -> int:
        """The output stride the heatmap size says, checked against the one asked for."""
        if self._raw is None:  # the decoder op works it out itself
            return asked or 16
        heat_h, heat_w = (int(v) for v in self.model.output_details[self._raw.heatmaps]["shape"][1:3])
        width, height = self.model.input_size
        inferred = (height - 1) // (heat_h - 1) if heat_h > 1 else None
        if asked is not None and inferred is not None and inferred != asked:
            raise ModelError(
                f"{self.model.path.name}: output stride {asked} was asked for but the model's "
                f"{width}x{height} input gives a {heat_w}x{heat_h} heatmap (stride {inferred}): "
                "set model.stride to match the file"
            )
        return asked or inferred or 16

    def run_model(self) -> PoseNetOutputs | Poses:
        """Invoke on the input as it stands: raw outputs, or, from Coral's decoder-op
        models, Poses in model-input pixels (conversion checks and tests look here)."""
        outputs = self.model.invoke()
        if self._decoded is not None:
            return self._decoded.read(outputs)
        return self._raw.read(outputs, self.output_stride)

    def _plan(self, rgb: np.ndarray) -> letterbox.Letterbox:
        """Where the model input sits in this frame."""
        input_w, input_h = self.model.input_size
        return letterbox.plan(rgb.shape[1], rgb.shape[0], input_w, input_h)

    def prepare(self, rgb: np.ndarray) -> PreparedInput:
        """The letterboxed input for `rgb`, made in an array of its own: it needs no
        earlier frame and touches no interpreter, so any thread may call it while
        another runs the model (the daemon's capture thread does)."""
        t0 = time.perf_counter()
        box = self._plan(rgb)
        tensor = np.empty(self._input_shape, self._input_dtype)
        letterbox.letterbox_into(rgb, box, tensor, self.input_lut)
        return PreparedInput(self, tensor, box, rgb.shape, (time.perf_counter() - t0) * 1e3)

    def estimate(self, rgb: np.ndarray, prepared: PreparedInput | None = None) -> Poses:
        """(H, W, 3) uint8 RGB -> Poses in frame pixels; `prepared`: `prepare(rgb)`,
        made earlier (then last_timing's "preprocess" includes its time)."""
        t0 = time.perf_counter()
        if prepared is None:
            box = self._plan(rgb)
            letterbox.letterbox_into(rgb, box, self.model.input_view(), self.input_lut)
            ahead_ms = 0.0
        else:
            if prepared.made_by is not self or prepared.frame_shape != rgb.shape:
                raise ValueError("prepared input was made by another estimator or for another frame")
            box, ahead_ms = prepared.transform, prepared.preprocess_ms
            np.copyto(self.model.input_view(), prepared.tensor)
        t1 = time.perf_counter()
        outputs = self.run_model()
        t2 = time.perf_counter()
        if isinstance(outputs, Poses):  # the model decoded itself (Coral's decoder op)
            poses = postprocess.best_poses(outputs, self.max_poses)
        else:
            poses = decoding.decode(  # the best max_poses, by pose score
                outputs,
                max_poses=self.max_poses,
                min_part_score=self.min_part_score,
                nms_radius=self.nms_radius,
            )
        poses = letterbox.to_frame(poses, box, clip=self.clip)
        poses = postprocess.CLEANUPS[self.cleanup](poses)
        poses = postprocess.filter_poses(
            poses,
            min_pose_score=self.min_pose_score,
            min_keypoints=self.min_keypoints,
            min_part_score=self.min_part_score,
        )
        t3 = time.perf_counter()
        self.last_timing = {
            "preprocess": (t1 - t0) * 1e3 + ahead_ms,
            "invoke": (t2 - t1) * 1e3,
            "decode": (t3 - t2) * 1e3,
        }
        return poses

    def estimate_still(self, rgb: np.ndarray) -> Poses:
        """A still image: PoseNet keeps no state, so one estimate."""
        self.reset()
        return self.estimate(rgb)

    def reset(self) -> None:
        """PoseNet keeps no state between frames."""

    def time_invoke(self, runs: int, warmup: int) -> list[float]:
        return self.model.time_invoke(runs, warmup)

    def close(self) -> None:
        self.model.close()


def posenet_file(model: Any) -> Path:
    """model.path when set, else the bundled build for model.stride and model.quantized."""
    if model.path:
        path = Path(model.path)
        if not path.is_file():
            raise ModelError(f"model.path: {path} does not exist (expected a PoseNet .tflite file)")
        return path
    return model_file(MODEL_FILE.format(stride=model.stride, precision="int8" if model.quantized else "float32"))


def open_posenet(model: Any, decode: Any, *, clip: bool = True) -> PoseNetEstimator:
    """Load the PoseNet the config names, at the config's input size (checked against the stride).

    clip=False keeps keypoints past the frame border (as TF.js does, for the reference checks)."""
    model = resolve_auto(model)
    path = posenet_file(model)
    if model.input_size is not None and (problem := input_size_problem(model.input_size, model.stride)):
        raise ModelError(f"model.input_size: {problem}")
    tflite = open_model(
        path,
        accelerator=model.accelerator,
        device=model.edgetpu_device,
        threads=model.threads,
        input_size=model.input_size,
        default_input_size=DEFAULT_INPUT_SIZE,
        custom_ops={POSENET_DECODER_OP: (load_decoder_delegate, _DECODER_HINT)},
        cpu_hint=f"edgepose's {MODEL_NAME} or Coral's {CORAL_RAW_MODEL_HINT}",
    )
    estimator = PoseNetEstimator(
        tflite,
        output_stride=model.stride,
        # None (a [decode] section built without load_config): PoseNet's own defaults
        max_poses=DEFAULT_MAX_POSES if decode.max_poses is None else decode.max_poses,
        min_pose_score=DEFAULT_MIN_POSE_SCORE if decode.min_pose_score is None else decode.min_pose_score,
        min_part_score=decode.min_part_score,
        nms_radius=decode.nms_radius,
        cleanup=decode.cleanup,
        min_keypoints=decode.min_keypoints,
        clip=clip,
        threads=model.threads,
    )
    info = estimator.info
    log.info(
        "model %s (%s) on %s (%s): input %dx%d, output stride %d",
        info.path.name, info.precision, info.accelerator, info.runtime,
        info.input_size[0], info.input_size[1], estimator.output_stride,
    )
    return estimator
