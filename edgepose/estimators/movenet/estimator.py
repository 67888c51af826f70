"""MoveNet estimators: SinglePose Lightning / Thunder and MultiPose Lightning.

Both talk to the model only through the TF Lite wrapper's API (edgepose.tflite:
``input_size``, ``input_view()``,
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
"letterbox" starts from the whole frame padded to a square instead. Measured
on the 34 dev photos (float16, OKS AP, 1 / 2 / 3 passes): Lightning centre
0.130 / 0.163 / 0.171, letterbox 0.081 / 0.151 / 0.157; Thunder centre 0.178 /
0.205 / 0.214, letterbox 0.147 / 0.212 / 0.218. The padded square makes people
smaller and loses more than it finds at the sides, so "centre" stays the
default (most dev photos have their person near the middle; a camera that
watches the sides of its frame may prefer "letterbox" with several passes).

MultiPose ``long_side`` (TF.js: 256), OKS AP on the dev photos with the
float16 build: 256 0.200, 320 0.245, 384 0.272, 448 0.263, 512 0.285; the
int8 build: 256 0.184, 320 0.222, 384 0.241, 512 0.255. Invoke time grows with
the pixel count.
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
        write_pixels(self.model.input_view(), multipose_pixels(rgb, plan))
        t1 = time.perf_counter()
        out = self._invoke()
        t2 = time.perf_counter()
        poses = multipose_to_poses(out, plan, w, h, self.min_pose_score)
        self.last_timing["preprocess"] = (t1 - t0) * 1e3
        self.last_timing["decode"] = (time.perf_counter() - t2) * 1e3
        return poses
