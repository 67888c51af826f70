"""Frame results and node state as versioned MQTT messages (pure: no paho, no clock).

Payloads and their schemas only. Every topic here is a suffix; the MQTT client
adds ``<topic_prefix>/<node_id>/`` (mqtt/topics.py). Commands are parsed in
mqtt/commands.py, Home Assistant discovery is built in mqtt/discovery.py.

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
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import numpy as np

from .constants import (
    DEFAULT_MIN_PART_SCORE,
    PART_NAMES,
    TOPIC_EVENTS,
    TOPIC_PERSON_COUNT,
    TOPIC_POSES,
    TOPIC_REPLY,
    TOPIC_SNAPSHOT,
    TOPIC_STATE,
    TOPIC_STATS,
)
from .core import FrameResult, Message
from .events import Event, SceneState

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

_JSON_SEPARATORS = (",", ":")


def to_json(obj: Any) -> bytes:
    """Compact JSON, no NaN: what every JSON payload is."""
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
    return Message(TOPIC_POSES, to_json(payload), qos=QOS_STREAM, retain=False, expiry_s=expiry_s)


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
    return Message(TOPIC_STATS, to_json(payload), qos=QOS_STATE, retain=True)


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
    return Message(TOPIC_REPLY, to_json(payload), qos=QOS_STATE, retain=False)


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
    return Message(TOPIC_EVENTS, to_json(payload), qos=QOS_STATE, retain=False)


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
    return Message(TOPIC_STATE, to_json(payload), qos=QOS_STATE, retain=True)


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
    "SCHEMA_KINDS",
    "SCHEMA_VERSIONS",
    "STATS_FIELDS",
    "event_message",
    "iso_utc",
    "load_schema",
    "person_count_message",
    "poses_message",
    "reply_message",
    "snapshot_message",
    "state_message",
    "stats_message",
    "to_json",
]
