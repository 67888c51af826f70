"""Frame results and node state as versioned MQTT messages (pure: no paho, no clock).

Every topic here is a suffix; mqtt.py adds ``<topic_prefix>/<node_id>/``. The
one exception is Home Assistant discovery, whose topics live under the
discovery prefix and are returned whole (see `discovery_messages`).

JSON payloads are compact and versioned by ``"v"`` (`SCHEMA_VERSIONS`). How
a message grows: fields are only ever added; each addition increments that
kind's ``"v"`` and ships a new schema, ``<kind>.schema.json`` for the current
version and ``<kind>.v<N>.schema.json`` for every older one (`load_schema`),
so recordings of any version can still be checked and replayed. Subscribers
must ignore properties they do not know. Poses are
keyed by keypoint name so a Home Assistant template reads
``value_json.poses[0].keypoints.nose.x`` and a Node-RED function
``msg.payload.poses[0].keypoints.nose.x``, without index tables.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import numpy as np

from . import SUPPORT_URL, __version__
from .constants import (
    DEFAULT_MIN_PART_SCORE,
    NODE_ID_PATTERN,
    PART_NAMES,
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    TOPIC_AVAILABILITY,
    TOPIC_CMD_ACK_FALL,
    TOPIC_CMD_SNAPSHOT,
    TOPIC_EVENTS,
    TOPIC_PERSON_COUNT,
    TOPIC_POSES,
    TOPIC_REPLY,
    TOPIC_SNAPSHOT,
    TOPIC_STATE,
    TOPIC_STATS,
)
from .core import FrameResult, Message, Poses
from .events import FALL_EVENT_TYPES, PRESENCE_EVENT_TYPES, Event, SceneState

#: Decimal places in payloads: normalised coordinates, scores, milliseconds,
#: frame rate, degrees Celsius.
XY_DECIMALS = 4
SCORE_DECIMALS = 3
MS_DECIMALS = 1
FPS_DECIMALS = 2
TEMP_DECIMALS = 1

#: Retained node state is QoS 1 so it survives a lossy link; poses and the
#: (large) snapshot are QoS 0: a newer one is always on its way.
QOS_STATE = 1
QOS_STREAM = 0

#: Fields `stats_message` requires, in payload order.
STATS_FIELDS: tuple[str, ...] = (
    "fps",
    "inference_ms_p50",
    "inference_ms_p95",
    "frames",
    "dropped_frames",
    "skipped_frames",
    "gated_frames",
    "corrupt_frames",
    "source_errors",
    "source_reopens",
    "mqtt_dropped",
    "snapshots_dropped",
    "accelerator",
    "runtime",
    "precision",
    "threads",
    "model",
    "source_state",
    "source_error",
    "mqtt_connected",
    "outbox_queued",
    "outbox_dropped",
    "cpu_temp_c",
    "uptime_s",
    "started_at",
    "fall_acks_without_fall",
)
_STATS_INT_FIELDS = frozenset(
    {"frames", "dropped_frames", "skipped_frames", "gated_frames", "corrupt_frames", "source_errors",
     "source_reopens", "mqtt_dropped", "snapshots_dropped", "threads", "outbox_queued",
     "outbox_dropped", "uptime_s", "fall_acks_without_fall"}
)
_STATS_TEXT_FIELDS = frozenset({"accelerator", "runtime", "precision", "model", "source_state"})

#: The current version of each JSON message kind, the ``"v"`` it carries; its
#: schema is ``edgepose/schemas/<kind>.schema.json``.
SCHEMA_VERSIONS: dict[str, int] = {
    "poses": 2, "stats": 3, "person_count": 1, "availability": 1, "events": 2, "state": 1, "reply": 1,
}
SCHEMA_KINDS: tuple[str, ...] = tuple(SCHEMA_VERSIONS)

#: A source error in stats is cut to this many characters.
MAX_ERROR_CHARS = 300

#: Longest command payload looked at; anything longer is refused unread.
MAX_COMMAND_BYTES = 256

_JSON_SEPARATORS = (",", ":")
_NODE_ID = re.compile(NODE_ID_PATTERN)
_ZONE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def is_node_id(text: str) -> bool:
    """Whether `text` is a valid node id (constants.NODE_ID_PATTERN, the one rule)."""
    return bool(_NODE_ID.fullmatch(text))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=_JSON_SEPARATORS, allow_nan=False).encode("utf-8")


def iso_utc(t: float) -> str:
    """Seconds since the epoch as ``2024-05-01T12:00:00.123Z`` (UTC, milliseconds)."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _unit(a: np.ndarray) -> list:
    """Clamped to 0..1 as (nested) Python floats; NaN and inf (never expected)
    become 0 so the payload stays valid JSON."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), np.clip(a, 0.0, 1.0), 0.0).tolist()


# --- poses ---------------------------------------------------------------------


def poses_message(
    result: FrameResult,
    *,
    node_id: str,
    expiry_s: int | None = None,
) -> Message:
    """One frame's poses as JSON on ``poses`` (QoS 0, not retained), version 2.

    Keypoints are normalised to the frame (x / width, y / height), clamped to
    0..1 (a decoder may place a part just outside the picture) and rounded to
    4 decimals; scores to 3. All 17 parts are always present, a part that was
    not found has score 0. Each pose has its track ``id`` (null untracked) and
    ``box`` (the model's, else the extent of the keypoints found).
    `expiry_s` becomes the MQTT 5 message expiry (ignored on 3.1.1).
    """
    frame = result.frame
    width, height = frame.width, frame.height
    poses = result.poses
    size = np.array([width, height], dtype=np.float64)
    # Clamp whole arrays at once (this runs every frame on a Pi); only the
    # rounding stays per value, as Python's round is the correctly rounded one.
    # norm: (N, 17, 2) nested lists, 0..1 of the frame.
    norm = _unit(np.asarray(poses.xy, dtype=np.float64) / size)
    boxes = _unit(np.asarray(poses.bounding_boxes(DEFAULT_MIN_PART_SCORE), dtype=np.float64) / np.tile(size, 2))
    ids = [None] * len(poses) if poses.track_ids is None else [int(i) for i in poses.track_ids]
    pose_list = [
        {
            "id": track_id,
            "score": round(pose_score, SCORE_DECIMALS),
            "box": [round(v, XY_DECIMALS) for v in box],
            "keypoints": {
                name: {"x": round(x, XY_DECIMALS), "y": round(y, XY_DECIMALS), "score": round(s, SCORE_DECIMALS)}
                for name, (x, y), s in zip(PART_NAMES, part_xy, part_scores)
            },
        }
        for track_id, pose_score, box, part_xy, part_scores in zip(
            ids, _unit(poses.pose_scores), boxes, norm, _unit(poses.scores)
        )
    ]
    payload = {
        "v": SCHEMA_VERSIONS["poses"],
        "node": node_id,
        "ts": iso_utc(frame.captured_at),
        "frame": int(frame.seq),
        "width": width,
        "height": height,
        "model": result.model,
        "inference_ms": round(float(result.inference_ms), MS_DECIMALS),
        "person_count": len(poses),
        "poses": pose_list,
    }
    return Message(TOPIC_POSES, _dumps(payload), qos=QOS_STREAM, retain=False, expiry_s=expiry_s)


# --- retained node state ---------------------------------------------------------


def person_count_message(n: int) -> Message:
    """The person count as plain integer text (``2``), retained: an HA sensor reads it as is."""
    n = int(n)
    if n < 0:
        raise ValueError(f"person count must be >= 0, got {n}")
    return Message(TOPIC_PERSON_COUNT, str(n).encode("ascii"), qos=QOS_STATE, retain=True)


def stats_message(stats: Mapping[str, Any], *, now: float | None = None) -> Message:
    """Health figures as JSON on ``stats``, retained.

    `stats` must hold exactly `STATS_FIELDS` (a typo or a missing figure is a
    ValueError, not a silently absent sensor). ``cpu_temp_c`` may be None
    (unreadable); ``started_at`` is the start of this run in epoch seconds (sent
    as ISO 8601 UTC). `now` (epoch seconds) adds a ``ts``; the caller passes it
    so this module never reads the clock.
    """
    missing = [k for k in STATS_FIELDS if k not in stats]
    unknown = sorted(set(stats) - set(STATS_FIELDS))
    if missing or unknown:
        raise ValueError(f"stats: missing {missing}, unknown {unknown}")
    payload: dict[str, Any] = {"v": SCHEMA_VERSIONS["stats"]}
    if now is not None:
        payload["ts"] = iso_utc(now)
    for key in STATS_FIELDS:
        value = stats[key]
        if key in _STATS_TEXT_FIELDS:
            payload[key] = str(value)
        elif key == "cpu_temp_c":
            payload[key] = None if value is None else round(float(value), TEMP_DECIMALS)
        elif key == "source_error":
            payload[key] = None if not value else str(value)[:MAX_ERROR_CHARS]
        elif key == "mqtt_connected":
            payload[key] = bool(value)
        elif key == "started_at":
            payload[key] = iso_utc(float(value))
        elif key in _STATS_INT_FIELDS:
            payload[key] = int(value)
        elif key == "fps":
            payload[key] = round(float(value), FPS_DECIMALS)
        else:
            payload[key] = round(float(value), MS_DECIMALS)
    return Message(TOPIC_STATS, _dumps(payload), qos=QOS_STATE, retain=True)


def snapshot_message(jpeg: bytes) -> Message:
    """Raw JPEG bytes on ``snapshot``, retained, QoS 0 (what HA's MQTT image entity takes)."""
    if not isinstance(jpeg, (bytes, bytearray, memoryview)):
        raise TypeError(f"snapshot must be bytes, got {type(jpeg).__name__}")
    return Message(TOPIC_SNAPSHOT, bytes(jpeg), qos=QOS_STREAM, retain=True)


def reply_message(command: str, result: str, *, now: float, **fields: Any) -> Message:
    """What a command did, as JSON on ``reply`` (QoS 1, never retained), so whoever sent
    it can see it: for ``ack_fall``, ``result`` ``acknowledged`` (``falls_cleared`` >= 1)
    or ``no_fall`` (nothing was on). ``edgepose/schemas/reply.schema.json``."""
    payload: dict[str, Any] = {"v": SCHEMA_VERSIONS["reply"], "ts": iso_utc(now), "command": command,
                               "result": result}
    payload.update(fields)
    return Message(TOPIC_REPLY, _dumps(payload), qos=QOS_STATE, retain=False)


# --- events and the debounced scene -------------------------------------------------


def event_message(event: Event, *, node_id: str) -> Message:
    """One event as JSON on ``events``: QoS 1 (it must arrive), never retained (it happened once).

    Flat, so a Node-RED switch reads ``msg.payload.type`` and a Home Assistant
    template ``value_json.track_id``: ``v``, ``id`` (unique: drop duplicates
    after a redelivery), ``type``, ``node``, ``ts`` (wall clock), ``track_id``
    and ``zone`` (null: the whole frame), then the type's own fields
    (events.py). ``edgepose/schemas/events.schema.json`` lists them per type.
    """
    payload: dict[str, Any] = {
        "v": SCHEMA_VERSIONS["events"],
        "id": event.id,
        "type": event.type,
        "node": node_id,
        "ts": iso_utc(event.wall_time),
        "track_id": event.track_id,
        "zone": event.zone,
    }
    for key, value in event.fields.items():
        if key in payload:
            raise ValueError(f"event field {key!r} would overwrite a common field")
        payload[key] = value
    return Message(TOPIC_EVENTS, _dumps(payload), qos=QOS_STATE, retain=False)


def state_message(state: SceneState, *, now: float | None = None) -> Message:
    """The debounced scene as JSON on ``state``, retained: what Home Assistant's
    occupancy, zone and fall entities read. Publish it when `EventsResult.state_changed`.
    """
    payload: dict[str, Any] = {"v": SCHEMA_VERSIONS["state"]}
    if now is not None:
        payload["ts"] = iso_utc(now)
    payload.update(
        {
            "person_count": state.person_count,
            "occupied": state.occupied,
            "zones": {name: {"person_count": n, "occupied": n > 0} for name, n in state.zones},
            "fall": state.fall,
            "falls": [
                {
                    "event_id": f.event_id,
                    "track_id": f.track_id,
                    "zone": f.zone,
                    "since": iso_utc(f.since_wall),
                    "confidence": f.confidence,
                }
                for f in state.falls
            ],
        }
    )
    return Message(TOPIC_STATE, _dumps(payload), qos=QOS_STATE, retain=True)


# --- when to publish poses ---------------------------------------------------------

POSES_MODES: tuple[str, ...] = ("every_frame", "on_change", "interval", "off")

#: on_change: a pose "moved" when a keypoint moved more than this fraction of
#: the frame (along x as a fraction of the width, or y of the height).
DEFAULT_MOVE_FRACTION = 0.02


@dataclass
class PosesPolicy:
    """Decides, frame by frame, whether the poses go out.

    - ``every_frame``: always.
    - ``interval``: the first frame, then once `interval_s` has passed since the
      last publication.
    - ``on_change``: the first frame; then when the person count differs from
      the last *published* frame, or when some pose moved: a current pose
      moved when no pose of the last published frame has all their shared
      confident keypoints (score >= `min_part_score` in both) within
      `move_fraction` of the frame of each other. A pose with no confident
      keypoint in common with any published pose counts as moved. Comparing
      with the last published frame (not the previous frame) means slow drift
      is reported once it adds up.
    - ``off``: never.

    Pure: the caller passes `now`; the policy keeps only what its mode
    compares with (the time, or the poses, it last published).
    """

    mode: str = "every_frame"
    interval_s: float = 1.0
    move_fraction: float = DEFAULT_MOVE_FRACTION
    min_part_score: float = DEFAULT_MIN_PART_SCORE
    _last_at: float | None = field(default=None, init=False, repr=False)  # interval
    _last_xy: np.ndarray | None = field(default=None, init=False, repr=False)  # on_change: (N, 17, 2), 0..1
    _last_ok: np.ndarray | None = field(default=None, init=False, repr=False)  # on_change: (N, 17) bool

    def __post_init__(self) -> None:
        if self.mode not in POSES_MODES:
            raise ValueError(f"poses mode must be one of {', '.join(POSES_MODES)}, got {self.mode!r}")
        if self.mode == "interval" and not self.interval_s > 0:
            raise ValueError(f"poses interval must be > 0 s, got {self.interval_s}")

    def should_publish(self, now: float, poses: Poses, width: int, height: int) -> bool:
        """True when these poses (frame pixels of a `width` x `height` frame) should
        be published at `now` (seconds, any monotonic clock); remembers them if so.
        Only ``on_change`` looks at the poses: the other modes cost nothing per frame."""
        if self.mode == "every_frame":
            return True
        if self.mode == "off":
            return False
        if self.mode == "interval":
            if self._last_at is not None and now - self._last_at < self.interval_s:
                return False
            self._last_at = now
            return True
        xy = np.asarray(poses.xy, dtype=np.float64) / np.array([width, height], dtype=np.float64)
        ok = np.asarray(poses.scores) >= self.min_part_score
        if self._last_xy is not None and not self._changed(xy, ok):
            return False
        self._last_xy, self._last_ok = xy, ok
        return True

    def _changed(self, xy: np.ndarray, ok: np.ndarray) -> bool:
        assert self._last_xy is not None and self._last_ok is not None
        if xy.shape[0] != self._last_xy.shape[0]:
            return True
        for i in range(xy.shape[0]):
            if not any(
                self._close(xy[i], ok[i], self._last_xy[j], self._last_ok[j])
                for j in range(self._last_xy.shape[0])
            ):
                return True
        return False

    def _close(self, a: np.ndarray, a_ok: np.ndarray, b: np.ndarray, b_ok: np.ndarray) -> bool:
        shared = a_ok & b_ok  # (17,)
        if not shared.any():
            return False
        return float(np.abs(a[shared] - b[shared]).max()) <= self.move_fraction


# --- commands ------------------------------------------------------------------------

#: Snapshot command payloads (text compared after trimming, case-insensitive).
#: Empty also requests one, so ``mosquitto_pub -n`` and an HA button with no
#: payload both work. JSON ``{"snapshot": true|false}`` is accepted as well.
SNAPSHOT_YES = frozenset({"", "1", "true", "on", "yes", "snapshot", "press"})
SNAPSHOT_NO = frozenset({"0", "false", "off", "no"})

#: Command topic suffixes below ``cmd/`` and their command names.
COMMANDS: dict[str, str] = {TOPIC_CMD_SNAPSHOT: "snapshot", TOPIC_CMD_ACK_FALL: "ack_fall"}

#: Acknowledge-fall payloads: the snapshot words plus "ack"; JSON ``{"ack": true|false}``.
ACK_YES = SNAPSHOT_YES | {"ack", "acknowledge"}
ACK_NO = SNAPSHOT_NO


def parse_snapshot_command(payload: bytes) -> bool:
    """True: take a snapshot; False: a valid no-op (``0``, ``false``, ``{"snapshot": false}``).

    Raises ValueError naming the reason for anything else; the caller logs
    and ignores it.
    """
    return _parse_yes_no(payload, SNAPSHOT_YES, SNAPSHOT_NO, "snapshot")


def parse_ack_fall_command(payload: bytes) -> bool:
    """True: acknowledge every fall that is on (Home Assistant's button sends ``ack``);
    False: a valid no-op. Raises ValueError like `parse_snapshot_command`."""
    return _parse_yes_no(payload, ACK_YES, ACK_NO, "ack")


def _parse_yes_no(payload: bytes, yes: frozenset[str], no: frozenset[str], key: str) -> bool:
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"payload too long ({len(payload)} bytes, at most {MAX_COMMAND_BYTES})")
    try:
        text = bytes(payload).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError("payload is not UTF-8 text") from exc
    word = text.lower()
    if word in yes:
        return True
    if word in no:
        return False
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"payload is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or set(obj) != {key} or not isinstance(obj[key], bool):
            raise ValueError(f'JSON payload must be exactly {{"{key}": true}} or {{"{key}": false}}')
        return obj[key]
    raise ValueError(
        "expected empty, one of "
        + ", ".join(sorted(w for w in yes | no if w))
        + f' or {{"{key}": true}}'
    )


def parse_command(suffix: str, payload: bytes) -> str | None:
    """The command a message on ``<prefix>/<node>/<suffix>`` asks for, or None for a no-op.

    Raises ValueError for an unknown command topic or an invalid payload.
    """
    name = COMMANDS.get(suffix)
    if name is None:
        raise ValueError(f"unknown command topic {suffix!r} (known: {', '.join(COMMANDS)})")
    if name == "snapshot":
        return name if parse_snapshot_command(payload) else None
    if name == "ack_fall":
        return name if parse_ack_fall_command(payload) else None
    raise AssertionError(f"command {name} has no parser")  # pragma: no cover


# --- Home Assistant discovery ------------------------------------------------------------

def ha_status_topic(discovery_prefix: str) -> str:
    """Where Home Assistant announces ``online`` when it starts (re-send discovery then)."""
    return f"{discovery_prefix}/status"


def node_topic(prefix: str, node_id: str, suffix: str) -> str:
    """``<prefix>/<node_id>/<suffix>``: the one place topics are put together."""
    return f"{prefix}/{node_id}/{suffix}"


#: Components that come and go with the config: when not configured they are sent
#: with only their platform, which is how Home Assistant removes one component of a
#: device (leaving it out keeps the old entity alive).
OPTIONAL_COMPONENTS: dict[str, str] = {
    "snapshot": "image",
    "presence_event": "event",
    "fall": "binary_sensor",
    "fall_event": "event",
    "ack_fall": "button",
}

#: The snapshot image entity's name per ``snapshots.privacy``: what the picture shows.
SNAPSHOT_NAMES: dict[str, str] = {
    "off": "Snapshot",
    "skeleton": "Snapshot (skeleton only)",
    "blur": "Snapshot (blurred background)",
}

#: Components of earlier versions, always sent with only their platform so Home Assistant
#: drops them: uptime as a growing duration became the start time ("started").
RETIRED_COMPONENTS: dict[str, str] = {"uptime_s": "sensor"}

#: Figures from stats shown as diagnostic sensors:
#: stats key -> (component key, name, unit, device class, icon).
STATS_SENSORS: dict[str, tuple[str, str, str | None, str | None, str | None]] = {
    # The inference time sensor keeps its old key so existing entities stay.
    "inference_ms_p50": ("inference_ms", "Inference time", "ms", None, "mdi:timer-outline"),
    "fps": ("fps", "Frame rate", "fps", None, "mdi:camera-timer"),
    "dropped_frames": ("dropped_frames", "Dropped frames", None, None, "mdi:image-broken-variant"),
    "source_errors": ("source_errors", "Source errors", None, None, "mdi:camera-off"),
    "cpu_temp_c": ("cpu_temp_c", "CPU temperature", "°C", "temperature", None),
    "started_at": ("started", "Started", None, "timestamp", None),
    "source_state": ("source_state", "Source state", None, "enum", "mdi:cctv"),
}
#: Stats figures that only grow while the node runs (Home Assistant's total_increasing).
_STATS_TOTALS = frozenset({"dropped_frames", "source_errors"})
#: Home Assistant's unit for person counts.
PEOPLE_UNIT = "people"
#: The values of the source state sensor (capture.SOURCE_*).
SOURCE_STATES = ("starting", "ok", "retrying", "ended", "unavailable", "crashed")
#: Stats sensors go unavailable after this many stats intervals without a message.
STATS_EXPIRY_INTERVALS = 3


def discovery_device_id(node_id: str) -> str:
    if not is_node_id(node_id):
        raise ValueError(f"node id {node_id!r} must be 1-64 letters, digits, '_' or '-'")
    return f"edgepose_{node_id}"


def discovery_topic(node_id: str, discovery_prefix: str) -> str:
    return f"{discovery_prefix}/device/{discovery_device_id(node_id)}/config"


def zone_label(zone: str) -> str:
    """A zone name as people write it: ``living_room`` -> ``Living room``, ``door-1`` -> ``Door 1``."""
    words = zone.replace("_", " ").replace("-", " ").split()
    text = " ".join(words) or zone
    return text[:1].upper() + text[1:]


def discovery_messages(
    node_id: str,
    prefix: str,
    discovery_prefix: str,
    publish_snapshot: bool,
    *,
    presence: bool = False,
    falls: bool = False,
    zones: Sequence[str] = (),
    stats_interval_s: float | None = None,
    device_info: Mapping[str, str] | None = None,
    previous: bytes | None = None,
    snapshot_privacy: str = "off",
) -> list[Message]:
    """Home Assistant device-based discovery for this node, as whole topics.

    One retained message on ``<discovery_prefix>/device/edgepose_<node_id>/config``
    (HA 2024.11+ "device discovery": ``device``, ``origin``,
    ``components`` with a ``platform`` each, availability shared by all;
    full key names rather than the ``dev``/``o``/``cmps`` abbreviations, so
    the payload reads well in MQTT Explorer). unique_ids are
    ``edgepose_<node_id>_<component>`` so they stay stable across restarts.

    Always: the person count sensor and "person detected" occupancy sensor
    (both from the retained ``person_count``, which follows the debounced
    count once presence runs), a snapshot button (``cmd/snapshot``) and
    diagnostic sensors from stats (`STATS_SENSORS`, the start time as a
    timestamp; ``expire_after`` of three stats intervals when
    `stats_interval_s` is given). With `publish_snapshot`: an ``image``
    entity, its name saying what it shows (`snapshot_privacy`,
    ``snapshots.privacy``). With `presence`: an ``event`` entity for the whole frame's
    person_entered / person_left, and per occupancy zone in `zones` a count
    sensor, an occupancy binary sensor (from the retained ``state``) and an
    ``event`` entity of its own, so an automation on one area never fires for
    another. With `falls`: a "fall" binary sensor (safety: on while someone is
    down), an ``event`` entity for fall_detected / fall_cleared and an
    "acknowledge fall" button (``cmd/ack_fall``). `device_info` adds to the
    device block (``hw_version``, ``serial_number``, ``configuration_url``).

    Optional components not configured are sent with only their platform, so
    Home Assistant removes them; so is every component of `previous` (the
    payload announced before, from the state file or the broker) that is no
    longer configured, such as a zone that was renamed (`with_removals`).

    The returned Message topics are *absolute* (not suffixes): publish them
    without the node prefix. `discovery_removal_message` removes the device.
    """
    device_id = discovery_device_id(node_id)

    def topic(suffix: str) -> str:
        return node_topic(prefix, node_id, suffix)

    def uid(key: str) -> str:
        return f"{device_id}_{key}"

    components: dict[str, dict[str, Any]] = {
        "person_count": {
            "platform": "sensor",
            "name": "Person count",
            "unique_id": uid("person_count"),
            "state_topic": topic(TOPIC_PERSON_COUNT),
            "state_class": "measurement",
            "unit_of_measurement": PEOPLE_UNIT,
            "icon": "mdi:account-multiple",
        },
        "person_detected": {
            "platform": "binary_sensor",
            "name": "Person detected",
            "unique_id": uid("person_detected"),
            "device_class": "occupancy",
            "state_topic": topic(TOPIC_PERSON_COUNT),
            "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
        },
        "take_snapshot": {
            "platform": "button",
            "name": "Take snapshot",
            "unique_id": uid("take_snapshot"),
            "command_topic": topic(TOPIC_CMD_SNAPSHOT),
            "payload_press": "snapshot",
            "icon": "mdi:camera",
        },
    }
    for key, (ckey, name, unit, device_class, icon) in STATS_SENSORS.items():
        sensor: dict[str, Any] = {
            "platform": "sensor",
            "name": name,
            "unique_id": uid(ckey),
            "state_topic": topic(TOPIC_STATS),
            "value_template": f"{{{{ value_json.{key} }}}}",
            "entity_category": "diagnostic",
        }
        if unit is not None:
            sensor["unit_of_measurement"] = unit
        if device_class is not None:
            sensor["device_class"] = device_class
        if icon is not None:
            sensor["icon"] = icon
        if device_class == "enum":
            sensor["options"] = list(SOURCE_STATES)
        elif device_class != "timestamp":
            sensor["state_class"] = "total_increasing" if key in _STATS_TOTALS else "measurement"
        if stats_interval_s is not None:
            sensor["expire_after"] = max(1, math.ceil(STATS_EXPIRY_INTERVALS * stats_interval_s))
        components[ckey] = sensor
    if publish_snapshot:
        components["snapshot"] = {
            "platform": "image",
            "name": SNAPSHOT_NAMES[snapshot_privacy],
            "unique_id": uid("snapshot"),
            "image_topic": topic(TOPIC_SNAPSHOT),
            "content_type": "image/jpeg",
        }
    if presence:
        components["presence_event"] = _event_component(
            "Presence", uid("presence_event"), topic(TOPIC_EVENTS), PRESENCE_EVENT_TYPES,
            "mdi:account-arrow-right", zone=None,
        )
        for zone in zones:
            if not _ZONE_NAME.fullmatch(zone):
                raise ValueError(f"zone name {zone!r} must match [A-Za-z0-9_-]+ for Home Assistant")
            label = zone_label(zone)
            components[f"zone_{zone}_occupied"] = {
                "platform": "binary_sensor",
                "name": f"{label} occupied",
                "unique_id": uid(f"zone_{zone}_occupied"),
                "device_class": "occupancy",
                "state_topic": topic(TOPIC_STATE),
                "value_template": (
                    f"{{{{ 'ON' if value_json.zones['{zone}'].occupied else 'OFF' }}}}"
                ),
            }
            components[f"zone_{zone}_count"] = {
                "platform": "sensor",
                "name": f"{label} person count",
                "unique_id": uid(f"zone_{zone}_count"),
                "state_topic": topic(TOPIC_STATE),
                "value_template": f"{{{{ value_json.zones['{zone}'].person_count }}}}",
                "state_class": "measurement",
                "unit_of_measurement": PEOPLE_UNIT,
                "icon": "mdi:account-multiple",
            }
            components[f"zone_{zone}_presence_event"] = _event_component(
                f"{label} presence", uid(f"zone_{zone}_presence_event"), topic(TOPIC_EVENTS),
                PRESENCE_EVENT_TYPES, "mdi:account-arrow-right", zone=zone,
            )
    if falls:
        components["fall"] = {
            "platform": "binary_sensor",
            "name": "Fall",
            "unique_id": uid("fall"),
            "device_class": "safety",
            "state_topic": topic(TOPIC_STATE),
            "value_template": "{{ 'ON' if value_json.fall else 'OFF' }}",
            "json_attributes_topic": topic(TOPIC_STATE),
            "json_attributes_template": "{{ {'falls': value_json.falls} | tojson }}",
        }
        components["fall_event"] = _event_component(
            "Fall event", uid("fall_event"), topic(TOPIC_EVENTS), FALL_EVENT_TYPES,
            "mdi:human-handsdown",
        )
        components["ack_fall"] = {
            "platform": "button",
            "name": "Acknowledge fall",
            "unique_id": uid("ack_fall"),
            "command_topic": topic(TOPIC_CMD_ACK_FALL),
            "payload_press": "ack",
            "icon": "mdi:check-circle-outline",
        }
    for key, platform in {**OPTIONAL_COMPONENTS, **RETIRED_COMPONENTS}.items():
        components.setdefault(key, {"platform": platform})
    device: dict[str, Any] = {
        "identifiers": [device_id],
        "name": f"edgepose {node_id}",
        "manufacturer": "edgepose",
        "model": "Pose camera node",
        "sw_version": __version__,
    }
    for key in ("hw_version", "serial_number", "configuration_url"):
        value = (device_info or {}).get(key)
        if value:
            device[key] = str(value)
    origin: dict[str, Any] = {"name": "edgepose", "sw_version": __version__}
    if SUPPORT_URL:
        origin["support_url"] = SUPPORT_URL
    payload = {
        "device": device,
        "origin": origin,
        "availability_topic": topic(TOPIC_AVAILABILITY),
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "components": components,
    }
    raw = _dumps(payload)
    if previous:
        raw = with_removals(raw, previous) or raw
    return [Message(discovery_topic(node_id, discovery_prefix), raw, qos=QOS_STATE, retain=True)]


def with_removals(payload: bytes, previous: bytes) -> bytes | None:
    """`payload` (our discovery) with every component that `previous` configured and
    `payload` does not sent with only its platform (Home Assistant then removes it;
    leaving it out would keep it). None when there is nothing to remove: `payload`
    already says all of it. `previous` may be anything (damaged, not ours): what
    cannot be read is ignored."""
    gone = _previous_components(previous)
    if not gone:
        return None
    obj = json.loads(payload)
    comps = obj["components"]
    added = {key: {"platform": platform} for key, platform in gone.items() if key not in comps}
    if not added:
        return None
    comps.update(added)
    return _dumps(obj)


def discovery_removal_message(node_id: str, discovery_prefix: str) -> Message:
    """An empty retained payload on the device's config topic: Home Assistant removes the
    device and all its entities, and the broker forgets the retained config (uninstall)."""
    return Message(discovery_topic(node_id, discovery_prefix), b"", qos=QOS_STATE, retain=True)


_ANY_ZONE = object()


def _event_component(
    name: str, unique_id: str, state_topic: str, types: tuple[str, ...], icon: str,
    zone: Any = _ANY_ZONE,
) -> dict[str, Any]:
    """An MQTT ``event`` entity on ``events`` that takes only `types`, and only for one
    area when `zone` is given (None: the whole frame): the template renders nothing
    for other events, and Home Assistant ignores an empty rendered payload."""
    listed = ", ".join(f"'{t}'" for t in types)
    where = ""
    if zone is None:
        where = " and value_json.zone is none"
    elif zone is not _ANY_ZONE:
        where = f" and value_json.zone == '{zone}'"
    return {
        "platform": "event",
        "name": name,
        "unique_id": unique_id,
        "state_topic": state_topic,
        "event_types": list(types),
        "value_template": (
            f"{{% if value_json.type in [{listed}]{where} %}}"
            "{{ dict(value_json, event_type=value_json.type) | tojson }}"
            "{% endif %}"
        ),
        "icon": icon,
    }


def _previous_components(previous: bytes | None) -> dict[str, str]:
    """Configured components (more than a platform) of an earlier discovery payload.
    A removal (platform only) is not carried on: it was sent once already."""
    if not previous:
        return {}
    try:
        obj = json.loads(previous)
        comps = obj.get("components", obj.get("cmps", {}))
        return {
            str(key): str(comp.get("platform", comp.get("p")))
            for key, comp in comps.items()
            if isinstance(comp, dict) and len(comp) > 1 and (comp.get("platform") or comp.get("p"))
            and _ZONE_NAME.fullmatch(str(key))
        }
    except (ValueError, AttributeError, TypeError):
        return {}  # not ours, or damaged: nothing to learn from it


# --- schemas ----------------------------------------------------------------------------


def load_schema(kind: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one message kind (see `SCHEMA_KINDS`), the
    current version unless `version` names an older one."""
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"no schema for {kind!r} (known: {', '.join(SCHEMA_KINDS)})")
    current = SCHEMA_VERSIONS[kind]
    if version is not None and not 1 <= version <= current:
        raise ValueError(f"{kind} has schema versions 1 to {current}, not {version}")
    name = f"{kind}.schema.json" if version in (None, current) else f"{kind}.v{version}.schema.json"
    text = resources.files(__package__).joinpath("schemas", name).read_text("utf-8")
    return json.loads(text)


__all__ = [
    "COMMANDS",
    "POSES_MODES",
    "PosesPolicy",
    "SCHEMA_KINDS",
    "SCHEMA_VERSIONS",
    "is_node_id",
    "STATS_FIELDS",
    "discovery_messages",
    "discovery_removal_message",
    "with_removals",
    "zone_label",
    "event_message",
    "parse_ack_fall_command",
    "state_message",
    "ha_status_topic",
    "iso_utc",
    "load_schema",
    "node_topic",
    "parse_command",
    "parse_snapshot_command",
    "person_count_message",
    "poses_message",
    "reply_message",
    "snapshot_message",
    "stats_message",
]
