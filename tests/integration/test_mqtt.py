"""MqttPublisher against a real mosquitto: will, retained state, commands, outages, auth, TLS."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import jsonschema
import numpy as np
import paho.mqtt.client as paho
import pytest

from edgepose import messages
from edgepose.config import MqttConfig, TlsConfig
from edgepose.constants import NUM_PARTS
from edgepose.core import Frame, FrameResult, Message, Poses
from edgepose.mqtt import probe

from .conftest import AUTH_PASSWORD, AUTH_USER, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0


def cfg_for(broker, **kw) -> MqttConfig:
    """The daemon's own [mqtt] config (password already resolved), pointed at `broker`."""
    return MqttConfig(host=broker.host, port=broker.port, **kw)


def node() -> str:
    """A node id of its own, so retained messages of other tests never interfere."""
    return "t" + uuid.uuid4().hex[:10]


def detection(n: int = 1, seq: int = 7) -> FrameResult:
    rng = np.random.default_rng(seq)
    xy = (rng.random((n, NUM_PARTS, 2)) * [640, 480]).astype(np.float32)
    scores = rng.random((n, NUM_PARTS)).astype(np.float32)
    frame = Frame(np.zeros((480, 640, 3), np.uint8), seq=seq, captured_at=1_700_000_000.25)
    return FrameResult(frame, Poses(xy, scores, scores.mean(axis=1)), inference_ms=41.26, model="posenet-mnv1-075")


class Commands:
    """An on_command that records and signals, as the daemon's flag would."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.event = threading.Event()

    def __call__(self, name: str) -> None:
        self.seen.append(name)
        self.event.set()




def _payload_is(value: bytes):
    return lambda m: bytes(m.payload) == value


# --- availability -----------------------------------------------------------------------


def test_online_is_retained_after_connect(mosquitto_broker, publishers, subscriber):
    n = node()
    pub = publishers(cfg_for(mosquitto_broker), n)
    assert pub.wait_connected(WAIT_S)
    late = subscriber(mosquitto_broker, f"edgepose/{n}/availability")
    (msg,) = late.wait_for(lambda m: True)
    assert msg.retain and bytes(msg.payload) == b"online"


def test_clean_stop_publishes_offline_retained(mosquitto_broker, publishers, subscriber):
    n = node()
    pub = publishers(cfg_for(mosquitto_broker), n)
    assert pub.wait_connected(WAIT_S)
    pub.stop()
    assert not pub.connected
    late = subscriber(mosquitto_broker, f"edgepose/{n}/availability")
    (msg,) = late.wait_for(lambda m: True)
    assert msg.retain and bytes(msg.payload) == b"offline"


def test_will_says_offline_when_the_process_dies(mosquitto_broker, subscriber):
    n = node()
    child_code = textwrap.dedent(
        f"""
        import sys, threading
        from edgepose.config import MqttConfig
        from edgepose.mqtt import MqttPublisher
        cfg = MqttConfig(host={mosquitto_broker.host!r}, port={mosquitto_broker.port})
        pub = MqttPublisher(cfg, {n!r}).start()
        assert pub.wait_connected(10)
        print("ready", flush=True)
        threading.Event().wait()
        """
    )
    sub = subscriber(mosquitto_broker, f"edgepose/{n}/availability")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = subprocess.Popen([sys.executable, "-c", child_code], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"ready"
        sub.wait_for(_payload_is(b"online"))
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT_S)
        (will,) = sub.wait_for(_payload_is(b"offline"), timeout=WAIT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    late = subscriber(mosquitto_broker, f"edgepose/{n}/availability")
    (msg,) = late.wait_for(lambda m: True)
    assert msg.retain and bytes(msg.payload) == b"offline"


# --- messages ------------------------------------------------------------------------------


def test_poses_arrive_and_validate_against_the_schema(mosquitto_broker, publishers, subscriber):
    n = node()
    sub = subscriber(mosquitto_broker, f"edgepose/{n}/poses")
    pub = publishers(cfg_for(mosquitto_broker), n)
    assert pub.wait_connected(WAIT_S)
    assert pub.publish(messages.poses_message(detection(2), node_id=n))
    (msg,) = sub.wait_for(f"edgepose/{n}/poses")
    payload = json.loads(msg.payload)
    jsonschema.validate(payload, messages.load_schema("poses"))
    assert payload["node"] == n and payload["person_count"] == 2
    assert 0 <= payload["poses"][0]["keypoints"]["nose"]["x"] <= 1
    assert not msg.retain


def test_person_count_and_stats_are_retained(mosquitto_broker, publishers, subscriber):
    n = node()
    pub = publishers(cfg_for(mosquitto_broker), n)
    assert pub.wait_connected(WAIT_S)
    early = subscriber(mosquitto_broker, f"edgepose/{n}/person_count", f"edgepose/{n}/stats")
    pub.publish(messages.person_count_message(2))
    pub.publish(messages.stats_message(STATS, now=1_700_000_000.0))
    # Once the early subscriber has both, the broker holds them as retained: only then
    # can a late subscriber tell retained delivery from live delivery.
    early.wait_for(f"edgepose/{n}/person_count")
    early.wait_for(f"edgepose/{n}/stats")
    late = subscriber(mosquitto_broker, f"edgepose/{n}/person_count", f"edgepose/{n}/stats")
    (count,) = late.wait_for(f"edgepose/{n}/person_count")
    (stats,) = late.wait_for(f"edgepose/{n}/stats")
    assert count.retain and bytes(count.payload) == b"2"
    assert stats.retain
    jsonschema.validate(json.loads(stats.payload), messages.load_schema("stats"))


STATS = {
    "fps": 9.87,
    "inference_ms_p50": 41.2,
    "inference_ms_p95": 55.0,
    "frames": 1200,
    "dropped_frames": 3,
    "skipped_frames": 0,
    "gated_frames": 0,
    "corrupt_frames": 0,
    "source_errors": 1,
    "source_reopens": 0,
    "mqtt_dropped": 0,
    "snapshots_dropped": 0,
    "accelerator": "cpu",
    "runtime": "ai-edge-litert",
    "precision": "int8",
    "threads": 2,
    "model": "posenet_mnv1_075_stride16_int8 481x353",
    "source_state": "ok",
    "source_error": None,
    "mqtt_connected": True,
    "outbox_queued": 0,
    "outbox_dropped": 0,
    "cpu_temp_c": None,
    "uptime_s": 130,
    "started_at": 1_700_000_000.0,
    "fall_acks_without_fall": 0,
}


def test_mqtt5_sets_message_expiry_on_poses(mosquitto_broker, publishers, subscriber):
    n = node()
    sub = subscriber(mosquitto_broker, f"edgepose/{n}/poses", protocol=paho.MQTTv5)
    pub = publishers(cfg_for(mosquitto_broker, protocol="5"), n)
    assert pub.wait_connected(WAIT_S)
    pub.publish(messages.poses_message(detection(), node_id=n, expiry_s=5))
    (msg,) = sub.wait_for(f"edgepose/{n}/poses")
    assert 0 < msg.properties.MessageExpiryInterval <= 5


# --- commands --------------------------------------------------------------------------------


def test_snapshot_command_reaches_on_command_and_bad_payloads_are_ignored(
    mosquitto_broker, publishers, subscriber, caplog
):
    n = node()
    commands = Commands()
    pub = publishers(cfg_for(mosquitto_broker), n, on_command=commands)
    assert pub.wait_connected(WAIT_S)
    sender = subscriber(mosquitto_broker, "unused/#")
    with caplog.at_level(logging.WARNING, logger="edgepose.mqtt"):
        sender.publish(f"edgepose/{n}/cmd/snapshot", b"take a picture please")
        sender.publish(f"edgepose/{n}/cmd/reboot", b"1")
        sender.publish(f"edgepose/{n}/cmd/snapshot", b'{"snapshot": true}')
        assert commands.event.wait(WAIT_S)
    # Same publisher, same topic, QoS 1: the bad ones were handled before the good one.
    assert commands.seen == ["snapshot"]
    text = caplog.text
    assert "cmd/snapshot" in text and "take a picture" in text
    assert "unknown command topic 'cmd/reboot'" in text


def test_two_nodes_on_one_broker_do_not_interfere(mosquitto_broker, publishers, subscriber):
    a, b = node(), node()
    cmd_a, cmd_b = Commands(), Commands()
    pub_a = publishers(cfg_for(mosquitto_broker), a, on_command=cmd_a)
    pub_b = publishers(cfg_for(mosquitto_broker), b, on_command=cmd_b)
    assert pub_a.wait_connected(WAIT_S) and pub_b.wait_connected(WAIT_S)
    sub = subscriber(mosquitto_broker, "edgepose/+/availability", "edgepose/+/person_count")
    pub_a.publish(messages.person_count_message(1))
    pub_b.publish(messages.person_count_message(4))
    sub.publish(f"edgepose/{b}/cmd/snapshot", b"")
    assert cmd_b.event.wait(WAIT_S)
    pub_a.stop()
    sub.wait_for(lambda m: m.topic == f"edgepose/{a}/availability" and m.payload == b"offline")
    assert cmd_a.seen == [] and cmd_b.seen == ["snapshot"]
    assert pub_b.connected
    (count_a,) = sub.wait_for(f"edgepose/{a}/person_count")
    (count_b,) = sub.wait_for(f"edgepose/{b}/person_count")
    assert (count_a.payload, count_b.payload) == (b"1", b"4")
    assert not sub.matching(lambda m: m.topic == f"edgepose/{b}/availability" and m.payload == b"offline")


# --- outages ----------------------------------------------------------------------------------


def test_broker_down_at_start_then_up(broker_factory, publishers, subscriber):
    broker = broker_factory(start=False)
    n = node()
    pub = publishers(cfg_for(broker), n, reconnect_min_s=1, reconnect_max_s=1)
    assert not pub.connected
    assert pub.publish(messages.poses_message(detection(), node_id=n)) is False
    assert pub.publish(messages.poses_message(detection(), node_id=n)) is False
    assert pub.dropped == 2
    assert pub.publish(messages.person_count_message(3)) is True  # kept for the connect
    broker.start()
    assert pub.wait_connected(WAIT_S)
    sub = subscriber(broker, f"edgepose/{n}/#")
    sub.wait_for(lambda m: m.topic.endswith("/availability") and m.payload == b"online")
    (count,) = sub.wait_for(f"edgepose/{n}/person_count")
    assert bytes(count.payload) == b"3"
    assert pub.publish(messages.poses_message(detection(), node_id=n)) is True
    sub.wait_for(f"edgepose/{n}/poses")
    assert pub.dropped == 2


def test_retained_state_is_republished_after_broker_restart(broker_factory, publishers, subscriber):
    broker = broker_factory()
    n = node()
    pub = publishers(
        cfg_for(broker, home_assistant=True, publish_snapshot=True), n, reconnect_min_s=1, reconnect_max_s=1
    )
    assert pub.wait_connected(WAIT_S)
    pub.publish(messages.person_count_message(5))
    pub.publish(messages.snapshot_message(b"\xff\xd8jpeg\xff\xd9"))
    pub.publish(messages.stats_message(STATS))
    sub = subscriber(broker, f"edgepose/{n}/stats")
    sub.wait_for(f"edgepose/{n}/stats")  # all three went out before the restart

    broker.restart()  # persistence off: the broker forgot every retained message

    late = subscriber(broker, f"edgepose/{n}/#", "homeassistant/device/#")
    late.wait_for(lambda m: m.topic.endswith("/availability") and m.payload == b"online", timeout=WAIT_S)
    (count,) = late.wait_for(f"edgepose/{n}/person_count", timeout=WAIT_S)
    (snap,) = late.wait_for(f"edgepose/{n}/snapshot", timeout=WAIT_S)
    late.wait_for(f"edgepose/{n}/stats", timeout=WAIT_S)
    (disc,) = late.wait_for(f"homeassistant/device/edgepose_{n}/config", timeout=WAIT_S)
    assert bytes(count.payload) == b"5" and bytes(snap.payload) == b"\xff\xd8jpeg\xff\xd9"
    assert "snapshot" in json.loads(disc.payload)["components"]


def test_discovery_is_resent_when_home_assistant_comes_online(mosquitto_broker, publishers, subscriber):
    n = node()
    pub = publishers(cfg_for(mosquitto_broker, home_assistant=True), n)
    assert pub.wait_connected(WAIT_S)
    topic = f"homeassistant/device/edgepose_{n}/config"
    sub = subscriber(mosquitto_broker, topic)
    sub.wait_for(topic)  # the retained one
    sub.publish("homeassistant/status", b"online")
    second = sub.wait_for(topic, count=2)[1]
    assert not second.retain  # live, i.e. sent again
    cfg = json.loads(second.payload)
    assert cfg["availability_topic"] == f"edgepose/{n}/availability"


# --- auth, TLS, probe ---------------------------------------------------------------------------


def test_username_and_password(auth_broker, publishers, subscriber):
    n = node()
    pub = publishers(cfg_for(auth_broker, username=AUTH_USER, password=AUTH_PASSWORD), n)
    assert pub.wait_connected(WAIT_S)
    assert AUTH_PASSWORD not in repr(pub)
    ok, detail = probe(cfg_for(auth_broker, username=AUTH_USER, password="wrong"), timeout=WAIT_S)
    assert not ok and "refused" in detail and AUTH_PASSWORD not in detail
    ok, detail = probe(cfg_for(auth_broker), timeout=WAIT_S)
    assert not ok and "refused" in detail


def test_password_never_logged(auth_broker, publishers, caplog):
    with caplog.at_level(logging.DEBUG):
        pub = publishers(cfg_for(auth_broker, username=AUTH_USER, password=AUTH_PASSWORD), node())
        assert pub.wait_connected(WAIT_S)
        pub.stop()
    assert AUTH_PASSWORD not in caplog.text


def test_tls_verifies_the_broker(tls_broker, publishers):
    broker, files = tls_broker
    tls = TlsConfig(enabled=True, ca_file=str(files.ca_file))
    ok, detail = probe(MqttConfig(host="localhost", port=broker.port, tls=tls), timeout=WAIT_S)
    assert ok, detail
    assert "TLS" in detail
    # The certificate names localhost, not 127.0.0.1: verification refuses it...
    ok, detail = probe(MqttConfig(host="127.0.0.1", port=broker.port, tls=tls), timeout=WAIT_S)
    assert not ok and "TLS" in detail
    # ...unless the user opted out of the hostname check.
    insecure = TlsConfig(enabled=True, ca_file=str(files.ca_file), insecure=True)
    pub = publishers(MqttConfig(host="127.0.0.1", port=broker.port, tls=insecure), node())
    assert pub.wait_connected(WAIT_S)


def _sends_at_once(pub) -> bool:
    sock = pub._client.socket()  # paho's socket; TLS wraps it
    return sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_each_message_leaves_at_once_also_after_a_reconnect_and_over_tls(
        broker_factory, tls_broker, publishers, subscriber):
    """TCP_NODELAY on every socket paho opens: with Nagle's algorithm, poses messages
    waited for the broker's delayed ACK (p95 10 ms higher; mqtt.transport._send_without_delay)."""
    broker = broker_factory()
    n = node()
    pub = publishers(cfg_for(broker), n, reconnect_min_s=1, reconnect_max_s=1)
    assert pub.wait_connected(WAIT_S) and _sends_at_once(pub)
    first = pub._client.socket()
    broker.restart()
    late = subscriber(broker, f"edgepose/{n}/availability")
    late.wait_for(_payload_is(b"online"), timeout=WAIT_S)  # sent by the new connection
    assert pub._client.socket() is not first and _sends_at_once(pub)
    tls_server, files = tls_broker
    tls = TlsConfig(enabled=True, ca_file=str(files.ca_file))
    pub = publishers(MqttConfig(host="localhost", port=tls_server.port, tls=tls), node())
    assert pub.wait_connected(WAIT_S) and _sends_at_once(pub)


def test_probe_reports_a_refused_port():
    port = free_port()
    ok, detail = probe(MqttConfig(host="127.0.0.1", port=port), timeout=2.0)
    assert not ok
    assert detail == f"cannot reach broker 127.0.0.1:{port} (connection refused)"


def test_probe_connects(mosquitto_broker):
    ok, detail = probe(cfg_for(mosquitto_broker), timeout=WAIT_S)
    assert ok and detail.startswith(f"connected to 127.0.0.1:{mosquitto_broker.port}")


class _Waiter(logging.Handler):
    """Signals when a log record containing `text` arrives (from any thread)."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_a_refused_connection_is_not_treated_as_connected(auth_broker, publishers):
    waiter = _Waiter("refused the credentials")
    logger = logging.getLogger("edgepose.mqtt")
    logger.addHandler(waiter)
    try:
        pub = publishers(cfg_for(auth_broker, username=AUTH_USER, password="wrong"), node())
        assert waiter.event.wait(WAIT_S)
        assert not pub.connected
        assert pub.publish(messages.poses_message(detection(), node_id=pub.node_id)) is False
    finally:
        logger.removeHandler(waiter)


def test_full_queue_drops_and_counts(broker_factory, publishers):
    broker = broker_factory(start=False)
    pub = publishers(cfg_for(broker, max_queued=2), node())
    qos1 = Message("events", b"x", qos=1, retain=False)
    assert [pub.publish(qos1) for _ in range(3)] == [True, True, False]
    assert pub.dropped == 1
