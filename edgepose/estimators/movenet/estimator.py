"""MoveNet estimators: SinglePose Lightning / Thunder and MultiPose Lightning.

Both talk to the model only through edgepose.runtime's `RuntimeModel`
(``input_size``, ``input_view()``, ``resize(w, h)``, ``invoke()`` -> dequantised
float32 outputs without the batch axis, ``close()``); every step before and
after is pure numpy (crop.py, decode.py). `open_movenet` opens the file the
config names (the bundled int8 or float16 build, or model.path) and checks that
its outputs are the family's.

Single-pose (stateful, like TF.js): each estimate() runs one pass on the
current crop and derives the next crop from its keypoints, so on a video
stream the crop follows the person and falls back to the whole frame when the
person is lost. ``reset()`` forgets the crop (call it between unrelated
images); ``estimate_still`` runs STILL_IMAGE_PASSES passes after a reset.

``first_crop``: "centre" is TF.js's first crop (the centred square of the short
side, so people at the sides of a landscape frame are not seen);
"letterbox" starts from the whole frame padded to a square instead. The padded
square makes people smaller and lost more than it found on the dev photos, so
"centre" stays the default (most of them have their person near the middle; a
camera that watches the sides of its frame may prefer "letterbox" with several
passes; the figures: docs/benchmarks.md).

MultiPose ``long_side`` (TF.js: 256): a longer side mostly scores higher on the
dev photos, and invoke time grows with the pixel count (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...constants import NUM_PARTS
from ...core import Poses
from ...errors import ModelError
from ...runtime import RuntimeModel, open_model
from .. import EstimatorInfo, model_file, postprocess, resolve_auto
from .constants import (
    DEFAULT_MIN_POSE_SCORE,
    FIRST_CROPS,
    MODEL_FILE,
    MODEL_STEMS,
    MULTIPOSE_DEFAULT_LONG_SIDE,
    MULTIPOSE_INSTANCE_SIZE,
    MULTIPOSE_MAX_INSTANCES,
    QUANTIZED_PRECISION,
    SINGLEPOSE_INPUT_SIDE,
    STILL_IMAGE_PASSES,
)
from .crop import CropFilter, CropRegion, crop_and_resize, initial_crop, next_crop
from .decode import multipose_input, multipose_pixels, multipose_to_poses, singlepose_to_poses

log = logging.getLogger(__name__)

_TIMING_KEYS = ("preprocess", "invoke", "decode")


def write_pixels(view: np.ndarray, pixels: np.ndarray) -> None:
    """Put uint8 pixels into the model's input view.

    Every MoveNet file here reads its input as raw pixels: the float builds take
    uint8 (or float32) pixels as they are; the int8 builds take uint8 pixels read
    through their quantisation (scale 1/127.5, zero point 128) as the graph's
    normalised input p / 127.5 - 1, up to half a grey level (convert_movenet.py).
    A signed int8 input gets p - 128, the same bytes reinterpreted.
    """
    if view.dtype == np.int8:
        view[...] = (pixels.astype(np.int16) - 128).astype(np.int8)
    else:
        view[...] = pixels


def file_precision(model: Any) -> str:
    """int8 when the input is quantised (the int8 builds); else float16 unless the
    file name says float32 (both float builds take uint8 pixels, so the input
    type cannot tell them apart)."""
    scale, _ = getattr(model, "input_quantization", (0.0, 0))
    if scale:
        return "int8"
    return "float32" if "float32" in Path(getattr(model, "path", "")).name else "float16"


def _info(model: Any, name: str, threads: int) -> EstimatorInfo:
    return EstimatorInfo(
        name=name,
        family="movenet",
        input_size=tuple(model.input_size),
        precision=file_precision(model),
        accelerator=getattr(model, "accelerator", "cpu"),
        runtime=getattr(model, "runtime", "unknown"),
        path=Path(getattr(model, "path", "")),
        threads=threads,
    )


class _Base:
    """What both MoveNet estimators share: timing, post-filters, still images, close."""

    still_passes = 1

    def __init__(self, model: Any, *, name: str, threads: int, clip: bool, cleanup: str,
                 min_keypoints: int, min_part_score: float) -> None:
        if cleanup not in postprocess.CLEANUPS:
            raise ValueError(f"cleanup must be one of {sorted(postprocess.CLEANUPS)}, got {cleanup!r}")
        self.model = model
        self.info = _info(model, name, threads)
        self.clip = clip
        self.cleanup = cleanup
        self.min_keypoints = int(min_keypoints)
        self.min_part_score = float(min_part_score)
        self.last_timing: dict[str, float] = dict.fromkeys(_TIMING_KEYS, 0.0)

    def _invoke(self) -> np.ndarray:
        t = time.perf_counter()
        (out,) = self.model.invoke()[:1]
        self.last_timing["invoke"] = (time.perf_counter() - t) * 1e3
        return out

    def _finish(self, poses: Poses, frame_w: int, frame_h: int) -> Poses:
        """Clip to the frame (as PoseNet's), then the model-agnostic clean-ups and filters."""
        if self.clip and len(poses):
            xy = poses.xy.copy()
            np.clip(xy[..., 0], 0, frame_w - 1, out=xy[..., 0])
            np.clip(xy[..., 1], 0, frame_h - 1, out=xy[..., 1])
            poses = poses.replace(xy=xy)
        poses = postprocess.CLEANUPS[self.cleanup](poses)
        if self.min_keypoints:
            poses = postprocess.filter_poses(poses, min_keypoints=self.min_keypoints,
                                             min_part_score=self.min_part_score)
        return poses

    def estimate_still(self, rgb: np.ndarray, passes: int | None = None) -> Poses:
        """An unrelated still image: reset, then `passes` passes (default: the
        estimator's still_passes); the last pass's poses. last_timing sums the passes."""
        self.reset()
        poses = Poses.empty()
        total = dict.fromkeys(_TIMING_KEYS, 0.0)
        for _ in range(max(1, self.still_passes if passes is None else passes)):
            poses = self.estimate(rgb)
            for key in _TIMING_KEYS:
                total[key] += self.last_timing[key]
        self.last_timing = total
        return poses

    def reset(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def time_invoke(self, runs: int, warmup: int) -> list[float]:
        """The model's invoke alone (top-down: `model` is the refiner, which runs per person)."""
        return self.model.time_invoke(runs, warmup)

    def estimate(self, rgb: np.ndarray) -> Poses:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        self.model.close()


class MoveNetSinglePose(_Base):
    """SinglePose Lightning (192) or Thunder (256): at most one pose per frame."""

    def __init__(self, model: Any, *, min_pose_score: float = DEFAULT_MIN_POSE_SCORE,
                 first_crop: str = "centre", still_passes: int = STILL_IMAGE_PASSES,
                 name: str = "movenet-lightning", threads: int = 1, clip: bool = True,
                 cleanup: str = "none", min_keypoints: int = 0, min_part_score: float = 0.0) -> None:
        super().__init__(model, name=name, threads=threads, clip=clip, cleanup=cleanup,
                         min_keypoints=min_keypoints, min_part_score=min_part_score)
        if first_crop not in FIRST_CROPS:
            raise ValueError(f"first_crop must be one of {FIRST_CROPS}, not {first_crop!r}")
        w, h = model.input_size
        if w != h:
            raise ValueError(f"single-pose MoveNet needs a square input, the model has {w}x{h}")
        self.side = int(w)
        self.min_pose_score = float(min_pose_score)
        self.first_crop = first_crop
        self.still_passes = int(still_passes)
        self._crop: CropRegion | None = None
        self._filter = CropFilter()

    def reset(self) -> None:
        """Forget the crop: the next frame starts from the first crop."""
        self._crop = None
        self._filter.reset()

    def estimate(self, rgb: np.ndarray) -> Poses:
        """One pass on the current crop; the next crop follows the person found."""
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        if self._crop is None:
            self._crop = initial_crop(w, h, first_frame=self.first_crop == "centre")
        region = self._crop
        write_pixels(self.model.input_view(), crop_and_resize(rgb, region, self.side, self.side))
        t1 = time.perf_counter()
        out = self._invoke()
        t2 = time.perf_counter()
        poses = singlepose_to_poses(out, region, w, h)
        if poses.pose_scores[0] < self.min_pose_score:
            self.reset()  # as TF.js: the next frame starts from the first crop again
            poses = Poses.empty()
        else:
            self._crop = self._filter.apply(next_crop(poses.xy[0], poses.scores[0], w, h))
            poses = self._finish(poses, w, h)
        self.last_timing["preprocess"] = (t1 - t0) * 1e3
        self.last_timing["decode"] = (time.perf_counter() - t2) * 1e3
        return poses


class MoveNetMultiPose(_Base):
    """MultiPose Lightning: up to 6 people with the model's own boxes; stateless.

    The input is resized per frame size (long side `long_side`, sides padded to
    multiples of 32); `info.input_size` follows the size last used."""

    def __init__(self, model: Any, *, long_side: int = MULTIPOSE_DEFAULT_LONG_SIDE,
                 min_pose_score: float = DEFAULT_MIN_POSE_SCORE, max_poses: int = MULTIPOSE_MAX_INSTANCES,
                 name: str = "movenet-multipose", threads: int = 1, clip: bool = True,
                 cleanup: str = "none", min_keypoints: int = 0, min_part_score: float = 0.0) -> None:
        multipose_input(1, 1, long_side)  # validates long_side
        super().__init__(model, name=name, threads=threads, clip=clip, cleanup=cleanup,
                         min_keypoints=min_keypoints, min_part_score=min_part_score)
        self.long_side = int(long_side)
        self.min_pose_score = float(min_pose_score)
        self.max_poses = int(max_poses)

    def reset(self) -> None:
        """Nothing is carried between frames."""

    def estimate(self, rgb: np.ndarray) -> Poses:
        """Resize and pad, invoke, instances above min_pose_score (best max_poses) with boxes."""
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        plan = multipose_input(w, h, self.long_side)
        if tuple(self.model.input_size) != plan.size:
            self.model.resize(*plan.size)
            self.info = dataclasses.replace(self.info, input_size=tuple(self.model.input_size))
        write_pixels(self.model.input_view(), multipose_pixels(rgb, plan))
        t1 = time.perf_counter()
        out = self._invoke()
        t2 = time.perf_counter()
        poses = multipose_to_poses(out, plan, w, h, self.min_pose_score)
        if len(poses) > self.max_poses:
            order = np.argsort(-poses.pose_scores, kind="stable")[: self.max_poses]
            poses = poses.select(np.sort(order))
        poses = self._finish(poses, w, h)
        self.last_timing["preprocess"] = (t1 - t0) * 1e3
        self.last_timing["decode"] = (time.perf_counter() - t2) * 1e3
        return poses


# --- opening from the config ------------------------------------------------------


def movenet_file(model: Any) -> Path:
    """model.path when set, else the bundled build of model.name for model.quantized."""
    if model.path:
        path = Path(model.path).expanduser()
        if not path.is_file():
            raise ModelError(f"model.path: {path} does not exist (expected a {model.name} .tflite file)")
        return path
    return model_file(MODEL_FILE.format(stem=MODEL_STEMS[model.name],
                                        precision=QUANTIZED_PRECISION[bool(model.quantized)]))


def _check_outputs(tflite: RuntimeModel, name: str) -> None:
    """The first output must be the family's: (1, 1, 17, 3) keypoints or (1, 6, 56) poses."""
    details = tflite.output_details
    shape = [int(v) for v in details[0]["shape"]] if details else []
    if name == "movenet-multipose":
        ok = len(shape) == 3 and shape[2] == MULTIPOSE_INSTANCE_SIZE and 1 <= shape[1] <= MULTIPOSE_MAX_INSTANCES
        expected = f"[1, {MULTIPOSE_MAX_INSTANCES}, {MULTIPOSE_INSTANCE_SIZE}] poses"
    else:
        ok = len(shape) == 4 and shape[1:] == [1, NUM_PARTS, 3]
        w, h = tflite.input_size
        ok = ok and w == h
        expected = f"[1, 1, {NUM_PARTS}, 3] keypoints from a square input"
    if not ok:
        raise ModelError(
            f"{tflite.path.name} is not a {name} model: its first output is {shape}, "
            f"input {tflite.input_size[0]}x{tflite.input_size[1]}; {name} gives {expected}"
        )


def open_movenet(model: Any, decode: Any, *, clip: bool = True) -> MoveNetSinglePose | MoveNetMultiPose:
    """Load the MoveNet model.name names (the config has been validated for that model).

    clip=False keeps keypoints past the frame border (as TF.js, for the reference checks)."""
    if model.name not in MODEL_STEMS:
        raise ModelError(f"{model.name!r} is not a MoveNet model (known: {', '.join(MODEL_STEMS)})")
    model = resolve_auto(model)
    path = movenet_file(model)
    multipose = model.name == "movenet-multipose"
    long_side = model.multipose_long_side
    tflite = open_model(
        path,
        accelerator=model.accelerator,
        device=model.edgetpu_device,
        threads=model.threads,
        # MultiPose: sized for a 4:3 frame (the camera's 640x480 default) until the
        # first frame says its shape; also what `bench --model-only` times. Single-pose
        # files are fixed; a resizable file given as one gets the model's square, so
        # that _check_outputs can say what it is instead.
        default_input_size=(multipose_input(4, 3, long_side).size if multipose
                            else (SINGLEPOSE_INPUT_SIDE[model.name],) * 2),
        cpu_hint=f"edgepose's bundled {model.name}",
    )
    try:
        _check_outputs(tflite, model.name)
        common = dict(name=model.name, threads=model.threads, clip=clip, cleanup=decode.cleanup,
                      min_keypoints=decode.min_keypoints, min_part_score=decode.min_part_score)
        min_pose_score = DEFAULT_MIN_POSE_SCORE if decode.min_pose_score is None else decode.min_pose_score
        if multipose:
            max_poses = MULTIPOSE_MAX_INSTANCES if decode.max_poses is None else decode.max_poses
            estimator: MoveNetSinglePose | MoveNetMultiPose = MoveNetMultiPose(
                tflite, long_side=long_side, min_pose_score=min_pose_score, max_poses=max_poses, **common)
        else:
            estimator = MoveNetSinglePose(tflite, min_pose_score=min_pose_score, first_crop=model.first_crop,
                                          still_passes=model.still_passes, **common)
    except (ModelError, ValueError) as exc:
        tflite.close()
        raise ModelError(str(exc)) from exc
    info = estimator.info
    log.info("model %s (%s) on %s (%s): input %dx%d", info.path.name, info.precision, info.accelerator,
             info.runtime, info.input_size[0], info.input_size[1])
    return estimator
