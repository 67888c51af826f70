"""One call from an RGB frame to Poses in frame pixels: letterbox, invoke, decode, post-process."""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from . import decode as decoding
from . import letterbox, postprocess
from .constants import (
    DEFAULT_MAX_POSES,
    DEFAULT_MIN_PART_SCORE,
    DEFAULT_MIN_POSE_SCORE,
    DEFAULT_NMS_RADIUS,
)
from .core import Poses, PoseNetOutputs


class PoseModel(Protocol):
    """What the detector needs from backend.PoseModel (or a test's fake)."""

    input_size: tuple[int, int]  # (w, h)
    output_stride: int
    input_lut: np.ndarray  # (256,) value to write for 8-bit pixel value p
    quantized_input: bool

    def input_view(self) -> np.ndarray: ...  # (h, w, 3) writable view of the input tensor

    def invoke(self) -> PoseNetOutputs | Poses: ...  # Poses (input pixels) from decoder models


class PoseDetector:
    """PoseNet on one model; not thread-safe (it owns the interpreter's input).

    cleanup: "none", "seed" (the early clean-up, per pose) or "seed-single"
    (everyone merged into one person), see postprocess. clip=False keeps
    keypoints PoseNet puts past the frame border where it put them (as TF.js).
    """

    def __init__(
        self,
        model: PoseModel,
        *,
        max_poses: int = DEFAULT_MAX_POSES,
        min_pose_score: float = DEFAULT_MIN_POSE_SCORE,
        min_part_score: float = DEFAULT_MIN_PART_SCORE,
        nms_radius: float = DEFAULT_NMS_RADIUS,
        cleanup: str = "none",
        min_keypoints: int = 0,
        clip: bool = True,
    ) -> None:
        if max_poses < 1:
            raise ValueError(f"max_poses must be >= 1, got {max_poses}")
        if nms_radius <= 0:
            raise ValueError(f"nms_radius must be > 0, got {nms_radius}")
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
        #: Milliseconds per stage of the last detect(): preprocess, invoke, decode
        #: (decode includes the mapping to the frame and post-processing).
        self.last_timing: dict[str, float] = {"preprocess": 0.0, "invoke": 0.0, "decode": 0.0}

    def plan(self, frame_width: int, frame_height: int) -> letterbox.Letterbox:
        """The letterbox for frames of this size (cached)."""
        input_w, input_h = self.model.input_size
        return letterbox.plan(frame_width, frame_height, input_w, input_h)

    def detect(self, rgb: np.ndarray) -> Poses:
        """(H, W, 3) uint8 RGB -> Poses in frame pixels."""
        t0 = time.perf_counter()
        box = self.plan(rgb.shape[1], rgb.shape[0])
        letterbox.letterbox_into(rgb, box, self.model.input_view(), self.model.input_lut)
        t1 = time.perf_counter()
        outputs = self.model.invoke()
        t2 = time.perf_counter()
        if isinstance(outputs, Poses):  # the model decoded itself (Coral's decoder op)
            poses = outputs.select(slice(0, self.max_poses))
        else:
            poses = decoding.decode(
                outputs,
                max_poses=self.max_poses,
                min_part_score=self.min_part_score,
                nms_radius=self.nms_radius,
            )
        poses = postprocess.to_frame(poses, box, clip=self.clip)
        poses = postprocess.CLEANUPS[self.cleanup](poses)
        poses = postprocess.filter_poses(
            poses,
            min_pose_score=self.min_pose_score,
            min_keypoints=self.min_keypoints,
            min_part_score=self.min_part_score,
        )
        t3 = time.perf_counter()
        self.last_timing = {
            "preprocess": (t1 - t0) * 1e3,
            "invoke": (t2 - t1) * 1e3,
            "decode": (t3 - t2) * 1e3,
        }
        return poses
