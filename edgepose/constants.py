"""Fixed names and numbers every part of edgepose shares, whatever the model.

The 17 keypoints are COCO's, named as TensorFlow.js names them; facts of one
model family live in its folder (estimators/<family>/constants.py) and
tunable defaults in config.py, their one home.
"""

from __future__ import annotations

# --- Keypoints -------------------------------------------------------------------

#: The 17 keypoints in model channel order (TF.js names, COCO's order).
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

#: Lines drawn by the overlay (TF.js "adjacent keypoints").
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

#: A keypoint counts as found from this score on: the default of
#: config's decode.min_part_score, of drawing and of change detection.
DEFAULT_MIN_PART_SCORE = 0.5

#: The early user's clean-up: keypoints below this score are dropped.
SEED_CLEANUP_MIN_SCORE = 0.5

#: Node ids are one MQTT topic level and part of Home Assistant unique ids:
#: letters, digits, '_' and '-' only, and short enough for a client id.
NODE_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"

# --- Messages ------------------------------------------------------------------

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
#: What a command did (ack_fall), QoS 1, never retained: outside cmd/, which the node subscribes to.
TOPIC_REPLY = "reply"
PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
