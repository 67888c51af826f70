"""TOML config to frozen, validated dataclasses: the only place config is checked.

The dataclasses below are the schema: their field names are the TOML keys,
their defaults are the defaults, and the ``metadata`` of a field carries its
bounds. The set of known keys is derived from them, so there is no second list
to keep in sync. ``load_config`` reads the file, lays CLI overrides over it and
checks everything in one pass, collecting every problem as "dotted.key:
message" before raising a single ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
import os
import re
import socket
import stat
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

from .constants import DEFAULT_MIN_PART_SCORE, DEFAULT_TOPIC_PREFIX, NODE_ID_PATTERN, NUM_PARTS
from .errors import ConfigError
from .estimators import DEFAULT_MODEL, MODELS, OPTIONS, PATH_MODEL, ModelOption
from .runtime import ACCELERATORS
from .text import show as _show

__all__ = [
    "Config",
    "DecodeConfig",
    "FallConfig",
    "PresenceConfig",
    "SmoothingConfig",
    "TrackingConfig",
    "ZoneConfig",
    "LoggingConfig",
    "MotionConfig",
    "ModelConfig",
    "MqttConfig",
    "NodeConfig",
    "OutboxConfig",
    "SnapshotConfig",
    "SourceConfig",
    "TlsConfig",
    "broker_overrides",
    "check_writable",
    "load_config",
    "redacted",
]

# Validation bounds (facts about the protocols and libraries, not tunables).
MAX_POSES_LIMIT = 20  # the decoder's NMS is quadratic in candidates; more is noise
MAX_THREADS = 64  # interpreter threads; more than any Pi has cores
PORT_MAX = 65535
KEEPALIVE_MAX_S = 65535  # MQTT's two-byte keepalive field
MESSAGE_EXPIRY_MAX_S = 2**32 - 1  # MQTT 5's four-byte message expiry interval
JPEG_QUALITY_MAX = 100
MAX_TRACKS_LIMIT = 100  # greedy matching is quadratic in tracks x poses
MAX_ZONES = 32  # each zone is an entity in Home Assistant and a test per pose per frame
MAX_ZONE_POINTS = 64
# Upper bounds the code can actually use. Durations stay far below
# threading.TIMEOUT_MAX (a longer wait is an OverflowError, not a long wait).
DURATION_MAX_S = 86_400.0  # a day
FILTER_HZ_MAX = 1000.0  # One Euro cut-offs: far above any frame rate
FILTER_BETA_MAX = 1e6  # beyond this the filter is simply off while moving
FALL_DROP_MAX = 10.0  # head drop, in standing heights
FRAME_SIDE_MAX = 8192  # camera capture width/height
FPS_MAX = 1000.0
FPS_MIN = 0.001  # one frame per 1000 s; smaller (but not 0 = no cap) is a typo
QUEUE_MAX = 100_000
SNAPSHOT_KEEP_MAX = 1_000_000
BYTES_MAX = 2**40  # 1 TiB: any disk cap beyond that is a typo
OUTBOX_MESSAGES_MIN, OUTBOX_MESSAGES_MAX = 10, 1_000_000
OUTBOX_BYTES_MIN, OUTBOX_BYTES_MAX = 64 * 1024, 2**31
# MQTT 3.1.1 servers must accept 1-23 alphanumerics and may accept more; mosquitto takes
# up to 65535 bytes. The ids are also topic levels and Home Assistant ids, so keep them short.
NODE_ID_MAX = 64
CLIENT_ID_MAX = 128
STRING_MAX = 4096  # any other string: URIs, names
TOPIC_MAX = 1024  # a topic prefix; MQTT allows 65535 bytes for the whole topic
USERNAME_MAX = 1024
# Paths: Linux NAME_MAX and PATH_MAX (bytes, PATH_MAX including the NUL).
NAME_MAX = 255
PATH_MAX = 4096
#: Secrets and certificates are small: refuse anything bigger unread (/dev/zero, a FIFO, a log file).
SECRET_FILE_MAX = 4096
CERT_FILE_MAX = 1024 * 1024
CONFIG_FILE_MAX = 1024 * 1024
#: Tables and arrays deeper than this are refused before anything recurses over them.
NESTING_MAX = 16

#: systemd credential (LoadCredential=mqtt_password:...) read when no password is configured.
CREDENTIAL_MQTT_PASSWORD = "mqtt_password"
#: Shown instead of the MQTT password by ``redacted``.
REDACTED = "***"

_TOPIC_LEVEL = r"[^+#/\x00]+"


# --- schema helpers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """Checks for one key beyond its type. Enums are typed ``Literal[...]`` instead."""

    choices: tuple[Any, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    nonempty: bool = False
    off: Any = None  # a value that means "off" and skips the range check (0 = no cap)
    max_len: int = STRING_MAX  # strings: most UTF-8 bytes
    path: bool = False  # strings: a filesystem path (checked, ~ expanded by the user of it)
    pattern: str | None = None  # full match, for strings
    pattern_help: str = ""
    toml: type | None = None  # the TOML type, when the field holds a parsed value
    parse: Callable[[Any], Any] | None = None  # TOML value -> field value; ValueError(reason)
    auto: bool = False  # the string "auto" is also accepted, held as None (decided at run time)


_RULE = "edgepose.rule"
_DERIVED = "edgepose.derived"  # a resolved value, not a key


def _key(default: Any, **rule: Any) -> Any:
    return field(default=default, metadata={_RULE: _Rule(**rule)})


def _check_path_text(text: str) -> None:
    """Refuse what would make os calls raise instead of answer: NUL bytes, names over
    NAME_MAX, paths over PATH_MAX, ``~user`` for a user that does not exist."""
    if "\x00" in text:
        raise ValueError("a path cannot contain a NUL byte")
    raw = os.fsencode(text) if _encodable(text) else None
    if raw is None:
        raise ValueError(f"not a valid file name: {_show(text)}")
    if len(raw) >= PATH_MAX:
        raise ValueError(f"path is {len(raw)} bytes long, at most {PATH_MAX - 1}")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            raise ValueError(
                f"a path component is {len(part)} bytes long, at most {NAME_MAX}: "
                f"{_show(part.decode('utf-8', 'replace'))}"
            )
    if text.startswith("~"):
        try:
            expanded = os.fsencode(str(Path(text).expanduser()))
        except RuntimeError:  # ~nosuchuser, or no home directory at all
            user = text[1:].split("/", 1)[0]
            raise ValueError(
                f"cannot expand {_show('~' + user)}: " + (f"no user {_show(user)}" if user else "no home directory")
            ) from None
        if len(expanded) >= PATH_MAX:
            raise ValueError(f"path is {len(expanded)} bytes long once ~ is expanded, at most {PATH_MAX - 1}")


def _encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeError:  # a lone surrogate
        return False
    return True


def _parse_dir(text: str) -> Path:
    _check_path_text(text)
    return Path(text).expanduser()


def _parse_points(value: list) -> tuple[tuple[float, float], ...]:
    """A polygon as [[x, y], ...] in 0..1 of the frame: at least 3 corners, some area."""
    if not 3 <= len(value) <= MAX_ZONE_POINTS:
        raise ValueError(f"expected 3-{MAX_ZONE_POINTS} points [[x, y], ...], got {len(value)}")
    points = []
    for i, point in enumerate(value):
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in point)
        ):
            raise ValueError(f"point {i}: expected [x, y] (two numbers), got {_show(point)}")
        x, y = (float(c) for c in point)
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(
                f"point {i}: x and y are fractions of the frame (0-1), got [{x:g}, {y:g}]"
            )
        points.append((x, y))
    # Shoelace area: a polygon whose corners are all on one line contains nothing.
    twice_area = sum(
        x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1])
    )
    if abs(twice_area) < 1e-9:
        raise ValueError("the points enclose no area (all on one line?)")
    return tuple(points)


# --- the schema -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Who this camera node is in topics and Home Assistant ids."""

    id: str = _key(  # "" -> the host name, sanitised
        "",
        pattern=f"({NODE_ID_PATTERN})?",
        pattern_help="must be 1-64 letters, digits, '_' or '-'",
    )
    #: What the node remembers across restarts (who was present, what Home Assistant was
    #: told), a small JSON file; relative -> the state directory ($STATE_DIRECTORY under systemd).
    state_file: Path = _key(Path("edgepose-state.json"), toml=str, nonempty=True, parse=_parse_dir)
    #: A web page for this node (Home Assistant's "Visit" link on the device); "" = none.
    configuration_url: str = _key(
        "",
        pattern=r"(https?://\S+)?",
        pattern_help='must be "" or an http:// or https:// URL',
    )


@dataclass(frozen=True, slots=True)
class _ModelKeys:
    """The [model] keys every model takes; ModelConfig adds its families' own after `path`."""

    name: str = _key(DEFAULT_MODEL, choices=tuple(MODELS))
    path: str = _key("", path=True)  # a .tflite file of that model's family instead of the bundled build
    #: true: the int8 build; false: the float build; None ("auto"): the one that is fast
    #: on the TF Lite runtime found (runtime/defaults.py, measured; README).
    quantized: bool | None = _key(None, toml=bool, auto=True)
    #: Where the model runs; each value is served by a runtime (edgepose.runtime.ACCELERATORS).
    accelerator: str = _key("cpu", choices=tuple(ACCELERATORS))
    edgetpu_device: str = _key(  # "" = first Edge TPU found
        "",
        pattern=r"((usb|pci)(:\d+)?)?",
        pattern_help='must be "", "usb", "usb:N", "pci" or "pci:N"',
    )
    threads: int = _key(0, ge=0, le=MAX_THREADS)  # 0 = auto: cores - 1 (runtime/defaults.py)


@dataclass(frozen=True, slots=True)
class _DecodeKeys:
    """The [decode] keys every model takes; DecodeConfig adds its families' own after
    `min_part_score`."""

    #: None: the model's default (ModelSpec.defaults); load_config resolves it, so a
    #: loaded Config always holds a number.
    max_poses: int | None = _key(None, toml=int, ge=1, le=MAX_POSES_LIMIT)
    #: None: the model's default (ModelSpec.defaults, as TF.js); resolved by load_config.
    min_pose_score: float | None = _key(None, toml=float, ge=0, le=1)
    min_part_score: float = _key(DEFAULT_MIN_PART_SCORE, ge=0, le=1)
    cleanup: Literal["none", "seed", "seed-single"] = "none"
    min_keypoints: int = _key(0, ge=0, le=NUM_PARTS)  # keypoints >= min_part_score a pose needs


def _option_field(option: ModelOption) -> Any:
    rule = _Rule(choices=option.choices, ge=option.ge, gt=option.gt, le=option.le, toml=option.toml,
                 parse=option.parse, auto=option.auto)
    return field(default=option.default, metadata={_RULE: rule})


def _with_family_keys(keys: type, name: str, after: str, doc: str) -> type:
    """The section dataclass `name`: the fields of `keys` with the model families' own
    keys for this table (estimators.OPTIONS) after the field `after`."""
    table = name.removesuffix("Config").lower()
    family = [(key.partition(".")[2], option.type, _option_field(option))
              for key, option in OPTIONS.items() if option.type is not None and key.startswith(table + ".")]
    hints = typing.get_type_hints(keys)
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(keys):
        fields.append((f.name, hints[f.name], field(default=f.default, metadata=f.metadata)))
        if f.name == after:
            fields.extend(family)
    cls = dataclasses.make_dataclass(name, fields, frozen=True, slots=True, namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


ModelConfig = _with_family_keys(_ModelKeys, "ModelConfig", "path",
                                "Which model runs where. `name` picks the model; the other keys refine it.")
DecodeConfig = _with_family_keys(_DecodeKeys, "DecodeConfig", "min_part_score",
                                 "How poses are decoded and filtered.")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    #: The Pi camera; "demo" (the bundled photos) only when asked for by name.
    uri: str = _key("picamera2", nonempty=True)
    max_fps: float = _key(10.0, off=0.0, ge=FPS_MIN, le=FPS_MAX)  # 0 = no cap
    loop: bool = False  # restart files and folders at their end; false: stop there (the demo always loops)
    width: int = _key(640, ge=1, le=FRAME_SIDE_MAX)  # camera capture size
    height: int = _key(480, ge=1, le=FRAME_SIDE_MAX)
    reopen_delay_s: float = _key(1.0, ge=0.01, le=DURATION_MAX_S)  # first back-off after a failure
    reopen_delay_max_s: float = _key(30.0, ge=0.01, le=DURATION_MAX_S)  # back-off doubles up to this


@dataclass(frozen=True, slots=True)
class TlsConfig:
    enabled: bool = False
    ca_file: str = _key("", path=True)  # "" = the system CA store
    cert_file: str = _key("", path=True)  # client certificate, for brokers that require one
    key_file: str = _key("", path=True)
    insecure: bool = False  # skip the hostname check; with no ca_file, the certificate check too


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = True
    host: str = _key("localhost", nonempty=True)
    port: int = _key(1883, ge=1, le=PORT_MAX)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str = _key(  # "" -> "edgepose-<node id>"
        "",
        max_len=CLIENT_ID_MAX,
        pattern=r"[A-Za-z0-9_-]*",
        pattern_help="may contain only letters, digits, '_' and '-' (what every MQTT broker accepts)",
    )
    #: A half-open link is noticed after 1.5-2x this (broker, client): keep it well under 60.
    keepalive_s: int = _key(15, ge=1, le=KEEPALIVE_MAX_S)
    username: str = _key("", max_len=USERNAME_MAX)
    password_file: str = _key("", path=True)  # relative -> $CREDENTIALS_DIRECTORY when set
    password_env: str = _key(
        "",
        pattern=r"([A-Za-z_][A-Za-z0-9_]*)?",
        pattern_help="must be an environment variable name",
    )
    topic_prefix: str = _key(
        DEFAULT_TOPIC_PREFIX,
        max_len=TOPIC_MAX,
        pattern=f"{_TOPIC_LEVEL}(/{_TOPIC_LEVEL})*",
        pattern_help="must be a topic such as \"edgepose\" or \"site/edgepose\": "
        "not empty, no '+' or '#', no leading, trailing or doubled '/'",
    )
    poses_mode: Literal["every_frame", "on_change", "interval", "off"] = "every_frame"
    poses_interval_s: float = _key(1.0, ge=0.01, le=DURATION_MAX_S)
    poses_expiry_s: int = _key(5, ge=0, le=MESSAGE_EXPIRY_MAX_S)  # MQTT 5 message expiry; 0 = never expires
    stats_interval_s: float = _key(60.0, ge=0.1, le=DURATION_MAX_S)
    publish_snapshot: bool = False
    max_queued: int = _key(100, ge=1, le=QUEUE_MAX)  # QoS 0 poses waiting for the socket
    home_assistant: bool = True  # announce the node to Home Assistant (MQTT discovery)
    discovery_prefix: str = _key(
        "homeassistant",
        max_len=TOPIC_MAX,
        pattern=f"{_TOPIC_LEVEL}(/{_TOPIC_LEVEL})*",
        pattern_help="must be a topic: not empty, no '+' or '#', "
        "no leading, trailing or doubled '/'",
    )
    tls: TlsConfig = field(default_factory=TlsConfig)
    #: Resolved from password_file, password_env or the systemd credential; never shown.
    password: str | None = field(default=None, repr=False, metadata={_DERIVED: True})


@dataclass(frozen=True, slots=True)
class SnapshotConfig:
    enabled: bool = True
    dir: Path = _key(Path("snapshots"), toml=str, nonempty=True, parse=_parse_dir)
    interval_s: float = _key(60.0, ge=0, le=DURATION_MAX_S)  # 0 = no periodic snapshots
    on_count_change: bool = True
    #: A person count can flicker between frames: at most one snapshot per this many seconds
    #: for count changes and intervals (commands are never held back).
    cooldown_s: float = _key(5.0, ge=0, le=DURATION_MAX_S)
    keep: int = _key(100, ge=1, le=SNAPSHOT_KEEP_MAX)
    max_bytes: int = _key(50_000_000, ge=0, le=BYTES_MAX)  # 0 = no size cap
    jpeg_quality: int = _key(85, ge=1, le=JPEG_QUALITY_MAX)
    labels: bool = True
    #: What snapshots (files, fall snapshots, the MQTT image) show behind the overlay:
    #: "skeleton" a plain background, "blur" the picture blurred beyond recognition,
    #: "off" the camera picture. Not the picture by default: see the README, "Privacy".
    privacy: Literal["skeleton", "blur", "off"] = "skeleton"


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """Stable person ids across frames (tracking.py), always on: presence, falls and
    smoothing follow people by their ids. Figures after TF.js pose-detection's tracker."""

    #: Keypoint similarity (OKS, COCO's per-part sigmas) a pose needs to continue a track.
    min_similarity: float = _key(0.2, ge=0, le=1)
    #: Keypoints scoring below this take no part in matching.
    min_part_score: float = _key(0.3, ge=0, le=1)
    #: Poses sharing fewer confident keypoints with a track are matched by box overlap instead.
    min_keypoints: int = _key(4, ge=1, le=NUM_PARTS)
    #: Box overlap (IoU) a pose needs to continue a track when keypoints cannot decide.
    min_iou: float = _key(0.15, ge=0, le=1)
    #: Seconds a track lives on unseen; a person seen again within it keeps their id.
    max_age_s: float = _key(1.0, gt=0, le=DURATION_MAX_S)
    #: Most tracks alive at once; beyond it the longest unseen is dropped.
    max_tracks: int = _key(18, ge=1, le=MAX_TRACKS_LIMIT)


@dataclass(frozen=True, slots=True)
class SmoothingConfig:
    """One Euro filter on published keypoints (smoothing.py), in fractions of the frame.

    On by default: these settings about halve the jitter of a still person and keep a
    walking one a few pixels behind (the figures: docs/events.md, "Smoother")."""

    enabled: bool = True
    #: Cut-off frequency (Hz) when still: lower removes more jitter and lags more.
    min_cutoff_hz: float = _key(0.5, gt=0, le=FILTER_HZ_MAX)
    #: How fast the cut-off rises with speed (per frame-fraction per second): higher lags less when moving.
    beta: float = _key(10.0, ge=0, le=FILTER_BETA_MAX)
    #: Cut-off frequency (Hz) for the speed estimate itself.
    d_cutoff_hz: float = _key(1.0, gt=0, le=FILTER_HZ_MAX)


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Debounced presence (events.py): counts follow people, not single frames."""

    #: Seconds a person must be seen before they count as entered.
    enter_s: float = _key(0.5, ge=0, le=DURATION_MAX_S)
    #: Seconds a person may go unseen before they count as left.
    hold_s: float = _key(3.0, ge=0, le=DURATION_MAX_S)


@dataclass(frozen=True, slots=True)
class FallConfig:
    """Fall detection from the tracked skeleton (falls.py; defaults chosen on the real
    falls of docs/falls.md)."""

    enabled: bool = True
    #: Torso (hip mid-point to shoulder mid-point) at most this far from vertical: upright.
    upright_deg: float = _key(30.0, ge=0, le=90)
    #: Torso at least this far from vertical: a lying shape.
    down_deg: float = _key(60.0, ge=0, le=90)
    #: The descent, from the last upright frame to the first low one, takes at most this long.
    window_s: float = _key(2.0, gt=0, le=DURATION_MAX_S)
    #: Low: the head has come down by at least this many standing heights (half of it
    #: with a lying shape).
    min_drop: float = _key(0.6, ge=0, le=FALL_DROP_MAX)
    #: Seconds the person must stay low after the descent before a fall is raised.
    confirm_s: float = _key(2.0, ge=0, le=DURATION_MAX_S)
    #: Seconds someone seen upright before must stay low, with no descent seen, before a
    #: fall is raised anyway (cause "down").
    down_s: float = _key(60.0, gt=0, le=DURATION_MAX_S)
    #: Seconds the person must be upright again before the fall clears.
    clear_s: float = _key(2.0, ge=0, le=DURATION_MAX_S)
    #: Keypoints scoring below this are not used for angles and heights.
    min_part_score: float = _key(0.3, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """A named polygon in fractions of the frame (zones.py)."""

    name: str = _key(
        "",
        nonempty=True,
        pattern=r"[A-Za-z0-9_-]{1,64}",
        pattern_help="must be 1-64 letters, digits, '_' or '-' (a Home Assistant id part)",
    )
    #: "occupancy": counted per zone; "exclusion": people anchored inside are ignored (a poster, a TV).
    kind: Literal["occupancy", "exclusion"] = "occupancy"
    #: Lying down is normal here (a bed, a sofa): no fall is raised.
    lying_ok: bool = False
    #: Which point of a person decides whether they are inside: "feet" (bottom centre of the
    #: body) or "centre" (mid-hips; better for beds and sofas).
    anchor: Literal["feet", "centre"] = "feet"
    #: Corners [[x, y], ...], x / width and y / height of the frame, 0-1.
    points: tuple[tuple[float, float], ...] = _key((), toml=list, parse=_parse_points)


@dataclass(frozen=True, slots=True)
class MotionConfig:
    """Motion gating (motion.py): a frame that moved always runs; with nothing moving
    the model runs every idle_interval_s, or every still_interval_s while someone was
    seen in the last hold_s."""

    enabled: bool = True
    pixel_threshold: int = _key(12, ge=0, le=255)  # grey levels a cell must change by
    min_changed: float = _key(0.005, gt=0, le=1)  # fraction of cells that must change
    background_tau_s: float = _key(1.0, gt=0, le=3600)  # how fast the background follows the scene
    idle_interval_s: float = _key(2.0, gt=0, le=3600)  # one inference every this with nothing moving
    #: The gate follows people for this long after someone was seen (longer than
    #: presence.hold_s, so a person who left is noticed on time).
    hold_s: float = _key(5.0, ge=0, le=3600)
    #: While following people and nothing moves: one inference every this (at most half
    #: of tracking.max_age_s, so a still person keeps their track id).
    still_interval_s: float = _key(0.5, gt=0, le=3600)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """The disk outbox for events and telemetry that must survive outages and restarts."""

    enabled: bool = True
    #: SQLite file; relative -> the state directory ($STATE_DIRECTORY under systemd).
    path: Path = _key(Path("outbox.sqlite3"), toml=str, nonempty=True, parse=_parse_dir)
    #: Bounds; when either is reached the oldest telemetry goes first, events last.
    max_messages: int = _key(10_000, ge=OUTBOX_MESSAGES_MIN, le=OUTBOX_MESSAGES_MAX)
    max_bytes: int = _key(16_000_000, ge=OUTBOX_BYTES_MIN, le=OUTBOX_BYTES_MAX)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated config; each stage is handed only its section."""

    node: NodeConfig = field(default_factory=NodeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    snapshots: SnapshotConfig = field(default_factory=SnapshotConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    falls: FallConfig = field(default_factory=FallConfig)
    #: [[zones]] tables; none by default (the whole frame is the node's one area).
    zones: tuple[ZoneConfig, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# --- loading --------------------------------------------------------------------------


def load_config(
    path: str | Path | None, overrides: dict[str, object] | None = None
) -> Config:
    """Read ``path`` (None: defaults only), apply dotted-key ``overrides``, validate once.

    ``overrides`` maps dotted keys to single values, e.g. {"mqtt.port": 1884}; a
    value of None is skipped, so the CLI can pass every flag whether given or not.
    Raises ConfigError listing every problem found, each as "dotted.key: message".
    """
    raw = _read_toml(Path(path)) if path is not None else {}
    try:
        return _load(raw, overrides or {})
    except RecursionError:  # _check_depth should make this unreachable; never a traceback
        raise ConfigError("config: tables or arrays nested too deeply") from None


def _load(raw: dict[str, Any], overrides: dict[str, object]) -> Config:
    """Validate a parsed TOML document (plus overrides): a Config or one ConfigError."""
    problems: list[str] = []
    _apply_overrides(raw, overrides, problems)
    _accept_model_name_in_path(raw)
    _check_depth(raw, problems)
    if problems:
        raise ConfigError(problems)
    written = _written_keys(raw, ("model", "decode"))
    bad: set[str] = set()  # keys whose own check failed: cross-field rules skip them
    config = Config(**_check_table(Config, raw, "", problems, bad))
    config = _check_model_options(config, written, bad, problems)
    _check_model(config.model, config.decode, bad, problems)
    _check_source(config.source, bad, problems)
    _check_tls(config.mqtt.tls, bad, problems)
    _check_falls(config.falls, bad, problems)
    if not {"tracking.max_tracks", "decode.max_poses"} & bad:
        if config.tracking.max_tracks < config.decode.max_poses:
            problems.append(
                f"tracking.max_tracks: must be >= decode.max_poses ({config.decode.max_poses}), "
                f"got {config.tracking.max_tracks}: every person found needs a track"
            )
    if not {"motion.still_interval_s", "tracking.max_age_s"} & bad:
        if config.motion.enabled and config.motion.still_interval_s > config.tracking.max_age_s / 2:
            problems.append(
                f"motion.still_interval_s: must be at most half of tracking.max_age_s "
                f"({config.tracking.max_age_s:g} s), got {config.motion.still_interval_s:g}: "
                "a still person would lose their track id between two inferences"
            )
    _check_zones(config.zones, bad, problems)
    password = _resolve_password(config.mqtt, bad, problems)
    node_id = config.node.id or _hostname_id()
    client_id = config.mqtt.client_id or f"edgepose-{node_id}"
    if not {"node.id", "mqtt.client_id"} & bad and len(client_id.encode()) > CLIENT_ID_MAX:
        problems.append(f"mqtt.client_id: at most {CLIENT_ID_MAX} bytes, got {len(client_id.encode())}")
    snapshot_dir = _resolve_state_path("snapshots.dir", config.snapshots.dir, problems)
    outbox_path = _resolve_state_path("outbox.path", config.outbox.path, problems)
    state_file = _resolve_state_path("node.state_file", config.node.state_file, problems)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(
        config,
        node=dataclasses.replace(config.node, id=node_id, state_file=state_file),
        mqtt=dataclasses.replace(
            config.mqtt,
            client_id=client_id,
            password=password,
        ),
        snapshots=dataclasses.replace(config.snapshots, dir=snapshot_dir),
        outbox=dataclasses.replace(config.outbox, path=outbox_path),
    )


def check_writable(config: Config) -> None:
    """At daemon start: the snapshot folder and the folders of the outbox and the state
    file exist (made if need be) and take a file. Under systemd (``$STATE_DIRECTORY`` set) they must also lie in
    the state directory: ``ProtectSystem=strict`` makes every other place read-only.
    Raises one ConfigError naming each key that fails. Not part of `load_config`, so
    ``detect`` and ``check`` never create folders.
    """
    problems: list[str] = []
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    wanted: list[tuple[str, Path]] = []
    if config.snapshots.enabled:
        wanted.append(("snapshots.dir", Path(config.snapshots.dir)))
    if config.outbox.enabled:
        wanted.append(("outbox.path", Path(config.outbox.path).parent))
    wanted.append(("node.state_file", Path(config.node.state_file).parent))
    for key, directory in wanted:
        if state and not _is_within(directory, Path(state)):
            problems.append(
                f"{key}: {directory} is outside the service's state directory {state}; "
                "the unit's ProtectSystem=strict makes it read-only (use a relative path)"
            )
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".edgepose-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(f"{key}: cannot write to {directory}: {reason}")
    if problems:
        raise ConfigError(problems)


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain TOML-like values for printing, the password replaced by "***"."""
    return _as_dict(config)


def _as_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _as_dict(value)
        elif _table_array_of(typing.get_type_hints(type(obj))[f.name]) is not None:  # [[zones]]
            out[f.name] = [_as_dict(item) for item in value]
        elif f.name == "points":
            out[f.name] = [list(p) for p in value]
        elif not f.repr:  # a secret
            out[f.name] = None if value is None else REDACTED
        elif isinstance(value, tuple):  # a size such as model.input_size
            out[f.name] = "x".join(str(v) for v in value)
        elif value is None and f.metadata.get(_RULE, _Rule()).auto:
            out[f.name] = "auto"
        elif isinstance(value, Path):
            out[f.name] = str(value)
        else:
            out[f.name] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = read_small_file(path, CONFIG_FILE_MAX)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{_show_path(path)}: cannot read config file: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{_show_path(path)}: line {line}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_show_path(path)}: TOML syntax error {_toml_error_position(exc, text)}") from None
    except ValueError as exc:  # e.g. an integer literal over Python's 4300-digit limit
        raise ConfigError(f"{_show_path(path)}: TOML value error: {_show(str(exc))}") from None
    except RecursionError:  # tomllib recurses per nested array / inline table
        raise ConfigError(
            f"{_show_path(path)}: tables or arrays nested too deeply (at most {NESTING_MAX} levels)"
        ) from None


def read_small_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused unread when it is anything else or over `limit`.

    Opened non-blocking, so a FIFO never hangs the caller, and checked with fstat
    on the opened file, so /dev/zero or a swapped-in symlink is never read.
    Raises OSError (cannot open) or ValueError (not a regular file, too big).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file (a device, FIFO or folder is never read)")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, at most {limit}")
        chunks, size = [], 0
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError(f"over {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _show_path(path: Path | str) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:100] + "..." + text[-60:]


def _check_depth(raw: dict[str, Any], problems: list[str]) -> None:
    """Refuse tables/arrays nested beyond NESTING_MAX, iteratively (no recursion to blow)."""
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > NESTING_MAX:
            problems.append(f"{where or 'config'}: nested more than {NESTING_MAX} levels deep")
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                name = _key_text(str(key))
                stack.append((item, f"{where}.{name}" if where else name, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{where}[{index}]", depth + 1))


def _toml_error_position(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """tomllib (before 3.14) puts the position only in the message text."""
    message = str(getattr(exc, "msg", None) or exc)
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if line is None:
        if found := re.search(r"\s*\(at line (\d+), column (\d+)\)$", message):
            line, column = int(found[1]), int(found[2])
            message = message[: found.start()]
        elif found := re.search(r"\s*\(at end of document\)$", message):
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            message = message[: found.start()] + " (at end of file)"
    if line is None:
        return f": {message}"
    return f"at line {line}, column {column}: {message}"


def _apply_overrides(
    raw: dict[str, Any], overrides: dict[str, object], problems: list[str]
) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        if not all(parts):
            problems.append(f"{dotted}: not a dotted key such as \"mqtt.port\"")
            continue
        table = raw
        for depth, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                problems.append(
                    f"{dotted}: cannot override: {'.'.join(parts[: depth + 1])} is not a table"
                )
                break
        else:
            table[parts[-1]] = value


def _accept_model_name_in_path(raw: dict[str, Any]) -> None:
    """Before model.name existed, model.path held the model's name: still read it so; a
    file given without a name is PATH_MODEL's, as it always was."""
    model = raw.get("model")
    if not isinstance(model, dict) or "name" in model or not isinstance(model.get("path"), str):
        return
    if model["path"] in MODELS:
        model["name"] = model.pop("path")
    elif model["path"]:
        model["name"] = PATH_MODEL


#: Broker URL schemes `broker_overrides` takes, and whether each turns TLS on.
BROKER_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
MQTT_PORT, MQTTS_PORT = 1883, 8883


def broker_overrides(text: str) -> dict[str, object]:
    """``--broker`` as config overrides: HOST, HOST:PORT, [IPv6]:PORT, or a URL
    mqtt://HOST[:PORT] (port 1883) / mqtts://HOST[:PORT] (TLS on, port 8883).

    Raises ConfigError naming the key a bad part would set.
    """
    text = text.strip()
    scheme, has_scheme, _ = text.partition("://")
    if has_scheme:
        scheme = scheme.lower()
        if scheme not in BROKER_SCHEMES:
            raise ConfigError(
                f"mqtt.host: --broker {_show(text)}: unknown scheme {_show(scheme)} "
                f"(use {', '.join(s + '://' for s in BROKER_SCHEMES)} or HOST[:PORT])"
            )
        parts = urlsplit(text)
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                "mqtt.username: --broker: credentials in the URL are not read; "
                "use mqtt.username with mqtt.password_file or mqtt.password_env"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"mqtt.host: --broker {_show(text)}: a broker URL has no path or query")
    else:
        parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"mqtt.port: --broker {_show(text)}: the port must be 1-{PORT_MAX}") from None
    if not parts.hostname:
        raise ConfigError(f"mqtt.host: --broker {_show(text)}: no host name")
    overrides: dict[str, object] = {"mqtt.host": parts.hostname}
    if has_scheme:
        tls = BROKER_SCHEMES[scheme]
        overrides["mqtt.tls.enabled"] = tls
        port = port or (MQTTS_PORT if tls else MQTT_PORT)
    if port is not None:
        overrides["mqtt.port"] = port
    return overrides


# --- per-key checks -------------------------------------------------------------------


class _Bad:
    """The result of a check that failed: the key keeps its default and joins ``bad``."""


_BAD = _Bad()


def _check_table(
    cls: type, table: Any, prefix: str, problems: list[str], bad: set[str]
) -> dict[str, Any]:
    """Constructor arguments for ``cls`` from a TOML table; bad and absent keys omitted."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get(_DERIVED)}
    for name in table:
        if name not in fields:
            problems.append(_unknown_key(prefix, name))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in table:
            continue
        dotted, value, hint = prefix + name, table[name], hints[name]
        item_cls = _table_array_of(hint)
        if item_cls is not None:
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                kwargs[name] = tuple(
                    item_cls(**_check_table(item_cls, item, f"{dotted}[{i}].", problems, bad))
                    for i, item in enumerate(value)
                )
            else:
                problems.append(
                    f"{dotted}: expected tables [[{dotted}]], got {_describe(value)}"
                )
                bad.add(dotted)
            continue
        if dataclasses.is_dataclass(hint):
            if isinstance(value, dict):
                kwargs[name] = hint(**_check_table(hint, value, dotted + ".", problems, bad))
            else:
                problems.append(f"{dotted}: expected a table [{dotted}], got {_describe(value)}")
                bad.add(dotted)
            continue
        checked = _check_value(dotted, value, hint, f.metadata.get(_RULE, _Rule()), problems)
        if checked is _BAD:
            bad.add(dotted)
        else:
            kwargs[name] = checked
    return kwargs


def _check_value(dotted: str, value: Any, hint: Any, rule: _Rule, problems: list[str]) -> Any:
    if rule.auto and value == "auto":
        return None
    choices = rule.choices
    expected = rule.toml or hint
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        expected = type(choices[0])

    def fail(message: str) -> _Bad:
        problems.append(f"{dotted}: {message}")
        return _BAD

    if expected is bool:
        if not isinstance(value, bool):
            also = ' or "auto"' if rule.auto else ""
            return fail(f"expected true or false{also}, got {_describe(value)}")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return fail(f"expected an integer, got {_describe(value)}")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return fail(f"expected a number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            return fail(f"must be a finite number, got {_show(value)}")
    elif expected is list:
        if not isinstance(value, list):
            return fail(f"expected an array, got {_describe(value)}")
    elif expected is str:
        if not isinstance(value, str):
            hint_text = f" (one of {_list(choices)}, in quotes)" if choices else ""
            return fail(f"expected a string{hint_text}, got {_describe(value)}")
        if "\x00" in value:
            return fail("must not contain a NUL byte")
        if not _encodable(value):
            return fail(f"not valid text: {_show(value)}")
        if not rule.path and len(value.encode("utf-8", "surrogateescape")) > rule.max_len:
            return fail(f"at most {rule.max_len} bytes, got {len(value.encode('utf-8', 'surrogateescape'))}")
        if rule.path and value:
            try:
                _check_path_text(value)
            except ValueError as exc:
                return fail(str(exc))
    else:  # pragma: no cover - a schema mistake, not a user mistake
        raise TypeError(f"{dotted}: no TOML type for {hint!r}")

    if rule.nonempty and not value.strip():
        return fail("must not be empty")
    if choices and value not in choices:
        message = f"must be one of {_list(choices)}, got {_show(value)}"
        if isinstance(value, str):
            near = difflib.get_close_matches(value.lower(), [str(c) for c in choices], n=1)
            if near:
                message += f"; did you mean {_show(near[0])}?"
        return fail(message)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        return fail(f"{rule.pattern_help}, got {_show(value)}")
    if rule.off is not None and value == rule.off:
        pass
    elif rule.ge is not None and rule.le is not None:
        if not rule.ge <= value <= rule.le:
            also = f" (or {_show(rule.off)} for none)" if rule.off is not None else ""
            return fail(f"must be {_show(rule.ge)}-{_show(rule.le)}{also}, got {_show(value)}")
    elif rule.ge is not None and not value >= rule.ge:
        return fail(f"must be >= {_show(rule.ge)}, got {_show(value)}")
    elif rule.le is not None and not value <= rule.le:
        return fail(f"must be <= {_show(rule.le)}, got {_show(value)}")
    if rule.gt is not None and value != rule.off and not value > rule.gt:
        return fail(f"must be > {_show(rule.gt)}, got {_show(value)}")
    if rule.parse is not None:
        try:
            value = rule.parse(value)
        except ValueError as exc:
            return fail(str(exc))
    return value


def _key_text(name: str) -> str:
    """One key as TOML would write it: bare when it can be, quoted otherwise (an empty
    or odd key must still be visible in a message)."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,60}", name):
        return name
    return _show(name)


def _unknown_key(prefix: str, name: str) -> str:
    dotted = prefix + _key_text(name)
    if dotted == "mqtt.password":
        return (
            f"{dotted}: unknown key; passwords are never read from the config file: "
            "use mqtt.password_file, mqtt.password_env or the systemd credential "
            f"{CREDENTIAL_MQTT_PASSWORD}"
        )
    section = re.sub(r"\[\d+\]", "", prefix.rstrip("."))
    siblings = [k.rsplit(".", 1)[-1] for k in _ALL_KEYS if k.rpartition(".")[0] == section]
    near = difflib.get_close_matches(name, siblings, n=1)
    if near:
        return f"{dotted}: unknown key; did you mean {prefix + near[0]}?"
    # (prefix keeps an array index such as zones[1]. so the message points at the table)
    elsewhere = [k for k in _ALL_KEYS if k.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return f"{dotted}: unknown key; did you mean {' or '.join(elsewhere)}?"
    where = f"[{section}]" if section else "the top level"
    return f"{dotted}: unknown key; known keys in {where}: {', '.join(siblings)}"


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key and table name, derived from the dataclasses."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get(_DERIVED):
            continue
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(_all_keys(hints[f.name], prefix + f.name + "."))
        elif (item_cls := _table_array_of(hints[f.name])) is not None:
            keys.extend(_all_keys(item_cls, prefix + f.name + "."))
    return keys


def _table_array_of(hint: Any) -> type | None:
    """The dataclass of a ``tuple[X, ...]`` field (a TOML array of tables), else None."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


_ALL_KEYS: tuple[str, ...] = tuple(_all_keys(Config))


# --- cross-field checks ---------------------------------------------------------------

#: Keys only some models take, and why another model refuses them (declared by the
#: model families, estimators.OPTIONS; ModelSpec.options says which model takes which).
FAMILY_KEYS: dict[str, str] = {key: option.refused for key, option in OPTIONS.items()}
#: Keys whose default depends on the model (ModelSpec.defaults); None in the dataclass.
MODEL_DEFAULT_KEYS: tuple[str, ...] = ("decode.max_poses", "decode.min_pose_score")


def _written_keys(raw: dict[str, Any], sections: tuple[str, ...]) -> set[str]:
    """The dotted keys the file (or a CLI override) actually sets in `sections`,
    before any default fills the rest in."""
    keys: set[str] = set()
    for section in sections:
        table = raw.get(section)
        if isinstance(table, dict):
            keys.update(f"{section}.{name}" for name in table if isinstance(name, str))
    return keys


def _check_model_options(config: Config, written: set[str], bad: set[str], problems: list[str]) -> Config:
    """Refuse a key written for a model that does not take it (naming model.name), then
    fill in the model's own defaults for the keys not written."""
    name_ok = "model.name" not in bad
    spec = MODELS[config.model.name if name_ok else DEFAULT_MODEL]
    if name_ok:
        for key in sorted(written & FAMILY_KEYS.keys() - spec.options):
            problems.append(f"{key}: {FAMILY_KEYS[key]}; model.name is {_show(spec.name)}")
            bad.add(key)
        limit = spec.max_poses_limit
        if (limit is not None and "decode.max_poses" in written - bad
                and config.decode.max_poses is not None and config.decode.max_poses > limit):
            problems.append(f"decode.max_poses: {spec.name} finds at most {limit} people, "
                            f"got {config.decode.max_poses}")
            bad.add("decode.max_poses")
    defaults = dict(spec.defaults)
    decode = config.decode
    for key in MODEL_DEFAULT_KEYS:
        section, _, name = key.partition(".")
        if getattr(decode, name) is None or key in bad:
            decode = dataclasses.replace(decode, **{name: defaults[key]})
    return dataclasses.replace(config, decode=decode)



def _check_model(model: ModelConfig, decode: DecodeConfig, bad: set[str], problems: list[str]) -> None:
    spec = MODELS[model.name] if "model.name" not in bad else None
    if spec is not None and spec.check is not None:  # the family's rules across its keys
        problems.extend(spec.check(model, decode, frozenset(bad)))
    if model.accelerator == "edgetpu" and not {"model.path", "model.quantized"} & bad:
        name = Path(model.path).name.lower()
        if model.path and not name.endswith("_edgetpu.tflite"):
            problems.append(
                "model.accelerator: the Edge TPU runs only files compiled with edgetpu_compiler "
                f"(*_edgetpu.tflite); model.path {_show(model.path)} is a CPU model"
            )
        elif not model.path:
            problems.append(
                "model.accelerator: the Edge TPU runs only files compiled with edgetpu_compiler: "
                "compile the int8 build (README, \"Coral\") and set model.path to the "
                "*_edgetpu.tflite file"
            )


def _check_source(source: SourceConfig, bad: set[str], problems: list[str]) -> None:
    if {"source.reopen_delay_s", "source.reopen_delay_max_s"} & bad:
        return
    if source.reopen_delay_max_s < source.reopen_delay_s:
        problems.append(
            f"source.reopen_delay_max_s: must be >= source.reopen_delay_s "
            f"({source.reopen_delay_s:g}), got {source.reopen_delay_max_s:g}"
        )


def _check_falls(falls: FallConfig, bad: set[str], problems: list[str]) -> None:
    if {"falls.upright_deg", "falls.down_deg"} & bad:
        return
    if falls.down_deg <= falls.upright_deg:
        problems.append(
            f"falls.down_deg: must be > falls.upright_deg ({falls.upright_deg:g}), "
            f"got {falls.down_deg:g}"
        )


def _check_zones(zones: tuple[ZoneConfig, ...], bad: set[str], problems: list[str]) -> None:
    if len(zones) > MAX_ZONES:
        problems.append(f"zones: at most {MAX_ZONES} zones, got {len(zones)}")
    seen: dict[str, int] = {}
    for i, zone in enumerate(zones):
        # A key left out keeps its default, which for these two is no value at all.
        if f"zones[{i}].name" in bad:
            pass
        elif not zone.name:
            problems.append(f"zones[{i}].name: every zone needs a name")
        elif zone.name in seen:
            problems.append(
                f"zones[{i}].name: {_show(zone.name)} is already the name of zones[{seen[zone.name]}]"
            )
        else:
            seen[zone.name] = i
        if not zone.points and f"zones[{i}].points" not in bad:
            problems.append(f"zones[{i}].points: every zone needs points [[x, y], ...]")


def _check_tls(tls: TlsConfig, bad: set[str], problems: list[str]) -> None:
    for name in ("ca_file", "cert_file", "key_file"):
        value, dotted = getattr(tls, name), f"mqtt.tls.{name}"
        if not value or dotted in bad:
            continue
        path = Path(value).expanduser()
        try:
            read_small_file(path, CERT_FILE_MAX)
        except FileNotFoundError:
            problems.append(f"{dotted}: no such file: {_show_path(path)}")
        except OSError as exc:
            problems.append(f"{dotted}: cannot read {_show_path(path)}: {exc.strerror or type(exc).__name__}")
        except ValueError as exc:
            problems.append(f"{dotted}: cannot read {_show_path(path)}: {exc}")
    if tls.key_file and not tls.cert_file:
        problems.append("mqtt.tls.key_file: needs mqtt.tls.cert_file")


def _resolve_password(mqtt: MqttConfig, bad: set[str], problems: list[str]) -> str | None:
    """The MQTT password from its one configured place; problems never include it."""
    if {"mqtt.username", "mqtt.password_file", "mqtt.password_env"} & bad:
        return None
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if mqtt.password_file and mqtt.password_env:
        problems.append(
            "mqtt.password_env: set only one of mqtt.password_file and mqtt.password_env"
        )
        return None
    if not mqtt.username:
        for key in ("password_file", "password_env"):
            if getattr(mqtt, key):
                problems.append(f"mqtt.{key}: a password needs mqtt.username")
        return None
    if mqtt.password_file:
        path = Path(mqtt.password_file).expanduser()
        if not path.is_absolute() and credentials:
            path = Path(credentials) / path
        return _read_secret("mqtt.password_file", path, problems)
    if mqtt.password_env:
        secret = os.environ.get(mqtt.password_env)
        if not secret:
            state = "is not set" if secret is None else "is empty"
            problems.append(f"mqtt.password_env: environment variable {mqtt.password_env} {state}")
            return None
        return secret
    credential = Path(credentials) / CREDENTIAL_MQTT_PASSWORD if credentials else None
    if credential is not None and credential.is_file():
        return _read_secret("mqtt.username", credential, problems)
    problems.append(
        "mqtt.username: needs a password: set mqtt.password_file or mqtt.password_env, "
        f"or give the service the systemd credential {CREDENTIAL_MQTT_PASSWORD} "
        f"(LoadCredential={CREDENTIAL_MQTT_PASSWORD}:/path/to/file)"
    )
    return None


def _read_secret(key: str, path: Path, problems: list[str]) -> str | None:
    try:
        secret = read_small_file(path, SECRET_FILE_MAX).decode("utf-8")
    except OSError as exc:
        problems.append(f"{key}: cannot read {_show_path(path)}: {exc.strerror or type(exc).__name__}")
        return None
    except ValueError as exc:  # not a regular file, too big (UnicodeDecodeError is below)
        if isinstance(exc, UnicodeDecodeError):
            problems.append(f"{key}: {_show_path(path)} is not UTF-8 text")
        else:
            problems.append(f"{key}: cannot read {_show_path(path)}: {exc}")
        return None
    secret = secret.rstrip("\r\n")
    if not secret:
        problems.append(f"{key}: {_show_path(path)} is empty")
        return None
    if "\x00" in secret or "\n" in secret:
        problems.append(f"{key}: {_show_path(path)} holds more than one line or a NUL byte")
        return None
    return secret


# --- resolved defaults ----------------------------------------------------------------


def _hostname_id() -> str:
    """The short host name with anything outside [A-Za-z0-9_-] replaced by '_'."""
    short = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", short)[:64] or "edgepose"


def _resolve_state_path(key: str, path: Path, problems: list[str]) -> Path:
    """Relative paths live in systemd's StateDirectory when there is one."""
    if path.is_absolute():
        return path
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    try:
        base = Path(state) if state else Path.cwd()
    except OSError as exc:  # the working directory was removed
        problems.append(f"{key}: relative, but the working directory is gone ({exc.strerror})")
        return path
    full = base / path
    if len(os.fsencode(str(full))) >= PATH_MAX:
        problems.append(f"{key}: {_show_path(full)} is over {PATH_MAX - 1} bytes once made absolute")
    return full


# --- message helpers ------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        return "an array"
    elif isinstance(value, dict):
        return "a table"
    elif isinstance(value, (datetime.date, datetime.time)):
        kind = "date-time"
    else:
        kind = type(value).__name__
    return f"{kind} {_show(value)}"


def _list(choices: tuple[Any, ...]) -> str:
    return ", ".join(_show(c) for c in choices)
