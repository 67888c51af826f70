"""Plain data passed between pipeline stages: Frame -> Poses -> FrameResult -> Message."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import NUM_PARTS


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture from a source."""

    rgb: np.ndarray  # (H, W, 3) uint8
    seq: int  # frame number from the source, counting from 0
    captured_at: float  # time.time() at capture: for messages and file names only
    #: time.monotonic() at capture: for every duration (tracking, debouncing,
    #: rates). Wall-clock time jumps when a Pi without a real-time clock syncs NTP.
    captured_mono: float = 0.0
    #: A smaller copy of the same picture to run the model on (picamera2's lores
    #: stream, same aspect ratio), or None to use `rgb`. Poses are still reported
    #: in `rgb`'s pixels.
    inference_rgb: np.ndarray | None = None
    #: The motion gate's small grey copy, made on the capture thread ahead of
    #: inference (`Pipeline.prepare`), or None: the gate makes it itself.
    motion_grey: np.ndarray | None = None
    #: The model's input, made on the capture thread ahead of inference
    #: (`Pipeline.prepare`, an `estimators.PreparedInput`), or None: the
    #: estimator makes it itself.
    model_input: Any = None
    #: The first frame of a scene unrelated to the frame before (the demo's next
    #: photo): what the model and the tracker remember of earlier frames is about
    #: other people, so they start afresh (`Estimator.reset`, `Tracker.reset`).
    scene_cut: bool = False

    @property
    def model_image(self) -> np.ndarray:
        """The picture the model runs on (and the motion gate looks at): the lores
        copy where the source gives one, else `rgb`."""
        return self.rgb if self.inference_rgb is None else self.inference_rgb

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True, slots=True)
class Poses:
    """Every person found in one frame, as parallel arrays, in frame pixels.

    A keypoint that was not found has score 0; its position is still a number
    (never NaN) so arrays stay plain float32. `boxes` is set by models that
    find people as boxes (MoveNet MultiPose) and None otherwise (`bounding_boxes`
    derives one from the keypoints); `track_ids` is None until a tracker has
    given every pose an id that stays with the person across frames.
    """

    xy: np.ndarray  # (N, 17, 2) float32, frame pixels, x first
    scores: np.ndarray  # (N, 17) float32, 0..1
    pose_scores: np.ndarray  # (N,) float32, 0..1
    boxes: np.ndarray | None = None  # (N, 4) float32 x0, y0, x1, y1 frame pixels
    track_ids: np.ndarray | None = None  # (N,) int64, >= 1

    def __post_init__(self) -> None:
        n = self.pose_scores.shape[0]
        if (
            self.xy.shape != (n, NUM_PARTS, 2)
            or self.scores.shape != (n, NUM_PARTS)
            or (self.boxes is not None and self.boxes.shape != (n, 4))
            or (self.track_ids is not None and self.track_ids.shape != (n,))
        ):
            raise ValueError(
                f"Poses shapes disagree: xy {self.xy.shape}, scores {self.scores.shape}, "
                f"pose_scores {self.pose_scores.shape}, "
                f"boxes {None if self.boxes is None else self.boxes.shape}, "
                f"track_ids {None if self.track_ids is None else self.track_ids.shape}"
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

    def select(self, keep: np.ndarray | slice) -> "Poses":
        """A new Poses with only the poses where `keep` (bool, index array or slice) says so."""
        return Poses(
            self.xy[keep],
            self.scores[keep],
            self.pose_scores[keep],
            None if self.boxes is None else self.boxes[keep],
            None if self.track_ids is None else self.track_ids[keep],
        )

    def replace(self, **changes: np.ndarray | None) -> "Poses":
        """A copy with some arrays replaced (shapes are checked again)."""
        return dataclasses.replace(self, **changes)

    def bounding_boxes(self, min_score: float = 0.0) -> np.ndarray:
        """(N, 4) x0, y0, x1, y1: `boxes` where the model gave them, else the
        extent of each pose's keypoints scoring >= min_score (all 17 when none does)."""
        if self.boxes is not None:
            return self.boxes
        n = len(self)
        if n == 0:
            return np.zeros((0, 4), np.float32)
        ok = self.scores >= min_score
        ok[~ok.any(axis=1)] = True
        x, y = self.xy[..., 0], self.xy[..., 1]
        return np.stack(
            [
                np.where(ok, x, np.inf).min(axis=1),
                np.where(ok, y, np.inf).min(axis=1),
                np.where(ok, x, -np.inf).max(axis=1),
                np.where(ok, y, -np.inf).max(axis=1),
            ],
            axis=1,
        ).astype(np.float32)


# --- boxes x0, y0, x1, y1 (the tracker matches by them, the top-down model merges by them)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) boxes -> (...) areas."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_intersections(boxes: np.ndarray, ref_boxes: np.ndarray) -> np.ndarray:
    """The area every box (n, 4) shares with every reference box (m, 4): (n, m)."""
    w = np.minimum(boxes[:, None, 2], ref_boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], ref_boxes[None, :, 0])
    h = np.minimum(boxes[:, None, 3], ref_boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], ref_boxes[None, :, 1])
    return np.where((w > 0) & (h > 0), w * h, 0.0)


def iou_table(boxes: np.ndarray, ref_boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of every box (n, 4) with every reference box (m, 4):
    (n, m), 0 where they do not overlap."""
    inter = box_intersections(boxes, ref_boxes)
    union = box_area(boxes)[:, None] + box_area(ref_boxes)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=(inter > 0) & (union > 0))


def inside_table(boxes: np.ndarray, ref_boxes: np.ndarray) -> np.ndarray:
    """Intersection over the smaller of the two boxes, every box (n, 4) with every
    reference box (m, 4): (n, m), 1 where one lies within the other."""
    inter = box_intersections(boxes, ref_boxes)
    smaller = np.minimum(box_area(boxes)[:, None], box_area(ref_boxes)[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=(inter > 0) & (smaller > 0))


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication; the MQTT adapter adds `<prefix>/<node_id>/`."""

    topic: str  # suffix, e.g. "poses"
    payload: bytes
    qos: int = 0
    retain: bool = False
    expiry_s: int | None = None  # MQTT 5 message expiry; ignored on 3.1.1


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What one frame became. Stages after estimation return a new one (`replace`); sinks take it."""

    frame: Frame
    poses: Poses
    inference_ms: float  # preprocess + invoke + decode
    model: str = ""  # EstimatorInfo.label of the model that found the poses
    #: events.Event objects this frame raised (presence, falls), in order.
    events: tuple[Any, ...] = ()
    #: events.SceneState: the debounced state (None where no event stage runs).
    state: Any = None
    state_changed: bool = False  # publish the retained state again
    snapshot: str | None = None  # file name of the snapshot taken of this frame, if any

    def replace(self, **changes: Any) -> "FrameResult":
        return dataclasses.replace(self, **changes)
