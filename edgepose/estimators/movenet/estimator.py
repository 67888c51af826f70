"""MoveNet estimators: SinglePose Lightning / Thunder and MultiPose Lightning.

Both talk to the model only through the TF Lite wrapper's API (edgepose.tflite:
``input_size``, ``input_dtype``, ``input_quantization``, ``input_view()``,
``resize(w, h)``, ``invoke()`` -> dequantised float32 outputs without the
batch axis, ``close()``); every step before and after is pure numpy
(crop.py, decode.py).

Single-pose (stateful, like TF.js): each estimate() runs one pass on the
current crop and derives the next crop from its keypoints, so on a video
stream the crop follows the person and falls back to the whole frame when the
person is lost. ``reset()`` forgets the crop (call it between unrelated
images); ``estimate_still`` runs STILL_IMAGE_PASSES passes after a reset.

``first_crop``: "centre" is TF.js's first crop (the centred square of the short
side, so people at the sides of a landscape frame are not seen);
"letterbox" starts from the whole frame padded to a square instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ...core import Poses
from .constants import DEFAULT_MIN_POSE_SCORE, MULTIPOSE_DEFAULT_LONG_SIDE, STILL_IMAGE_PASSES
from .crop import CropFilter, CropRegion, crop_and_resize, initial_crop, next_crop
from .decode import multipose_input, multipose_pixels, multipose_to_poses, singlepose_to_poses

FIRST_CROPS = ("centre", "letterbox")


def write_pixels(view: np.ndarray, pixels: np.ndarray, quantization: tuple[float, int]) -> None:
    """Put uint8 pixels into the model's input view: as they are for uint8 input
    read with scale 1 and zero point 0 (every MoveNet file here) or a float
    input, otherwise quantised with the input's own scale and zero point."""
    scale, zero = quantization
    if view.dtype == np.float32 or (scale in (0.0, 1.0) and zero == 0):
        view[...] = pixels
        return
    info = np.iinfo(view.dtype)
    q = np.round(pixels.astype(np.float32) / np.float32(scale)) + zero
    view[...] = np.clip(q, info.min, info.max).astype(view.dtype)


class _Base:
    def __init__(self, model: Any, info: Any = None) -> None:
        self.model = model
        self.info = info
        self.last_timing: dict[str, float] = {"preprocess": 0.0, "invoke": 0.0, "decode": 0.0}

    def _invoke(self) -> np.ndarray:
        t = time.perf_counter()
        (out,) = self.model.invoke()[:1]
        self.last_timing["invoke"] = (time.perf_counter() - t) * 1e3
        return out

    def estimate_still(self, rgb: np.ndarray, passes: int | None = None) -> Poses:
        """A still image: reset, then `passes` passes (the last one's poses)."""
        self.reset()
        poses = Poses.empty()
        for _ in range(max(1, passes or 1)):
            poses = self.estimate(rgb)
        return poses

    def close(self) -> None:
        self.model.close()


class MoveNetSinglePose(_Base):
    """SinglePose Lightning (192) or Thunder (256): at most one pose per frame."""

    def __init__(self, model: Any, *, min_pose_score: float = DEFAULT_MIN_POSE_SCORE,
                 first_crop: str = "centre", still_passes: int = STILL_IMAGE_PASSES, info: Any = None) -> None:
        super().__init__(model, info)
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
        self._crop = None
        self._filter.reset()

    def estimate_still(self, rgb: np.ndarray, passes: int | None = None) -> Poses:
        return super().estimate_still(rgb, self.still_passes if passes is None else passes)

    def estimate(self, rgb: np.ndarray) -> Poses:
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        if self._crop is None:
            self._crop = initial_crop(w, h, first_frame=self.first_crop == "centre")
        region = self._crop
        write_pixels(self.model.input_view(), crop_and_resize(rgb, region, self.side, self.side),
                     self.model.input_quantization)
        t1 = time.perf_counter()
        out = self._invoke()
        t2 = time.perf_counter()
        poses = singlepose_to_poses(out, region, w, h)
        if poses.pose_scores[0] < self.min_pose_score:
            self.reset()  # as TF.js: the next frame starts from the first crop again
            poses = Poses.empty()
        else:
            self._crop = self._filter.apply(next_crop(poses.xy[0], poses.scores[0], w, h))
        self.last_timing["preprocess"] = (t1 - t0) * 1e3
        self.last_timing["decode"] = (time.perf_counter() - t2) * 1e3
        return poses


class MoveNetMultiPose(_Base):
    """MultiPose Lightning: up to 6 people with boxes; stateless."""

    def __init__(self, model: Any, *, long_side: int = MULTIPOSE_DEFAULT_LONG_SIDE,
                 min_pose_score: float = DEFAULT_MIN_POSE_SCORE, info: Any = None) -> None:
        super().__init__(model, info)
        multipose_input(1, 1, long_side)  # validates long_side
        self.long_side = int(long_side)
        self.min_pose_score = float(min_pose_score)

    def reset(self) -> None:
        """Nothing is carried between frames."""

    def estimate(self, rgb: np.ndarray) -> Poses:
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        plan = multipose_input(w, h, self.long_side)
        if tuple(self.model.input_size) != plan.size:
            self.model.resize(*plan.size)
        write_pixels(self.model.input_view(), multipose_pixels(rgb, plan), self.model.input_quantization)
        t1 = time.perf_counter()
        out = self._invoke()
        t2 = time.perf_counter()
        poses = multipose_to_poses(out, plan, w, h, self.min_pose_score)
        self.last_timing["preprocess"] = (t1 - t0) * 1e3
        self.last_timing["decode"] = (time.perf_counter() - t2) * 1e3
        return poses
