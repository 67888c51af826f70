"""The schema: one frozen dataclass per config table. Field names are the TOML keys,
defaults are the defaults, and each field's metadata carries its bounds (a `Rule`).
The model families' own keys join [model] and [decode] from the estimators'
registry (families.py), so nothing here names a family."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..constants import DEFAULT_MIN_PART_SCORE, DEFAULT_TOPIC_PREFIX, NODE_ID_PATTERN, NUM_PARTS
from ..estimators import DEFAULT_MODEL, MODELS
from ..runtime import ACCELERATORS
from ..text import show
from .families import with_family_keys
from .paths import parse_dir
from .rules import DERIVED, key

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
TOPIC_MAX = 1024  # a topic prefix; MQTT allows 65535 bytes for the whole topic
USERNAME_MAX = 1024

_TOPIC_LEVEL = r"[^+#/\x00]+"


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
            raise ValueError(f"point {i}: expected [x, y] (two numbers), got {show(point)}")
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


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Who this camera node is in topics and Home Assistant ids."""

    id: str = key(  # "" -> the host name, sanitised
        "",
        pattern=f"({NODE_ID_PATTERN})?",
        pattern_help="must be 1-64 letters, digits, '_' or '-'",
    )
    #: What the node remembers across restarts (who was present, what Home Assistant was
    #: told), a small JSON file; relative -> the state directory ($STATE_DIRECTORY under systemd).
    state_file: Path = key(Path("edgepose-state.json"), toml=str, nonempty=True, parse=parse_dir)
    #: A web page for this node (Home Assistant's "Visit" link on the device); "" = none.
    configuration_url: str = key(
        "",
        pattern=r"(https?://\S+)?",
        pattern_help='must be "" or an http:// or https:// URL',
    )


@dataclass(frozen=True, slots=True)
class _ModelKeys:
    """The [model] keys every model takes; ModelConfig adds its families' own after `path`."""

    name: str = key(DEFAULT_MODEL, choices=tuple(MODELS))
    path: str = key("", path=True)  # a .tflite file of that model's family instead of the bundled build
    #: true: the int8 build; false: the float build; None ("auto"): the one that is fast
    #: on the TF Lite runtime found (runtime/defaults.py; docs/benchmarks.md).
    quantized: bool | None = key(None, toml=bool, auto=True)
    #: Where the model runs; each value is served by a runtime (edgepose.runtime.ACCELERATORS).
    accelerator: str = key("cpu", choices=tuple(ACCELERATORS))
    edgetpu_device: str = key(  # "" = first Edge TPU found
        "",
        pattern=r"((usb|pci)(:\d+)?)?",
        pattern_help='must be "", "usb", "usb:N", "pci" or "pci:N"',
    )
    threads: int = key(0, ge=0, le=MAX_THREADS)  # 0 = auto: cores - 1 (runtime/defaults.py)


@dataclass(frozen=True, slots=True)
class _DecodeKeys:
    """The [decode] keys every model takes; DecodeConfig adds its families' own after
    `min_part_score`."""

    #: None: the model's default (ModelSpec.defaults); load_config resolves it, so a
    #: loaded Config always holds a number.
    max_poses: int | None = key(None, toml=int, ge=1, le=MAX_POSES_LIMIT)
    #: None: the model's default (ModelSpec.defaults, as TF.js); resolved by load_config.
    min_pose_score: float | None = key(None, toml=float, ge=0, le=1)
    min_part_score: float = key(DEFAULT_MIN_PART_SCORE, ge=0, le=1)
    cleanup: Literal["none", "seed", "seed-single"] = "none"
    min_keypoints: int = key(0, ge=0, le=NUM_PARTS)  # keypoints >= min_part_score a pose needs


ModelConfig = with_family_keys(_ModelKeys, "ModelConfig", "model", after="path", module=__name__,
                               doc="Which model runs where. `name` picks the model; the other keys refine it.")
DecodeConfig = with_family_keys(_DecodeKeys, "DecodeConfig", "decode", after="min_part_score", module=__name__,
                                doc="How poses are decoded and filtered.")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    #: The Pi camera; "demo" (the bundled photos) only when asked for by name.
    uri: str = key("picamera2", nonempty=True)
    max_fps: float = key(10.0, off=0.0, ge=FPS_MIN, le=FPS_MAX)  # 0 = no cap
    loop: bool = False  # restart files and folders at their end; false: stop there (the demo always loops)
    width: int = key(640, ge=1, le=FRAME_SIDE_MAX)  # camera capture size
    height: int = key(480, ge=1, le=FRAME_SIDE_MAX)
    reopen_delay_s: float = key(1.0, ge=0.01, le=DURATION_MAX_S)  # first back-off after a failure
    reopen_delay_max_s: float = key(30.0, ge=0.01, le=DURATION_MAX_S)  # back-off doubles up to this


@dataclass(frozen=True, slots=True)
class TlsConfig:
    enabled: bool = False
    ca_file: str = key("", path=True)  # "" = the system CA store
    cert_file: str = key("", path=True)  # client certificate, for brokers that require one
    key_file: str = key("", path=True)
    insecure: bool = False  # skip the hostname check; with no ca_file, the certificate check too


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = True
    host: str = key("localhost", nonempty=True)
    port: int = key(1883, ge=1, le=PORT_MAX)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str = key(  # "" -> "edgepose-<node id>"
        "",
        max_len=CLIENT_ID_MAX,
        pattern=r"[A-Za-z0-9_-]*",
        pattern_help="may contain only letters, digits, '_' and '-' (what every MQTT broker accepts)",
    )
    #: A half-open link is noticed after 1.5-2x this (broker, client): keep it well under 60.
    keepalive_s: int = key(15, ge=1, le=KEEPALIVE_MAX_S)
    username: str = key("", max_len=USERNAME_MAX)
    password_file: str = key("", path=True)  # relative -> $CREDENTIALS_DIRECTORY when set
    password_env: str = key(
        "",
        pattern=r"([A-Za-z_][A-Za-z0-9_]*)?",
        pattern_help="must be an environment variable name",
    )
    topic_prefix: str = key(
        DEFAULT_TOPIC_PREFIX,
        max_len=TOPIC_MAX,
        pattern=f"{_TOPIC_LEVEL}(/{_TOPIC_LEVEL})*",
        pattern_help="must be a topic such as \"edgepose\" or \"site/edgepose\": "
        "not empty, no '+' or '#', no leading, trailing or doubled '/'",
    )
    poses_mode: Literal["every_frame", "on_change", "interval", "off"] = "every_frame"
    poses_interval_s: float = key(1.0, ge=0.01, le=DURATION_MAX_S)
    poses_expiry_s: int = key(5, ge=0, le=MESSAGE_EXPIRY_MAX_S)  # MQTT 5 message expiry; 0 = never expires
    stats_interval_s: float = key(60.0, ge=0.1, le=DURATION_MAX_S)
    publish_snapshot: bool = False
    max_queued: int = key(100, ge=1, le=QUEUE_MAX)  # QoS 0 poses waiting for the socket
    home_assistant: bool = True  # announce the node to Home Assistant (MQTT discovery)
    discovery_prefix: str = key(
        "homeassistant",
        max_len=TOPIC_MAX,
        pattern=f"{_TOPIC_LEVEL}(/{_TOPIC_LEVEL})*",
        pattern_help="must be a topic: not empty, no '+' or '#', "
        "no leading, trailing or doubled '/'",
    )
    tls: TlsConfig = field(default_factory=TlsConfig)
    #: Resolved from password_file, password_env or the systemd credential; never shown.
    password: str | None = field(default=None, repr=False, metadata={DERIVED: True})


@dataclass(frozen=True, slots=True)
class SnapshotConfig:
    enabled: bool = True
    dir: Path = key(Path("snapshots"), toml=str, nonempty=True, parse=parse_dir)
    interval_s: float = key(60.0, ge=0, le=DURATION_MAX_S)  # 0 = no periodic snapshots
    on_count_change: bool = True
    #: A person count can flicker between frames: at most one snapshot per this many seconds
    #: for count changes and intervals (commands are never held back).
    cooldown_s: float = key(5.0, ge=0, le=DURATION_MAX_S)
    keep: int = key(100, ge=1, le=SNAPSHOT_KEEP_MAX)
    max_bytes: int = key(50_000_000, ge=0, le=BYTES_MAX)  # 0 = no size cap
    jpeg_quality: int = key(85, ge=1, le=JPEG_QUALITY_MAX)
    labels: bool = True
    #: What snapshots (files, fall snapshots, the MQTT image) show behind the overlay:
    #: "skeleton" a plain background, "blur" the picture blurred beyond recognition,
    #: "off" the camera picture. Not the picture by default: docs/snapshots.md says why.
    privacy: Literal["skeleton", "blur", "off"] = "skeleton"


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """Stable person ids across frames (tracking.py), always on: presence, falls and
    smoothing follow people by their ids. Figures after TF.js pose-detection's tracker."""

    #: Keypoint similarity (OKS, COCO's per-part sigmas) a pose needs to continue a track.
    min_similarity: float = key(0.2, ge=0, le=1)
    #: Keypoints scoring below this take no part in matching.
    min_part_score: float = key(0.3, ge=0, le=1)
    #: Poses sharing fewer confident keypoints with a track are matched by box overlap instead.
    min_keypoints: int = key(4, ge=1, le=NUM_PARTS)
    #: Box overlap (IoU) a pose needs to continue a track when keypoints cannot decide.
    min_iou: float = key(0.15, ge=0, le=1)
    #: Seconds a track lives on unseen; a person seen again within it keeps their id.
    max_age_s: float = key(1.0, gt=0, le=DURATION_MAX_S)
    #: Most tracks alive at once; beyond it the longest unseen is dropped.
    max_tracks: int = key(18, ge=1, le=MAX_TRACKS_LIMIT)


@dataclass(frozen=True, slots=True)
class SmoothingConfig:
    """One Euro filter on published keypoints (smoothing.py), in fractions of the frame.

    On by default: these settings about halve the jitter of a still person and keep a
    walking one a few pixels behind (the figures: docs/events.md, "Smoother")."""

    enabled: bool = True
    #: Cut-off frequency (Hz) when still: lower removes more jitter and lags more.
    min_cutoff_hz: float = key(0.5, gt=0, le=FILTER_HZ_MAX)
    #: How fast the cut-off rises with speed (per frame-fraction per second): higher lags less when moving.
    beta: float = key(10.0, ge=0, le=FILTER_BETA_MAX)
    #: Cut-off frequency (Hz) for the speed estimate itself.
    d_cutoff_hz: float = key(1.0, gt=0, le=FILTER_HZ_MAX)


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Debounced presence (events.py): counts follow people, not single frames."""

    #: Seconds a person must be seen before they count as entered.
    enter_s: float = key(0.5, ge=0, le=DURATION_MAX_S)
    #: Seconds a person may go unseen before they count as left.
    hold_s: float = key(3.0, ge=0, le=DURATION_MAX_S)


@dataclass(frozen=True, slots=True)
class FallConfig:
    """Fall detection from the tracked skeleton (falls.py; defaults chosen on the real
    falls of docs/falls.md)."""

    enabled: bool = True
    #: Torso (hip mid-point to shoulder mid-point) at most this far from vertical: upright.
    upright_deg: float = key(30.0, ge=0, le=90)
    #: Torso at least this far from vertical: a lying shape.
    down_deg: float = key(60.0, ge=0, le=90)
    #: The descent, from the last upright frame to the first low one, takes at most this long.
    window_s: float = key(2.0, gt=0, le=DURATION_MAX_S)
    #: Low: the head has come down by at least this many standing heights (half of it
    #: with a lying shape).
    min_drop: float = key(0.6, ge=0, le=FALL_DROP_MAX)
    #: Seconds the person must stay low after the descent before a fall is raised.
    confirm_s: float = key(2.0, ge=0, le=DURATION_MAX_S)
    #: Seconds someone seen upright before must stay low, with no descent seen, before a
    #: fall is raised anyway (cause "down").
    down_s: float = key(60.0, gt=0, le=DURATION_MAX_S)
    #: Seconds the person must be upright again before the fall clears.
    clear_s: float = key(2.0, ge=0, le=DURATION_MAX_S)
    #: Keypoints scoring below this are not used for angles and heights.
    min_part_score: float = key(0.3, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """A named polygon in fractions of the frame (zones.py)."""

    name: str = key(
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
    points: tuple[tuple[float, float], ...] = key((), toml=list, parse=_parse_points)


@dataclass(frozen=True, slots=True)
class MotionConfig:
    """Motion gating (motion.py): a frame that moved always runs; with nothing moving
    the model runs every idle_interval_s, or every still_interval_s while someone was
    seen in the last hold_s."""

    enabled: bool = True
    pixel_threshold: int = key(12, ge=0, le=255)  # grey levels a cell must change by
    min_changed: float = key(0.005, gt=0, le=1)  # fraction of cells that must change
    background_tau_s: float = key(1.0, gt=0, le=3600)  # how fast the background follows the scene
    idle_interval_s: float = key(2.0, gt=0, le=3600)  # one inference every this with nothing moving
    #: The gate follows people for this long after someone was seen (longer than
    #: presence.hold_s, so a person who left is noticed on time).
    hold_s: float = key(5.0, ge=0, le=3600)
    #: While following people and nothing moves: one inference every this (at most half
    #: of tracking.max_age_s, so a still person keeps their track id).
    still_interval_s: float = key(0.5, gt=0, le=3600)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """The disk outbox for events and telemetry that must survive outages and restarts."""

    enabled: bool = True
    #: SQLite file; relative -> the state directory ($STATE_DIRECTORY under systemd).
    path: Path = key(Path("outbox.sqlite3"), toml=str, nonempty=True, parse=parse_dir)
    #: Bounds; when either is reached the oldest telemetry goes first, events last.
    max_messages: int = key(10_000, ge=OUTBOX_MESSAGES_MIN, le=OUTBOX_MESSAGES_MAX)
    max_bytes: int = key(16_000_000, ge=OUTBOX_BYTES_MIN, le=OUTBOX_BYTES_MAX)


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
