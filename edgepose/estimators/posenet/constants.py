"""PoseNet's model facts (TensorFlow.js PoseNet, MobileNetV1 0.75) and its defaults."""

from __future__ import annotations

import re

from ...constants import NUM_PARTS, PART_IDS
from ...text import show

#: The registry name of edgepose's converted PoseNet models.
MODEL_NAME = "posenet-mnv1-075"
#: File of each build in models/: filled with stride and precision ("float32", "int8").
MODEL_FILE = "posenet_mnv1_075_stride{stride}_{precision}.tflite"

#: The part tree the multi-pose decoder walks, as (parent, child) pairs. Edge i
#: owns displacement channels i (y) and i + NUM_EDGES (x) of the forward
#: (parent -> child) and backward (child -> parent) displacement outputs.
POSE_CHAIN: tuple[tuple[str, str], ...] = (
    ("nose", "leftEye"),
    ("leftEye", "leftEar"),
    ("nose", "rightEye"),
    ("rightEye", "rightEar"),
    ("nose", "leftShoulder"),
    ("leftShoulder", "leftElbow"),
    ("leftElbow", "leftWrist"),
    ("leftShoulder", "leftHip"),
    ("leftHip", "leftKnee"),
    ("leftKnee", "leftAnkle"),
    ("nose", "rightShoulder"),
    ("rightShoulder", "rightElbow"),
    ("rightElbow", "rightWrist"),
    ("rightShoulder", "rightHip"),
    ("rightHip", "rightKnee"),
    ("rightKnee", "rightAnkle"),
)
NUM_EDGES = len(POSE_CHAIN)
POSE_CHAIN_IDS: tuple[tuple[int, int], ...] = tuple(
    (PART_IDS[a], PART_IDS[b]) for a, b in POSE_CHAIN
)

#: Output strides the converted models exist for (higher: faster, coarser).
OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)

#: Output channel counts that identify raw PoseNet outputs in any order.
HEATMAP_CHANNELS = NUM_PARTS  # 17
OFFSET_CHANNELS = 2 * NUM_PARTS  # 34: y for all parts, then x
DISPLACEMENT_CHANNELS = 2 * NUM_EDGES  # 32: y for all edges, then x
#: Coral's "mid offsets": forward and backward displacements in one tensor.
MID_OFFSET_CHANNELS = 2 * DISPLACEMENT_CHANNELS  # 64

#: MobileNet input scaling: pixel / 127.5 - 1 maps 0..255 to -1..1.
INPUT_SCALE = 1.0 / 127.5
INPUT_SHIFT = -1.0

#: Multi-pose: a candidate root must be the maximum of its 3x3 window.
LOCAL_MAXIMUM_RADIUS = 1
#: Multi-pose: offset refinement steps when following a displacement.
OFFSET_REFINE_STEPS = 2

#: Coral's PoseNet decoder op lives in its own shared library (project-posenet).
POSENET_DECODER_OP = "PosenetDecoderOp"
POSENET_DECODER_LIBRARY = "posenet_decoder.so"
#: Coral's raw-output model: the one to use where the decoder library is missing.
CORAL_RAW_MODEL_HINT = "posenet_mobilenet_v1_075_481_641_quant.tflite"

# --- defaults and bounds of PoseNet's config keys (declared in __init__.py) ----------

DEFAULT_STRIDE = 16
#: (width, height); W - 1 and H - 1 are multiples of every stride.
DEFAULT_INPUT_SIZE = (481, 353)
DEFAULT_MAX_POSES = 5
DEFAULT_MIN_POSE_SCORE = 0.15
DEFAULT_NMS_RADIUS = 20.0  # model-input pixels
MAX_NMS_RADIUS = 10_000.0  # model-input pixels; larger keeps one pose per frame anyway
INPUT_SIZE_MAX = 4097  # model input side (k * stride + 1); larger is memory, not accuracy


def parse_input_size(text: str) -> tuple[int, int] | None:
    """model.input_size: "WxH" -> (w, h); "auto" -> None (the file's or the default size)."""
    if text.strip().lower() == "auto":
        return None
    match = re.fullmatch(r"\s*(\d{1,9})\s*[xX]\s*(\d{1,9})\s*", text)
    if not match:
        raise ValueError(f'expected "WxH" such as "481x353", or "auto", got {show(text)}')
    width, height = int(match[1]), int(match[2])
    if not (2 <= width <= INPUT_SIZE_MAX and 2 <= height <= INPUT_SIZE_MAX):
        raise ValueError(f"width and height must be 2-{INPUT_SIZE_MAX}, got {show(text)}")
    return width, height


def input_size_problem(size: tuple[int, int], stride: int) -> str | None:
    """Why (w, h) cannot feed a PoseNet at `stride`, or None when it fits.

    The one statement of PoseNet's input rule: W - 1 and H - 1 are positive
    multiples of the stride, so that output cells sit on input pixels.
    """
    width, height = size
    if _fits(width, stride) and _fits(height, stride):
        return None
    sizes = [f"{w}x{h}" for w in _nearest(width, stride) for h in _nearest(height, stride)]
    return (
        f"{width}x{height} does not fit output stride {stride} (width - 1 and height - 1 must be "
        f"positive multiples of {stride}); nearest valid sizes: {', '.join(sizes)}"
    )


def _fits(size: int, stride: int) -> bool:
    return size - 1 >= stride and (size - 1) % stride == 0


def _nearest(size: int, stride: int) -> list[int]:
    """The valid sizes (k * stride + 1, k >= 1) either side of ``size``."""
    if _fits(size, stride):
        return [size]
    below = (size - 1) // stride * stride + 1
    return [s for s in (below, below + stride) if _fits(s, stride)]
