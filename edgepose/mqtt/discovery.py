"""Home Assistant MQTT discovery: which entities the node announces, and keeping them in step.

`discovery_messages` builds the one retained device-discovery payload (pure);
`for_config` builds it for a running node (what its config turns on, the Pi's
model and serial number, minus what it announced before) and `Announcer` keeps
it on the broker: sent on every connect and whenever Home Assistant says it is
online, with components the broker still holds from an older config removed.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import SUPPORT_URL, __version__
from ..constants import (
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    TOPIC_AVAILABILITY,
    TOPIC_CMD_ACK_FALL,
    TOPIC_CMD_SNAPSHOT,
    TOPIC_EVENTS,
    TOPIC_PERSON_COUNT,
    TOPIC_SNAPSHOT,
    TOPIC_STATE,
    TOPIC_STATS,
)
from ..core import Message
from ..events import EVENT_KINDS, EventEntity, event_types
from ..messages import QOS_STATE, to_json
from .topics import is_node_id, node_topic

if TYPE_CHECKING:
    from ..config import Config
    from ..statefile import StateFile

log = logging.getLogger(__name__)


def _event_entities(feature: str) -> list[EventEntity]:
    """The event entities of one feature (``presence``, ``falls``), in events.EVENT_KINDS order."""
    return list(dict.fromkeys(k.entity for k in EVENT_KINDS.values() if k.entity.feature == feature))


#: Components that come and go with the config: when not configured they are sent
#: with only their platform, which is how Home Assistant removes one component of a
#: device (leaving it out keeps the old entity alive).
OPTIONAL_COMPONENTS: dict[str, str] = {
    "snapshot": "image",
    **{e.key: "event" for e in _event_entities("presence")},
    "fall": "binary_sensor",
    **{e.key: "event" for e in _event_entities("falls")},
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
#: Where a Raspberry Pi names its model and serial number (absent elsewhere).
DEVICE_TREE = Path("/proc/device-tree")

_ZONE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def ha_status_topic(discovery_prefix: str) -> str:
    """Where Home Assistant announces ``online`` when it starts (re-send discovery then)."""
    return f"{discovery_prefix}/status"


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


# --- the payload ----------------------------------------------------------------------------


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
    ``snapshots.privacy``). ``event`` entities come from events.EVENT_KINDS, each
    with its feature. With `presence`: an ``event`` entity for the whole frame's
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
    ids = _Ids(prefix, node_id, discovery_device_id(node_id))
    components = {**_node_components(ids), **_stats_components(ids, stats_interval_s)}
    if publish_snapshot:
        components["snapshot"] = _component(ids, "snapshot", "image", SNAPSHOT_NAMES[snapshot_privacy],
                                            image_topic=ids.topic(TOPIC_SNAPSHOT), content_type="image/jpeg")
    if presence:
        components.update(_presence_components(ids, zones))
    if falls:
        components.update(_fall_components(ids))
    for key, platform in {**OPTIONAL_COMPONENTS, **RETIRED_COMPONENTS}.items():
        components.setdefault(key, {"platform": platform})
    payload = {
        "device": _device(node_id, ids.device_id, device_info),
        "origin": {"name": "edgepose", "sw_version": __version__,
                   **({"support_url": SUPPORT_URL} if SUPPORT_URL else {})},
        "availability_topic": ids.topic(TOPIC_AVAILABILITY),
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "components": components,
    }
    raw = to_json(payload)
    if previous:
        raw = with_removals(raw, previous) or raw
    return [Message(discovery_topic(node_id, discovery_prefix), raw, qos=QOS_STATE, retain=True)]


@dataclass(frozen=True)
class _Ids:
    """The node's topics and the unique ids of its components."""

    prefix: str
    node_id: str
    device_id: str

    def topic(self, suffix: str) -> str:
        return node_topic(self.prefix, self.node_id, suffix)

    def uid(self, key: str) -> str:
        return f"{self.device_id}_{key}"


def _component(ids: _Ids, key: str, platform: str, name: str, **fields: Any) -> dict[str, Any]:
    """One entity: its platform, name and stable unique id, then its own fields."""
    return {"platform": platform, "name": name, "unique_id": ids.uid(key), **fields}


def _node_components(ids: _Ids) -> dict[str, dict[str, Any]]:
    """What every node has: its person count, whether someone is there, a snapshot button."""
    return {
        "person_count": _component(
            ids, "person_count", "sensor", "Person count", state_topic=ids.topic(TOPIC_PERSON_COUNT),
            state_class="measurement", unit_of_measurement=PEOPLE_UNIT, icon="mdi:account-multiple"),
        "person_detected": _component(
            ids, "person_detected", "binary_sensor", "Person detected", device_class="occupancy",
            state_topic=ids.topic(TOPIC_PERSON_COUNT),
            value_template="{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}"),
        "take_snapshot": _component(
            ids, "take_snapshot", "button", "Take snapshot", command_topic=ids.topic(TOPIC_CMD_SNAPSHOT),
            payload_press="snapshot", icon="mdi:camera"),
    }


def _stats_components(ids: _Ids, stats_interval_s: float | None) -> dict[str, dict[str, Any]]:
    """Diagnostic sensors from the retained stats (`STATS_SENSORS`)."""
    components: dict[str, dict[str, Any]] = {}
    for key, (ckey, name, unit, device_class, icon) in STATS_SENSORS.items():
        sensor = _component(ids, ckey, "sensor", name, state_topic=ids.topic(TOPIC_STATS),
                            value_template=f"{{{{ value_json.{key} }}}}", entity_category="diagnostic")
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
    return components


def _presence_components(ids: _Ids, zones: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The whole frame's presence events; per occupancy zone its count, occupancy and events."""
    components = _event_components(ids, "presence")
    for zone in zones:
        if not _ZONE_NAME.fullmatch(zone):
            raise ValueError(f"zone name {zone!r} must match [A-Za-z0-9_-]+ for Home Assistant")
        label = zone_label(zone)
        components[f"zone_{zone}_occupied"] = _component(
            ids, f"zone_{zone}_occupied", "binary_sensor", f"{label} occupied", device_class="occupancy",
            state_topic=ids.topic(TOPIC_STATE),
            value_template=f"{{{{ 'ON' if value_json.zones['{zone}'].occupied else 'OFF' }}}}")
        components[f"zone_{zone}_count"] = _component(
            ids, f"zone_{zone}_count", "sensor", f"{label} person count", state_topic=ids.topic(TOPIC_STATE),
            value_template=f"{{{{ value_json.zones['{zone}'].person_count }}}}", state_class="measurement",
            unit_of_measurement=PEOPLE_UNIT, icon="mdi:account-multiple")
        components.update(_event_components(ids, "presence", zone))
    return components


def _fall_components(ids: _Ids) -> dict[str, dict[str, Any]]:
    """A "fall" binary sensor (on while someone is down), its events, an acknowledge button."""
    return {
        "fall": _component(
            ids, "fall", "binary_sensor", "Fall", device_class="safety", state_topic=ids.topic(TOPIC_STATE),
            value_template="{{ 'ON' if value_json.fall else 'OFF' }}", json_attributes_topic=ids.topic(TOPIC_STATE),
            json_attributes_template="{{ {'falls': value_json.falls} | tojson }}"),
        **_event_components(ids, "falls"),
        "ack_fall": _component(
            ids, "ack_fall", "button", "Acknowledge fall", command_topic=ids.topic(TOPIC_CMD_ACK_FALL),
            payload_press="ack", icon="mdi:check-circle-outline"),
    }


def _device(node_id: str, device_id: str, device_info: Mapping[str, str] | None) -> dict[str, Any]:
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
    return device


def _event_components(ids: _Ids, feature: str, zone: str | None = None) -> dict[str, dict[str, Any]]:
    """The ``event`` entities of one feature (events.EVENT_KINDS): for the node, or the
    zoned ones of one occupancy `zone`."""
    components = {}
    for entity in _event_entities(feature):
        if zone is None:
            components[entity.key] = _event_component(ids, entity.key, entity.name, entity,
                                                      None if entity.zoned else _ANY_ZONE)
        elif entity.zoned:
            key = f"zone_{zone}_{entity.key}"
            components[key] = _event_component(ids, key, f"{zone_label(zone)} {entity.name.lower()}", entity, zone)
    return components


_ANY_ZONE = object()


def _event_component(ids: _Ids, key: str, name: str, entity: EventEntity, zone: Any) -> dict[str, Any]:
    """An MQTT ``event`` entity on ``events`` that takes only its event types, and only for
    one area when `zone` is given (None: the whole frame; _ANY_ZONE: all): the template
    renders nothing for other events, and Home Assistant ignores an empty rendered payload."""
    types = event_types(entity)
    listed = ", ".join(f"'{t}'" for t in types)
    where = ""
    if zone is None:
        where = " and value_json.zone is none"
    elif zone is not _ANY_ZONE:
        where = f" and value_json.zone == '{zone}'"
    return _component(
        ids, key, "event", name, state_topic=ids.topic(TOPIC_EVENTS), event_types=list(types),
        value_template=(f"{{% if value_json.type in [{listed}]{where} %}}"
                        "{{ dict(value_json, event_type=value_json.type) | tojson }}"
                        "{% endif %}"),
        icon=entity.icon)


# --- removals ----------------------------------------------------------------------------------


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
    return to_json(obj)


def discovery_removal_message(node_id: str, discovery_prefix: str) -> Message:
    """An empty retained payload on the device's config topic: Home Assistant removes the
    device and all its entities, and the broker forgets the retained config (uninstall)."""
    return Message(discovery_topic(node_id, discovery_prefix), b"", qos=QOS_STATE, retain=True)


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


# --- a running node ------------------------------------------------------------------------------


def device_info(config: Config, device_tree: Path = DEVICE_TREE) -> dict[str, str]:
    """What Home Assistant shows about the hardware: the Pi's model and serial number
    where the device tree has them, and the node's configuration_url when set."""
    info: dict[str, str] = {}
    for key, name in (("hw_version", "model"), ("serial_number", "serial-number")):
        try:
            text = (device_tree / name).read_bytes()[:200].decode("utf-8", "replace").strip("\0 \n")
        except OSError:
            continue
        if text:
            info[key] = text
    if config.node.configuration_url:
        info["configuration_url"] = config.node.configuration_url
    return info


def remember(memory: StateFile, discovery: list[Message]) -> None:
    """Keep what was announced in the state file: the next start removes what it no longer has."""
    memory.put("discovery", [{"topic": m.topic, "payload": json.loads(m.payload)} for m in discovery])


def _announced_before(memory: StateFile, topic: str) -> bytes | None:
    """The discovery payload this node announced on `topic` last time, from the state file."""
    for item in memory.get("discovery") or ():
        if isinstance(item, dict) and item.get("topic") == topic and isinstance(item.get("payload"), dict):
            return json.dumps(item["payload"]).encode("utf-8")
    return None


def for_config(config: Config, memory: StateFile) -> list[Message]:
    """The discovery of what this node runs (presence always, falls and zones as
    configured), minus what it announced before and no longer has; remembered."""
    discovery = discovery_messages(
        config.node.id, config.mqtt.topic_prefix, config.mqtt.discovery_prefix,
        config.mqtt.publish_snapshot,
        snapshot_privacy=config.snapshots.privacy,
        presence=True,
        falls=config.falls.enabled,
        zones=[z.name for z in config.zones if z.kind == "occupancy"],
        stats_interval_s=config.mqtt.stats_interval_s,
        device_info=device_info(config),
        previous=_announced_before(memory, discovery_topic(config.node.id, config.mqtt.discovery_prefix)),
    )
    remember(memory, discovery)
    return discovery


class Announcer:
    """The node's discovery on the broker, for the MQTT client (paho's thread).

    `send_all` on every connect, and again when Home Assistant announces itself
    ``online``. The client also subscribes to the node's own discovery topics:
    the retained config the broker held before we connected (it arrives before
    our own) may configure components ours does not; ours is then sent again
    with them removed, and `on_change` told (the daemon remembers it).
    """

    def __init__(self, discovery: list[Message], status_topic: str, send: Callable[[Message], None],
                 on_change: Callable[[list[Message]], None] | None = None) -> None:
        self._discovery = list(discovery)
        self.status_topic = status_topic
        self.topics = {m.topic for m in discovery}
        self._send = send
        self._on_change = on_change

    def subscriptions(self) -> list[str]:
        return [self.status_topic, *sorted(self.topics)]

    def send_all(self) -> None:
        for m in self._discovery:
            self._send(m)

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """A message on a discovery or status topic (True), else False."""
        if topic in self.topics:
            if retain:  # what the broker held when we subscribed: the last announcement
                self._on_retained(topic, bytes(payload))
            return True
        if topic == self.status_topic:
            if payload.strip() == PAYLOAD_ONLINE.encode("ascii"):
                log.info("MQTT: Home Assistant is online; re-sending discovery")
                self.send_all()
            return True
        return False

    def _on_retained(self, topic: str, retained: bytes) -> None:
        """The broker's retained discovery config, as it was before we connected: what
        it configures and ours does not is removed (sent once with only its platform)."""
        for i, m in enumerate(self._discovery):
            if m.topic != topic:
                continue
            merged = with_removals(m.payload, retained)
            if merged is None:
                return
            gone = sorted(set(json.loads(merged)["components"]) - set(json.loads(m.payload)["components"]))
            log.info("Home Assistant: removing %d entit%s no longer configured (%s)",
                     len(gone), "y" if len(gone) == 1 else "ies", ", ".join(gone))
            self._discovery[i] = Message(m.topic, merged, m.qos, m.retain)
            self._send(self._discovery[i])
            if self._on_change is not None:
                self._on_change(list(self._discovery))
            return
