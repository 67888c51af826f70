"""Plain data passed between pipeline stages: Frame -> Poses -> Message."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .constants import NUM_PARTS


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture from a source."""

    rgb: np.ndarray  # (H, W, 3) uint8
    seq: int  # frame number from the source, counting from 0
    captured_at: float  # time.time() at capture
    #: A smaller copy of the same picture to run the model on (picamera2's lores
    #: stream, same aspect ratio), or None to use `rgb`. Poses are still reported
    #: in `rgb`'s pixels.
    inference_rgb: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True, slots=True)
class Poses:
    """Every person found in one frame, as parallel arrays.

    A keypoint that was not found has score 0; its position is still a number
    (never NaN) so arrays stay plain float32.
    """

    xy: np.ndarray  # (N, 17, 2) float32, frame pixels, x first
    scores: np.ndarray  # (N, 17) float32, 0..1
    pose_scores: np.ndarray  # (N,) float32, 0..1

    def __post_init__(self) -> None:
        n = self.pose_scores.shape[0]
        if self.xy.shape != (n, NUM_PARTS, 2) or self.scores.shape != (n, NUM_PARTS):
            raise ValueError(
                f"Poses shapes disagree: xy {self.xy.shape}, scores {self.scores.shape}, "
                f"pose_scores {self.pose_scores.shape}"
            )

    def __len__(self) -> int:
        return int(self.pose_scores.shape[0])

    @classmethod
    def empty(cls) -> "Poses":
        return cls(
            xy=np.zeros((0, NUM_PARTS, 2), np.float32),
            scores=np.zeros((0, NUM_PARTS), np.float32),
            pose_scores=np.zeros((0,), np.float32),
        )

    def select(self, keep: np.ndarray) -> "Poses":
        """A new Poses with only the poses where `keep` (bool or index array) says so."""
        return Poses(self.xy[keep], self.scores[keep], self.pose_scores[keep])


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication; the MQTT adapter adds `<prefix>/<node_id>/`."""

    topic: str  # suffix, e.g. "poses"
    payload: bytes
    qos: int = 0
    retain: bool = False
    expiry_s: int | None = None  # MQTT 5 message expiry; ignored on 3.1.1


@dataclass(frozen=True, slots=True)
class Detection:
    """What the inference worker hands to the sinks for one frame."""

    frame: Frame
    poses: Poses
    inference_ms: float  # preprocess + invoke + decode
    model: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoseNetOutputs:
    """Raw PoseNet outputs for one image, dequantised, channels last.

    Offsets and displacements are in model-input pixels; channel layout is
    PoseNet's: y for every part (or edge) first, then x.
    """

    heatmaps: np.ndarray  # (h, w, 17) float32 logits (sigmoid not yet applied)
    offsets: np.ndarray  # (h, w, 34) float32
    displacements_fwd: np.ndarray  # (h, w, 32) float32, parent -> child
    displacements_bwd: np.ndarray  # (h, w, 32) float32, child -> parent
    output_stride: int
