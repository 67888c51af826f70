"""Check edgepose's Home Assistant discovery payloads with Home Assistant's own code.

Home Assistant 2025.x needs Python 3.13, edgepose runs on 3.11+, so this is a
tool with its own virtualenv rather than a test::

    python3.13 -m venv .venv-ha
    .venv-ha/bin/pip install "homeassistant>=2025.4" paho-mqtt numpy
    PYTHONPATH=. .venv-ha/bin/python tools/check_ha_discovery.py

For several node set-ups it builds the device discovery payload with
`edgepose.mqtt.discovery.discovery_messages` and does what Home Assistant's MQTT
discovery does with it (homeassistant/components/mqtt/discovery.py): the
device schema, then per component: a component with only its platform must be
a removal, any other gets the device, origin and shared options merged in and
must pass its platform's DISCOVERY_SCHEMA. Then it renders every value
template against real edgepose messages (state, events, stats, person count)
with Home Assistant's template engine, and checks that the event entities
accept their own event types, for their own area (the whole frame's presence
entity only zone-less events, each zone's only its zone's), and render nothing
for the others (which Home Assistant ignores), and that timestamp sensors
render what Home Assistant parses as an aware datetime. Exit 0 when all pass,
1 otherwise; prints one line per check.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import voluptuous as vol  # noqa: E402  (Home Assistant's dependency)
from homeassistant.components.mqtt import discovery as ha_discovery  # noqa: E402
from homeassistant.components.mqtt.schemas import DEVICE_DISCOVERY_SCHEMA, SHARED_OPTIONS  # noqa: E402

from edgepose import messages  # noqa: E402
from edgepose.mqtt import discovery  # noqa: E402
from edgepose.events import Event, FallState, SceneState  # noqa: E402

SETUPS = {
    "defaults": dict(publish_snapshot=False),
    "everything": dict(
        publish_snapshot=True, presence=True, falls=True, zones=("bed", "door-1"), stats_interval_s=60.0,
        device_info={"hw_version": "Raspberry Pi 5 Model B Rev 1.0", "serial_number": "f00dcafe",
                     "configuration_url": "http://hall.lan:9090/"},
    ),
    "zone renamed, snapshot off": dict(
        publish_snapshot=False, presence=True, falls=False, zones=("sofa",), stats_interval_s=30.0,
        previous="everything",
    ),
}

failures = 0


def check(ok: bool, what: str) -> None:
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += not ok


def payload_for(setup: str, built: dict[str, bytes]) -> bytes:
    kwargs = dict(SETUPS[setup])
    previous = kwargs.pop("previous", None)
    (msg,) = discovery.discovery_messages(
        "hall-1", "edgepose", "homeassistant",
        previous=built.get(previous) if previous else None, **kwargs,
    )
    check(msg.retain and msg.topic == "homeassistant/device/edgepose_hall-1/config", f"{setup}: retained on the device topic")
    return msg.payload


def validate(setup: str, raw: bytes) -> dict:
    payload = ha_discovery.MQTTDiscoveryPayload(json.loads(raw))
    ha_discovery._replace_all_abbreviations(payload)
    try:
        DEVICE_DISCOVERY_SCHEMA(payload)
        check(True, f"{setup}: device discovery schema")
    except vol.Invalid as exc:
        check(False, f"{setup}: device discovery schema: {exc}")
        return {}
    configs = {}
    for key, comp in copy.deepcopy(payload["components"]).items():
        platform = comp.pop("platform")
        if not comp:
            check(True, f"{setup}: {key} ({platform}) sent for removal")
            continue
        comp["device"] = payload["device"]
        comp["origin"] = payload["origin"]
        for option in SHARED_OPTIONS:
            if option in payload and option not in comp:
                comp[option] = payload[option]
        module = importlib.import_module(f"homeassistant.components.mqtt.{platform}")
        try:
            configs[key] = module.DISCOVERY_SCHEMA(comp)
            check(True, f"{setup}: {key} ({platform}) passes {platform}.DISCOVERY_SCHEMA")
        except vol.Invalid as exc:
            check(False, f"{setup}: {key} ({platform}): {exc}")
    return configs


def sample_messages() -> dict[str, list[bytes]]:
    state = SceneState(1, (("bed", 1), ("door-1", 0)), (FallState("hall-1-x-3", 4, "bed", 1.7e9, 0.8),))
    events = [
        Event("hall-1-x-1", "person_entered", 1.7e9, 5.0, 4, None, {"person_count": 1}),
        Event("hall-1-x-2", "person_left", 1.7e9, 6.0, 4, "bed", {"person_count": 0}),
        Event("hall-1-x-3", "fall_detected", 1.7e9, 7.0, 4, "bed",
              {"confidence": 0.8, "torso_deg": 85.0, "drop": 0.9}),
        Event("hall-1-x-4", "fall_cleared", 1.7e9, 9.0, 4, "bed",
              {"reason": "acknowledged", "fall_event_id": "hall-1-x-3"}),
    ]
    stats = {k: 1 for k in messages.STATS_FIELDS} | {"accelerator": "cpu", "cpu_temp_c": 51.2,
                                                      "started_at": 1.7e9}
    return {
        "edgepose/hall-1/state": [messages.state_message(state, now=1.7e9).payload],
        "edgepose/hall-1/events": [messages.event_message(e, node_id="hall-1").payload for e in events],
        "edgepose/hall-1/stats": [messages.stats_message(stats, now=1.7e9).payload],
        "edgepose/hall-1/person_count": [messages.person_count_message(2).payload],
    }


def area_of(key: str) -> object:
    """The area an event entity is for: None (the whole frame), a zone name, or ANY."""
    if key == "presence_event":
        return None
    if key.startswith("zone_") and key.endswith("_presence_event"):
        return key[len("zone_"):-len("_presence_event")]
    return ANY


ANY = object()


async def render_templates(hass, configs: dict) -> None:
    from homeassistant.helpers.template import Template
    from homeassistant.util import dt as dt_util

    samples = sample_messages()
    for key, conf in configs.items():
        tpl = conf.get("value_template")
        topic = conf.get("state_topic")
        if tpl is None or topic is None:
            continue
        for raw in samples.get(topic, []):
            template = Template(tpl.template, hass)
            try:
                out = template.async_render_with_possible_json_value(raw.decode())
            except Exception as exc:  # noqa: BLE001 - report any failure
                check(False, f"{key}: template failed on {raw[:60]!r}: {exc}")
                continue
            if conf.get("event_types") is not None:
                event = json.loads(raw)
                kind, area = event["type"], area_of(key)
                if kind in conf["event_types"] and (area is ANY or event["zone"] == area):
                    rendered = json.loads(out)
                    check(rendered.get("event_type") == kind, f"{key}: renders {kind} with event_type")
                else:
                    check(out.strip() == "", f"{key}: renders nothing for {kind} in {event['zone']} (ignored by HA)")
            elif conf.get("device_class") == "timestamp":
                when = dt_util.parse_datetime(str(out))
                check(when is not None and when.tzinfo is not None, f"{key}: renders an aware datetime {out!r}")
            else:
                check(out not in ("", None), f"{key}: renders {out!r}")
        atpl = conf.get("json_attributes_template")
        if atpl is not None:
            for raw in samples.get(conf["json_attributes_topic"], []):
                out = Template(atpl.template, hass).async_render_with_possible_json_value(raw.decode())
                check(isinstance(out, dict) or isinstance(json.loads(out), dict),
                      f"{key}: attributes render to a JSON object")


async def run() -> None:
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import frame

    # Home Assistant's config validation wants a running instance (templates are bound to it).
    hass = HomeAssistant(str(Path.cwd()))
    frame.async_setup(hass)
    built: dict[str, bytes] = {}
    for setup in SETUPS:
        built[setup] = payload_for(setup, built)
        configs = validate(setup, built[setup])
        if setup == "everything":
            await render_templates(hass, configs)
    await hass.async_stop(force=True)
    return built


def main() -> int:
    built = asyncio.run(run())
    renamed = json.loads(built["zone renamed, snapshot off"])["components"]
    check(renamed.get("zone_bed_occupied") == {"platform": "binary_sensor"}, "a zone no longer configured is removed")
    check(renamed.get("snapshot") == {"platform": "image"}, "the image entity is removed with snapshots off")
    check(renamed.get("zone_bed_presence_event") == {"platform": "event"}, "a removed zone's event entity goes too")
    check(renamed.get("uptime_s") == {"platform": "sensor"}, "the retired uptime duration sensor is removed")
    removal = discovery.discovery_removal_message("hall-1", "homeassistant")
    check(removal.payload == b"" and removal.retain, "uninstall: empty retained payload on the device topic")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
