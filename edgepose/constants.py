"""Every fixed name and number edgepose relies on, in one place.

Model facts (part names, the part tree, strides) come from PoseNet as published
with TensorFlow.js; tunable defaults are the ones the config and CLI start from.
"""

from __future__ import annotations

# --- PoseNet model facts -------------------------------------------------------

#: The 17 keypoints in model channel order (PoseNet's names, COCO's order).
PART_NAMES: tuple[str, ...] = (
    "nose",
    "leftEye",
    "rightEye",
    "leftEar",
    "rightEar",
    "leftShoulder",
    "rightShoulder",
    "leftElbow",
    "rightElbow",
    "leftWrist",
    "rightWrist",
    "leftHip",
    "rightHip",
    "leftKnee",
    "rightKnee",
    "leftAnkle",
    "rightAnkle",
)
NUM_PARTS = len(PART_NAMES)
PART_IDS: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}

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

#: Lines drawn by the overlay (PoseNet's "adjacent keypoints").
SKELETON: tuple[tuple[str, str], ...] = (
    ("leftHip", "leftShoulder"),
    ("leftElbow", "leftShoulder"),
    ("leftElbow", "leftWrist"),
    ("leftHip", "leftKnee"),
    ("leftKnee", "leftAnkle"),
    ("rightHip", "rightShoulder"),
    ("rightElbow", "rightShoulder"),
    ("rightElbow", "rightWrist"),
    ("rightHip", "rightKnee"),
    ("rightKnee", "rightAnkle"),
    ("leftShoulder", "rightShoulder"),
    ("leftHip", "rightHip"),
)
SKELETON_IDS: tuple[tuple[int, int], ...] = tuple(
    (PART_IDS[a], PART_IDS[b]) for a, b in SKELETON
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

# --- Tunable defaults (config.py and the CLI refer to these) ------------------

DEFAULT_MAX_POSES = 5
DEFAULT_MIN_POSE_SCORE = 0.15
DEFAULT_MIN_PART_SCORE = 0.5
DEFAULT_NMS_RADIUS = 20.0
DEFAULT_STRIDE = 16
DEFAULT_INPUT_SIZE = (481, 353)  # (width, height); (r - 1) % 32 == 0 for both
#: int8 models: 2-4x faster on a CPU than float at about the same AP (see README).
DEFAULT_QUANTIZED = True
DEFAULT_MODEL = "posenet-mnv1-075"
DEFAULT_THREADS = 2

#: The early user's clean-up: keypoints below this score are dropped.
SEED_CLEANUP_MIN_SCORE = 0.5

# --- Messages ------------------------------------------------------------------

SCHEMA_VERSION = 1
DEFAULT_TOPIC_PREFIX = "edgepose"
TOPIC_AVAILABILITY = "availability"
TOPIC_POSES = "poses"
TOPIC_PERSON_COUNT = "person_count"
TOPIC_STATS = "stats"
TOPIC_SNAPSHOT = "snapshot"
TOPIC_CMD_SNAPSHOT = "cmd/snapshot"
TOPIC_CMD_ACK_FALL = "cmd/ack_fall"
#: Presence and fall events, QoS 1, never retained (events.py).
TOPIC_EVENTS = "events"
#: The debounced scene (counts per zone, falls on), retained (events.py's SceneState).
TOPIC_STATE = "state"
PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
