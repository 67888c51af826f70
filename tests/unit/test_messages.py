"""messages.py: payload shapes, rounding, schemas, the poses policy, commands, HA discovery."""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from edgepose import messages
from edgepose.mqtt import commands
from edgepose.sinks import PosesPolicy
from edgepose.mqtt import discovery as ha_discovery
from edgepose.constants import NUM_PARTS, PART_NAMES
from edgepose.core import Frame, FrameResult, Poses

W, H = 640, 480


def make_detection(xy=None, scores=None, pose_scores=None, *, seq=3, t=1_714_564_800.1234) -> FrameResult:
    """Poses from (N, 17, 2) frame pixels; defaults to one person, all parts at the centre."""
    if xy is None:
        xy = np.full((1, NUM_PARTS, 2), [W / 2, H / 2], np.float32)
    xy = np.asarray(xy, np.float32)
    n = xy.shape[0]
    scores = np.full((n, NUM_PARTS), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    pose_scores = scores.mean(axis=1) if pose_scores is None else np.asarray(pose_scores, np.float32)
    frame = Frame(np.zeros((H, W, 3), np.uint8), seq=seq, captured_at=t)
    return FrameResult(frame, Poses(xy, scores, pose_scores), inference_ms=12.345, model="mnv1")


def validate(kind: str, instance) -> None:
    jsonschema.Draft202012Validator(messages.load_schema(kind)).validate(instance)


# --- poses ---------------------------------------------------------------------------------


def test_poses_payload_is_compact_versioned_json_keyed_by_part_name():
    msg = messages.poses_message(make_detection(), node_id="hall", expiry_s=5)
    assert (msg.topic, msg.qos, msg.retain, msg.expiry_s) == ("poses", 0, False, 5)
    assert b" " not in msg.payload
    p = json.loads(msg.payload)
    assert p["v"] == 2 and p["node"] == "hall" and p["model"] == "mnv1"
    assert (p["frame"], p["width"], p["height"], p["person_count"]) == (3, W, H, 1)
    assert list(p["poses"][0]["keypoints"]) == list(PART_NAMES)
    assert p["poses"][0]["keypoints"]["nose"] == {"x": 0.5, "y": 0.5, "score": 0.9}
    validate("poses", p)


def test_poses_v2_carry_track_id_and_box():
    xy = np.zeros((2, NUM_PARTS, 2), np.float32)
    xy[0, :, 0], xy[0, :, 1] = np.linspace(64, 128, NUM_PARTS), np.linspace(48, 240, NUM_PARTS)
    xy[1] = 320.0
    untracked = json.loads(messages.poses_message(make_detection(xy), node_id="n").payload)
    assert [pose["id"] for pose in untracked["poses"]] == [None, None]
    # no model box: the extent of the keypoints found
    assert untracked["poses"][0]["box"] == [0.1, 0.1, 0.2, 0.5]
    validate("poses", untracked)
    result = make_detection(xy)
    tracked = result.poses.replace(track_ids=np.array([7, 9]), boxes=np.float32([[0, 0, 64, 48], [1, 2, 700, 500]]))
    p = json.loads(messages.poses_message(FrameResult(result.frame, tracked, 1.0, "m"), node_id="n").payload)
    assert [pose["id"] for pose in p["poses"]] == [7, 9]
    assert p["poses"][0]["box"] == [0.0, 0.0, 0.1, 0.1] and p["poses"][1]["box"][2:] == [1.0, 1.0]
    validate("poses", p)


def test_every_schema_version_stays_loadable():
    assert messages.load_schema("poses", 1)["$id"].endswith(":v1")
    assert messages.load_schema("poses")["$id"].endswith(":v2")
    with pytest.raises(ValueError, match="versions 1 to 2"):
        messages.load_schema("poses", 3)


def test_poses_timestamp_is_utc_with_milliseconds_and_z():
    p = json.loads(messages.poses_message(make_detection(t=1_714_564_800.1234), node_id="n").payload)
    assert p["ts"] == "2024-05-01T12:00:00.123Z"


def test_poses_normalise_by_frame_size_and_round():
    xy = np.zeros((1, NUM_PARTS, 2), np.float32)
    xy[0, 0] = [123.456789, 400.0]
    scores = np.full((1, NUM_PARTS), 0.123456, np.float32)
    p = json.loads(messages.poses_message(make_detection(xy, scores), node_id="n").payload)
    nose = p["poses"][0]["keypoints"]["nose"]
    assert nose == {"x": round(123.456789 / W, 4), "y": round(400 / H, 4), "score": 0.123}
    assert p["inference_ms"] == 12.3
    assert p["poses"][0]["score"] == 0.123


def test_poses_outside_the_frame_are_clamped_to_unit_range():
    xy = np.zeros((1, NUM_PARTS, 2), np.float32)
    xy[0, 0] = [-5.0, H + 20.0]
    p = json.loads(messages.poses_message(make_detection(xy), node_id="n").payload)
    assert p["poses"][0]["keypoints"]["nose"]["x"] == 0.0
    assert p["poses"][0]["keypoints"]["nose"]["y"] == 1.0
    validate("poses", p)


def test_no_people_gives_an_empty_list_and_count_zero():
    d = FrameResult(Frame(np.zeros((H, W, 3), np.uint8), 0, 0.0), Poses.empty(), 5.0, "m")
    p = json.loads(messages.poses_message(d, node_id="n").payload)
    assert p["person_count"] == 0 and p["poses"] == []
    validate("poses", p)


def test_model_is_the_results_model_label():
    p = json.loads(messages.poses_message(make_detection(), node_id="n").payload)
    assert p["model"] == "mnv1"


def test_poses_schema_rejects_a_missing_keypoint():
    p = json.loads(messages.poses_message(make_detection(), node_id="n").payload)
    del p["poses"][0]["keypoints"]["leftAnkle"]
    with pytest.raises(jsonschema.ValidationError):
        validate("poses", p)


# --- retained state ------------------------------------------------------------------------


def test_availability_payloads_match_their_schema():
    validate("availability", "online")
    validate("availability", "offline")


def test_person_count_is_plain_integer_text():
    m = messages.person_count_message(2)
    assert (m.topic, m.payload, m.qos, m.retain) == ("person_count", b"2", 1, True)
    validate("person_count", json.loads(m.payload))
    with pytest.raises(ValueError):
        messages.person_count_message(-1)


STATS = {
    "fps": 9.8765,
    "inference_ms_p50": 41.26,
    "inference_ms_p95": 55.04,
    "frames": 1200,
    "dropped_frames": 3,
    "skipped_frames": 40,
    "gated_frames": 0,
    "corrupt_frames": 0,
    "source_errors": 1,
    "source_reopens": 1,
    "mqtt_dropped": 7,
    "snapshots_dropped": 0,
    "accelerator": "edgetpu",
    "runtime": "tflite-runtime",
    "precision": "int8",
    "threads": 1,
    "model": "posenet_mnv1_075_stride16_int8_edgetpu 481x353",
    "source_state": "ok",
    "source_error": None,
    "mqtt_connected": True,
    "outbox_queued": 0,
    "outbox_dropped": 0,
    "cpu_temp_c": 51.234,
    "uptime_s": 130.7,
    "started_at": 1_714_564_669.25,
    "fall_acks_without_fall": 2,
}


def test_stats_payload_rounds_and_validates():
    m = messages.stats_message(STATS, now=1_714_564_800.0)
    assert (m.topic, m.retain) == ("stats", True)
    p = json.loads(m.payload)
    assert p["ts"] == "2024-05-01T12:00:00.000Z"
    assert (p["fps"], p["inference_ms_p50"], p["cpu_temp_c"], p["uptime_s"]) == (9.88, 41.3, 51.2, 130)
    assert p["started_at"] == "2024-05-01T11:57:49.250Z" and p["fall_acks_without_fall"] == 2
    validate("stats", p)


def test_stats_cpu_temperature_may_be_null():
    p = json.loads(messages.stats_message(dict(STATS, cpu_temp_c=None)).payload)
    assert p["cpu_temp_c"] is None and "ts" not in p
    validate("stats", p)


def test_stats_refuses_missing_and_unknown_fields():
    with pytest.raises(ValueError, match=r"missing \['fps'\]"):
        messages.stats_message({k: v for k, v in STATS.items() if k != "fps"})
    with pytest.raises(ValueError, match=r"unknown \['fsp'\]"):
        messages.stats_message(dict(STATS, fsp=1))


def test_snapshot_is_raw_bytes_retained_qos0():
    m = messages.snapshot_message(b"\xff\xd8\xff\xd9")
    assert (m.topic, m.payload, m.qos, m.retain) == ("snapshot", b"\xff\xd8\xff\xd9", 0, True)
    with pytest.raises(TypeError):
        messages.snapshot_message("not bytes")  # type: ignore[arg-type]


# --- poses policy ------------------------------------------------------------------------------


def person_at(x: float, y: float, n: int = 1) -> Poses:
    return make_detection(np.tile(np.array([x, y], np.float32), (n, NUM_PARTS, 1))).poses


def decide(policy: PosesPolicy, poses: Poses, now: float) -> bool:
    return policy.should_publish(now, poses, W, H)


def test_every_frame_always_publishes():
    policy = PosesPolicy("every_frame")
    assert all(decide(policy, person_at(10, 10), t) for t in (0.0, 0.0, 0.1))


def test_off_never_publishes():
    assert not decide(PosesPolicy("off"), person_at(10, 10), 0.0)


def test_interval_publishes_first_then_after_the_interval():
    policy = PosesPolicy("interval", interval_s=1.0)
    d = person_at(10, 10)
    assert [decide(policy, d, t) for t in (5.0, 5.5, 5.99, 6.0, 6.5, 7.2)] == [
        True, False, False, True, False, True,
    ]


def test_on_change_publishes_first_frame_and_count_changes():
    policy = PosesPolicy("on_change")
    assert decide(policy, person_at(100, 100), 0)
    assert not decide(policy, person_at(100, 100), 1)
    assert decide(policy, person_at(100, 100, n=2), 2)
    assert decide(policy, Poses.empty(), 3)
    assert not decide(policy, Poses.empty(), 4)


def test_on_change_publishes_when_a_keypoint_moves_more_than_2_percent():
    policy = PosesPolicy("on_change")
    assert decide(policy, person_at(100, 100), 0)
    assert not decide(policy, person_at(100 + 0.019 * W, 100), 1)
    assert decide(policy, person_at(100 + 0.021 * W, 100), 2)


def test_on_change_compares_with_the_last_published_frame_so_drift_adds_up():
    policy = PosesPolicy("on_change")
    step = 0.015 * W
    assert decide(policy, person_at(100, 100), 0)
    assert not decide(policy, person_at(100 + step, 100), 1)
    assert decide(policy, person_at(100 + 2 * step, 100), 2)


def test_on_change_ignores_pose_order_and_unconfident_keypoints():
    policy = PosesPolicy("on_change")
    xy = np.stack([np.full((NUM_PARTS, 2), 50.0), np.full((NUM_PARTS, 2), 400.0)])
    assert decide(policy, make_detection(xy).poses, 0)
    swapped = xy[::-1].copy()
    assert not decide(policy, make_detection(swapped).poses, 1)
    jumpy = xy.copy()
    jumpy[0, 0] = [600, 10]  # the nose jumps, but with a low score
    scores = np.full((2, NUM_PARTS), 0.9, np.float32)
    scores[0, 0] = 0.1
    assert not decide(policy, make_detection(jumpy, scores).poses, 2)


def test_policy_refuses_unknown_mode_and_bad_interval():
    with pytest.raises(ValueError, match="every_frame"):
        PosesPolicy("sometimes")
    with pytest.raises(ValueError):
        PosesPolicy("interval", interval_s=0)


# --- commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"1", b"true", b"TRUE", b" snapshot\n", b"on", b"press",
                                     b'{"snapshot": true}', b'{"snapshot":true}'])
def test_snapshot_command_accepts(payload):
    assert commands.parse_snapshot_command(payload) is True


@pytest.mark.parametrize("payload", [b"0", b"false", b'{"snapshot": false}'])
def test_snapshot_command_valid_no_op(payload):
    assert commands.parse_snapshot_command(payload) is False


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"please", "expected empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"snapshot": "yes"}', "exactly"),
        (b'{"snapshot": true, "x": 1}', "exactly"),
        (b"[1]", "expected empty"),
        (b"1" * 300, "too long"),
    ],
)
def test_snapshot_command_rejects_with_a_reason(payload, reason):
    with pytest.raises(ValueError, match=reason):
        commands.parse_snapshot_command(payload)


def test_parse_command_names_unknown_topics():
    assert commands.parse_command("cmd/snapshot", b"") == "snapshot"
    assert commands.parse_command("cmd/snapshot", b"0") is None
    with pytest.raises(ValueError, match="unknown command topic"):
        commands.parse_command("cmd/reboot", b"")


# --- Home Assistant discovery ---------------------------------------------------------------------


def discovery(publish_snapshot: bool = True) -> tuple[str, dict]:
    (m,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", publish_snapshot)
    assert m.retain and m.qos == 1
    return m.topic, json.loads(m.payload)


def test_discovery_is_one_device_message_with_shared_availability():
    topic, cfg = discovery()
    assert topic == "homeassistant/device/edgepose_hall-1/config"
    assert cfg["device"]["identifiers"] == ["edgepose_hall-1"]
    assert cfg["origin"]["name"] == "edgepose"
    assert cfg["availability_topic"] == "edgepose/hall-1/availability"
    assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")


def test_discovery_components_have_stable_ids_and_the_right_topics():
    _, cfg = discovery()
    comps = cfg["components"]
    assert {"person_count", "person_detected", "inference_ms", "snapshot", "take_snapshot"} <= set(comps)
    for key, comp in comps.items():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", key)
        if len(comp) > 1:  # not a removal
            assert comp["unique_id"] == f"edgepose_hall-1_{key}"
    assert comps["person_count"]["platform"] == "sensor"
    assert comps["person_count"]["state_topic"] == "edgepose/hall-1/person_count"
    assert comps["person_detected"]["platform"] == "binary_sensor"
    assert "value | int" in comps["person_detected"]["value_template"]
    assert comps["inference_ms"]["state_topic"] == "edgepose/hall-1/stats"
    assert comps["inference_ms"]["value_template"] == "{{ value_json.inference_ms_p50 }}"
    assert comps["snapshot"]["platform"] == "image"
    assert comps["snapshot"]["image_topic"] == "edgepose/hall-1/snapshot"


def test_discovery_removes_the_image_without_snapshots():
    # Leaving it out would keep the stale entity (Home Assistant 2025.4): only its platform removes it.
    _, cfg = discovery(publish_snapshot=False)
    assert cfg["components"]["snapshot"] == {"platform": "image"}


def test_the_snapshot_image_says_whether_it_shows_the_camera_picture():
    """snapshots.privacy in the image entity's name: what a family sees on the card."""
    names = {}
    for privacy in ("skeleton", "blur", "off"):
        (m,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", True, snapshot_privacy=privacy)
        comp = json.loads(m.payload)["components"]["snapshot"]
        assert comp["unique_id"] == "edgepose_hall-1_snapshot", "the same entity in every mode"
        names[privacy] = comp["name"]
    assert names == {"skeleton": "Snapshot (skeleton only)", "blur": "Snapshot (blurred background)",
                     "off": "Snapshot"}


def test_discovery_refuses_ids_home_assistant_cannot_take():
    with pytest.raises(ValueError, match="must be 1-64 letters, digits"):
        ha_discovery.discovery_messages("hall 1", "edgepose", "homeassistant", False)


def test_every_schema_is_valid_draft_2020_12():
    for kind in messages.SCHEMA_KINDS:
        schema = messages.load_schema(kind)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


# --- acknowledge-fall command and the discovery of presence, zones and falls ---------------


@pytest.mark.parametrize("payload", [b"", b"ack", b"ACK ", b"press", b"1", b'{"ack": true}'])
def test_ack_fall_command_accepts_button_and_plain_payloads(payload):
    assert commands.parse_ack_fall_command(payload) is True
    assert commands.parse_command("cmd/ack_fall", payload) == "ack_fall"


@pytest.mark.parametrize("payload", [b"0", b"false", b'{"ack": false}'])
def test_ack_fall_command_no_ops(payload):
    assert commands.parse_command("cmd/ack_fall", payload) is None


@pytest.mark.parametrize("payload", [b"maybe", b'{"snapshot": true}', b"x" * 300])
def test_ack_fall_command_refuses_anything_else(payload):
    with pytest.raises(ValueError):
        commands.parse_command("cmd/ack_fall", payload)


def full_discovery(**kwargs) -> dict:
    args = dict(presence=True, falls=True, zones=("bed", "door"), stats_interval_s=60.0)
    args.update(kwargs)
    (m,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", True, **args)
    return json.loads(m.payload)["components"]


def test_discovery_of_presence_zones_and_falls():
    comps = full_discovery()
    assert comps["presence_event"]["platform"] == "event"
    assert comps["presence_event"]["event_types"] == ["person_entered", "person_left"]
    assert comps["presence_event"]["state_topic"] == "edgepose/hall-1/events"
    assert comps["fall_event"]["event_types"] == ["fall_detected", "fall_cleared"]
    assert comps["fall"]["platform"] == "binary_sensor" and comps["fall"]["device_class"] == "safety"
    assert comps["fall"]["state_topic"] == "edgepose/hall-1/state"
    assert comps["ack_fall"]["command_topic"] == "edgepose/hall-1/cmd/ack_fall"
    assert commands.parse_command("cmd/ack_fall", comps["ack_fall"]["payload_press"].encode()) == "ack_fall"
    assert comps["take_snapshot"]["command_topic"] == "edgepose/hall-1/cmd/snapshot"
    assert commands.parse_command("cmd/snapshot", comps["take_snapshot"]["payload_press"].encode()) == "snapshot"
    assert comps["zone_bed_occupied"]["device_class"] == "occupancy"
    assert "zones['bed'].occupied" in comps["zone_bed_occupied"]["value_template"]
    assert comps["zone_door_count"]["state_topic"] == "edgepose/hall-1/state"


def test_discovery_diagnostics_come_from_stats_and_expire():
    comps = full_discovery()
    for key in ("inference_ms", "fps", "dropped_frames", "source_errors", "cpu_temp_c", "started"):
        assert comps[key]["entity_category"] == "diagnostic"
        assert comps[key]["state_topic"] == "edgepose/hall-1/stats"
        assert comps[key]["expire_after"] == 180
    assert comps["cpu_temp_c"]["device_class"] == "temperature"
    # The start as a timestamp (Home Assistant shows "3 hours ago"), not a growing duration.
    assert comps["started"]["device_class"] == "timestamp" and "state_class" not in comps["started"]
    assert comps["started"]["value_template"] == "{{ value_json.started_at }}"
    assert comps["uptime_s"] == {"platform": "sensor"}, "the old uptime sensor is removed"
    assert "expire_after" not in full_discovery(stats_interval_s=None)["fps"]
    for key in ha_discovery.STATS_SENSORS:
        assert key in messages.STATS_FIELDS


def test_discovery_names_zones_as_people_write_them_and_counts_people():
    comps = full_discovery(zones=("living_room", "door-1"))
    assert comps["zone_living_room_occupied"]["name"] == "Living room occupied"
    assert comps["zone_living_room_count"]["name"] == "Living room person count"
    assert comps["zone_door-1_presence_event"]["name"] == "Door 1 presence"
    assert comps["zone_living_room_count"]["unit_of_measurement"] == "people"
    assert comps["person_count"]["unit_of_measurement"] == "people"
    assert ha_discovery.zone_label("TV") == "TV" and ha_discovery.zone_label("bed") == "Bed"


def _render(template: str, payload: dict) -> str:
    """Enough of Home Assistant's template rendering for our event templates (jinja2)."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    env.globals["dict"] = dict
    return env.from_string(template).render(value_json=payload)


def test_each_area_has_its_own_presence_event_entity():
    """An automation on the whole frame's person_entered must not also fire once per zone."""
    comps = full_discovery(zones=("bed", "door"))
    frame = {"type": "person_entered", "zone": None, "track_id": 3, "person_count": 1}
    bed = dict(frame, zone="bed")
    fall = {"type": "fall_detected", "zone": "bed", "track_id": 3}
    assert json.loads(_render(comps["presence_event"]["value_template"], frame))["event_type"] == "person_entered"
    assert _render(comps["presence_event"]["value_template"], bed) == ""
    assert json.loads(_render(comps["zone_bed_presence_event"]["value_template"], bed))["zone"] == "bed"
    assert _render(comps["zone_bed_presence_event"]["value_template"], frame) == ""
    assert _render(comps["zone_door_presence_event"]["value_template"], bed) == ""
    assert _render(comps["zone_bed_presence_event"]["value_template"], fall) == ""
    assert json.loads(_render(comps["fall_event"]["value_template"], fall))["event_type"] == "fall_detected"


def test_discovery_device_info_says_what_hardware_runs_it():
    (m,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", False, device_info={
        "hw_version": "Raspberry Pi 5 Model B Rev 1.0", "serial_number": "f00dcafe",
        "configuration_url": "http://hall.lan:9090/", "ignored": "x"})
    device = json.loads(m.payload)["device"]
    assert device["hw_version"] == "Raspberry Pi 5 Model B Rev 1.0" and device["serial_number"] == "f00dcafe"
    assert device["configuration_url"] == "http://hall.lan:9090/" and "ignored" not in device
    (bare,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", False)
    assert set(json.loads(bare.payload)["device"]) == {"identifiers", "name", "manufacturer", "model", "sw_version"}


def test_with_removals_adds_only_what_the_earlier_payload_configured():
    (before,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", True, presence=True,
                                            zones=("right",))
    (now,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", True, presence=True)
    merged = json.loads(ha_discovery.with_removals(now.payload, before.payload))["components"]
    assert merged["zone_right_count"] == {"platform": "sensor"}
    assert merged["zone_right_presence_event"] == {"platform": "event"}
    assert ha_discovery.with_removals(now.payload, now.payload) is None
    assert ha_discovery.with_removals(json.dumps(merged).join(['{"components":', "}"]).encode(), before.payload) is None
    assert ha_discovery.with_removals(now.payload, b"junk") is None


def test_discovery_removes_what_is_no_longer_configured():
    (before,) = ha_discovery.discovery_messages(
        "hall-1", "edgepose", "homeassistant", True, presence=True, falls=True, zones=("bed",)
    )
    (after,) = ha_discovery.discovery_messages(
        "hall-1", "edgepose", "homeassistant", False, presence=True, zones=("sofa",), previous=before.payload
    )
    comps = json.loads(after.payload)["components"]
    assert comps["zone_bed_occupied"] == {"platform": "binary_sensor"}
    assert comps["zone_bed_count"] == {"platform": "sensor"}
    assert comps["fall"] == {"platform": "binary_sensor"}
    assert comps["fall_event"] == {"platform": "event"}
    assert comps["ack_fall"] == {"platform": "button"}
    assert comps["snapshot"] == {"platform": "image"}
    assert comps["zone_sofa_occupied"]["platform"] == "binary_sensor"
    # A removal is sent once: the next start does not carry it forward again.
    (again,) = ha_discovery.discovery_messages(
        "hall-1", "edgepose", "homeassistant", False, presence=True, zones=("sofa",), previous=after.payload
    )
    assert "zone_bed_occupied" not in json.loads(again.payload)["components"]


@pytest.mark.parametrize("previous", [b"", b"not json", b"[]", b'{"components": 3}'])
def test_discovery_ignores_a_previous_payload_it_cannot_read(previous):
    (m,) = ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", False, previous=previous)
    assert json.loads(m.payload)["components"]["person_count"]["platform"] == "sensor"


def test_discovery_refuses_zone_names_home_assistant_cannot_take():
    with pytest.raises(ValueError, match="zone name"):
        ha_discovery.discovery_messages("hall-1", "edgepose", "homeassistant", False, presence=True, zones=("a b",))


def test_uninstall_is_an_empty_retained_payload_on_the_device_topic():
    m = ha_discovery.discovery_removal_message("hall-1", "homeassistant")
    assert (m.topic, m.payload, m.retain, m.qos) == ("homeassistant/device/edgepose_hall-1/config", b"", True, 1)


def test_source_states_are_one_list_for_capture_stats_and_home_assistant():
    from edgepose import capture

    states = (capture.SOURCE_STARTING, capture.SOURCE_OK, capture.SOURCE_RETRYING, capture.SOURCE_ENDED,
              capture.SOURCE_UNAVAILABLE, capture.SOURCE_CRASHED)
    assert ha_discovery.SOURCE_STATES == states
    assert tuple(messages.load_schema("stats")["properties"]["source_state"]["enum"]) == states
    [config] = ha_discovery.discovery_messages("hall", "edgepose", "homeassistant", False, stats_interval_s=60)
    sensor = json.loads(config.payload)["components"]["source_state"]
    assert sensor["device_class"] == "enum" and tuple(sensor["options"]) == states
