"""Faults against real mosquitto brokers, exercising MqttPublisher and the outbox directly.

A frozen broker (SIGSTOP: a half-open link), a killed one (SIGKILL, restarted
on the same port), a process killed while its broker is down, a full outbox,
TLS and password failures that must name their cause, and a 64 MB command.

Fault lengths: each long fault has a fast variant that runs by default and the
length the issue names, marked ``slow`` (``pytest -m slow``). The fast freeze
keeps the issue's ratio of outage to keepalive (45 s at 15 s -> 10 s at 3 s):
what matters is that the freeze outlasts the client's dead-link detection
(2 x keepalive) and the broker's (1.5 x keepalive), so the old session's will
fires after the client has reconnected elsewhere in time, exactly as in the
long run. Waiting out a fault's length is the stimulus, not a synchronisation:
every assertion waits on a condition with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from edgepose import messages
from edgepose.config import MqttConfig, TlsConfig
from edgepose.constants import NUM_PARTS
from edgepose.core import Frame, FrameResult, Poses
from edgepose.devtools.procstat import peak_rss_kib as _peak_rss_kib
from edgepose.mqtt import MqttPublisher
from edgepose.outbox import PRIORITY_CRITICAL, PRIORITY_EVENT, PRIORITY_TELEMETRY, Outbox, OutboxMessage

from .conftest import AUTH_PASSWORD, AUTH_USER, _write_tls_files, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0
FRAME_PERIOD_S = 0.05  # the producer's 20 frames per second


# --- helpers ----------------------------------------------------------------------------


def node() -> str:
    return "r" + uuid.uuid4().hex[:10]


def cfg_for(broker, **kw) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, **kw)


def wait_until(predicate, timeout: float, what: str, poll_s: float = 0.02) -> None:
    """Poll a condition that has no event of its own (process state, files, counters)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        threading.Event().wait(poll_s)


def outage(seconds: float) -> None:
    """Hold a fault for its length (the stimulus the test is about, not a synchronisation)."""
    threading.Event().wait(seconds)


def detection(seq: int) -> FrameResult:
    xy = np.full((1, NUM_PARTS, 2), 100.0, np.float32)
    scores = np.full((1, NUM_PARTS), 0.9, np.float32)
    frame = Frame(np.zeros((48, 64, 3), np.uint8), seq=seq, captured_at=time.time())
    return FrameResult(frame, Poses(xy, scores, scores.mean(axis=1)), inference_ms=40.0, model="test")


def event(seq: int, priority: int = PRIORITY_EVENT, run: str = "") -> OutboxMessage:
    event_id = f"{run}{seq:06d}"
    created = 1_700_000_000.0 + seq
    payload = json.dumps({"id": event_id, "seq": seq, "ts": messages.iso_utc(created)}).encode()
    return OutboxMessage("events", payload, event_id, created, priority)


def ids_of(sub, topic: str) -> list[str]:
    return [json.loads(m.payload)["id"] for m in sub.matching(topic)]


def retained_value(broker, topic: str, subscriber) -> bytes:
    """What a new subscriber reads as the retained message on `topic` right now."""
    fresh = subscriber(broker, topic)
    (msg,) = fresh.wait_for(topic, timeout=5.0)
    assert msg.retain
    return bytes(msg.payload)


class Frames:
    """A stand-in inference loop: poses (QoS 0) and the retained person count (QoS 1)
    every frame, the traffic that once filled paho's queue and starved ``online``."""

    def __init__(self, pub: MqttPublisher, node_id: str) -> None:
        self.pub, self.node_id = pub, node_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        while not self.stop.wait(FRAME_PERIOD_S):
            seq += 1
            self.pub.publish(messages.poses_message(detection(seq), node_id=self.node_id))
            self.pub.publish(messages.person_count_message(seq % 3))

    def __enter__(self) -> "Frames":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)




@pytest.fixture
def outboxes():
    made: list[Outbox] = []

    def make(path: Path, deliverer=None, **kw) -> Outbox:
        kw = {"max_messages": 10_000, "max_bytes": 50_000_000} | kw
        box = Outbox(path, deliverer=deliverer, **kw).start()
        made.append(box)
        return box

    yield make
    for box in made:
        box.stop()


class Records(logging.Handler):
    """Every record of the edgepose.mqtt loggers, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def mqtt_records():
    handler = Records()
    logger = logging.getLogger("edgepose.mqtt")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# --- half-open link: availability is never left offline -----------------------------------


@pytest.mark.parametrize(
    "keepalive_s, freeze_s",
    [pytest.param(3, 10.0, id="freeze10s-keepalive3s"),
     pytest.param(15, 45.0, id="freeze45s-keepalive15s", marks=pytest.mark.slow)],
)
def test_online_is_retained_and_poses_flow_after_a_frozen_broker(
    broker_factory, publishers, subscriber, keepalive_s, freeze_s
):
    broker = broker_factory()
    n = node()
    availability, poses = f"edgepose/{n}/availability", f"edgepose/{n}/poses"
    pub = publishers(cfg_for(broker, keepalive_s=keepalive_s), n)
    assert pub.wait_connected(WAIT_S)
    with Frames(pub, n):
        subscriber(broker, poses).wait_for(poses)
        frozen_at = time.monotonic()
        broker.freeze()
        try:
            wait_until(lambda: not pub.connected, 2 * keepalive_s + 5, "the publisher notices the dead link")
            outage(max(0.0, freeze_s - (time.monotonic() - frozen_at)))
        finally:
            broker.resume()
        resumed = time.monotonic()

        def online_now() -> bool:
            return retained_value(broker, availability, subscriber) == b"online"

        wait_until(online_now, 5.0, "retained availability = online within 5 s of resuming", poll_s=0.1)
        fresh = subscriber(broker, poses)
        fresh.wait_for(poses, timeout=max(0.1, resumed + 5.0 - time.monotonic()))
        # The old session's will can fire up to keepalive x 1.5 after resuming; the
        # publisher answers it, and re-sends online once after that window anyway.
        outage(keepalive_s * 1.5 + 1.5 - (time.monotonic() - resumed))
        assert retained_value(broker, availability, subscriber) == b"online"
    stats = pub.stats()
    assert stats["poses_dropped"] > 0  # while disconnected: counted, not silently lost
    assert stats["poses_unconfirmed"] > 0  # written into the dead socket: counted too
    assert stats["refused"] == 0  # availability and retained state were never refused


# --- broker killed and restarted: every outbox message, in order, once ---------------------


@pytest.mark.parametrize("outage_s", [pytest.param(5.0, id="5s"),
                                      pytest.param(60.0, id="60s", marks=pytest.mark.slow)])
def test_outbox_delivers_everything_in_order_after_the_broker_was_killed(
    broker_factory, publishers, subscriber, outboxes, tmp_path, outage_s
):
    broker = broker_factory(persistent=True)
    n = node()
    events, poses = f"edgepose/{n}/events", f"edgepose/{n}/poses"
    durable = subscriber(broker, events, durable=True)  # its session survives the SIGKILL
    wait_until(lambda: (broker.workdir / "mosquitto.db").exists(), WAIT_S, "the broker saved the session")
    pub = publishers(cfg_for(broker, keepalive_s=5), n)
    box = outboxes(tmp_path / "outbox.sqlite3", pub)
    assert pub.wait_connected(WAIT_S)
    for seq in range(10):
        box.put(event(seq))
    durable.wait_for(events, count=10)
    assert box.wait_empty(WAIT_S)
    # Let the broker save its state now that those ten are delivered (a subscription
    # change triggers the save); otherwise it would redeliver them to the durable
    # session after the SIGKILL, a broker-to-subscriber duplicate, not ours.
    db_file = broker.workdir / "mosquitto.db"
    saved = db_file.stat().st_mtime_ns
    durable.subscribe_more(f"edgepose/{n}/unused")
    wait_until(lambda: db_file.stat().st_mtime_ns != saved, WAIT_S, "the broker saved its state again")

    broker.kill()
    stop, produced = threading.Event(), [10]

    def produce() -> None:  # events keep happening during the outage
        while not stop.wait(0.02):
            box.put(event(produced[0]))
            produced[0] += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        outage(outage_s)
    finally:
        stop.set()
        producer.join(WAIT_S)
    total = produced[0]
    assert box.flush(WAIT_S)
    assert box.stats()["queued"] == total - 10
    broker.start()
    restarted = time.monotonic()
    assert pub.wait_connected(3.0), "not reconnected within 3 s of the restart"
    live = subscriber(broker, poses)
    pub.publish(messages.poses_message(detection(1), node_id=n))
    live.wait_for(poses, timeout=max(0.1, restarted + 3.0 - time.monotonic()))

    durable.wait_for(events, count=total, timeout=WAIT_S + total * 0.01)
    assert box.wait_empty(WAIT_S)
    received = ids_of(durable, events)
    assert received == [f"{seq:06d}" for seq in range(total)]  # all, in order, no duplicate
    assert box.stats()["delivered"] == total
    for msg in durable.matching(events)[10:13]:  # original time stamps, not the delivery time
        payload = json.loads(msg.payload)
        assert payload["ts"] == messages.iso_utc(1_700_000_000.0 + payload["seq"])


# --- the process is killed while the broker is down ---------------------------------------

_CHILD = """
import json, sys, threading, time
from edgepose.config import MqttConfig
from edgepose.mqtt import MqttPublisher
from edgepose.outbox import Outbox, OutboxMessage
host, port, node_id, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
pub = MqttPublisher(MqttConfig(host=host, port=port), node_id).start()
box = Outbox(path, max_messages=1000, max_bytes=10_000_000, deliverer=pub).start()
for seq in range(count):
    payload = json.dumps({"id": f"k{seq:06d}", "seq": seq}).encode()
    box.put(OutboxMessage("events", payload, f"k{seq:06d}", time.time()))
assert box.flush(10)
print("queued", flush=True)
threading.Event().wait()
"""


def test_events_queued_by_a_killed_process_are_delivered_after_restart(
    broker_factory, publishers, subscriber, outboxes, tmp_path
):
    broker = broker_factory(start=False)
    n, path, count = node(), tmp_path / "state" / "outbox.sqlite3", 50
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), broker.host, str(broker.port), n, str(path), str(count)],
        stdout=subprocess.PIPE, env=env,
    )
    try:
        assert child.stdout.readline().strip() == b"queued"
        child.send_signal(signal.SIGKILL)
        assert child.wait(WAIT_S) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == count

    broker.start()
    events = f"edgepose/{n}/events"
    sub = subscriber(broker, events)
    pub = publishers(cfg_for(broker), n)
    box = outboxes(path, pub)
    sub.wait_for(events, count=count)
    assert box.wait_empty(WAIT_S)
    assert ids_of(sub, events) == [f"k{seq:06d}" for seq in range(count)]


# --- a full outbox ---------------------------------------------------------------------------


def test_full_outbox_drops_oldest_telemetry_keeps_events(
    broker_factory, publishers, subscriber, outboxes, tmp_path
):
    broker = broker_factory(start=False)
    n, path = node(), tmp_path / "outbox.sqlite3"
    offline = outboxes(path, max_messages=20)  # the broker is away: everything waits on disk
    plan = []
    for seq in range(40):
        priority = PRIORITY_CRITICAL if seq == 3 else PRIORITY_EVENT if seq % 8 == 0 else PRIORITY_TELEMETRY
        plan.append(event(seq, priority))
        offline.put(plan[-1])
    assert offline.flush(WAIT_S)
    stats = offline.stats()
    assert stats["queued"] == 20 and stats["dropped_telemetry"] == 20
    assert stats["dropped_events"] == stats["dropped_critical"] == 0
    offline.stop()

    broker.start()
    events = f"edgepose/{n}/events"
    sub = subscriber(broker, events)
    pub = publishers(cfg_for(broker), n)
    outboxes(path, pub, max_messages=20)
    got = [json.loads(m.payload)["seq"] for m in sub.wait_for(events, count=20)]
    kept_events = [m.payload for m in plan if m.priority != PRIORITY_TELEMETRY]
    telemetry = [json.loads(m.payload)["seq"] for m in plan if m.priority == PRIORITY_TELEMETRY]
    expected = sorted([json.loads(p)["seq"] for p in kept_events] + telemetry[-(20 - len(kept_events)):])
    assert got == expected  # every event, the newest telemetry, in the order produced


# --- TLS and passwords: each failure names its cause, once -----------------------------------


def _tls(files, **kw) -> TlsConfig:
    return TlsConfig(enabled=True, ca_file=str(files.ca_file), **kw)


def test_right_credentials_over_tls_connect(tls_auth_broker, publishers, mqtt_records):
    broker, files = tls_auth_broker
    pub = publishers(MqttConfig(host="localhost", port=broker.port, tls=_tls(files),
                                username=AUTH_USER, password=AUTH_PASSWORD), node())
    assert pub.wait_connected(WAIT_S)
    pub.stop()
    assert not mqtt_records.at(logging.WARNING) and not mqtt_records.at(logging.ERROR)
    assert AUTH_PASSWORD not in " ".join(r.getMessage() for r in mqtt_records.records)


@pytest.mark.parametrize("case", ["wrong password", "untrusted CA", "hostname mismatch", "TLS to a plain port",
                                  "plain to a TLS port", "nothing listening"])
def test_connect_failures_name_their_cause_once(
    case, tls_auth_broker, mosquitto_broker, publishers, mqtt_records, tmp_path
):
    broker, files = tls_auth_broker
    auth = dict(username=AUTH_USER, password=AUTH_PASSWORD)
    cfg, needle = {
        "wrong password": (MqttConfig(host="localhost", port=broker.port, tls=_tls(files),
                                      username=AUTH_USER, password="wrong"), "refused the credentials"),
        "untrusted CA": (MqttConfig(host="localhost", port=broker.port, tls=_tls(_write_tls_files(tmp_path, "localhost")),
                                    **auth), "certificate is not trusted"),
        "hostname mismatch": (MqttConfig(host="127.0.0.1", port=broker.port, tls=_tls(files), **auth),
                              "hostname mismatch"),
        "TLS to a plain port": (MqttConfig(host="localhost", port=mosquitto_broker.port, tls=_tls(files)),
                                "plain MQTT port"),
        "plain to a TLS port": (MqttConfig(host="127.0.0.1", port=broker.port, **auth),
                                "closed the connection before answering"),
        "nothing listening": (MqttConfig(host="127.0.0.1", port=free_port()), "connection refused"),
    }[case]
    pub = publishers(cfg, node())
    wait_until(lambda: pub.stats()["connect_failures"] >= 3, 3 * WAIT_S, "three failed attempts")
    pub.stop()
    warnings = mqtt_records.at(logging.WARNING)
    named = [w for w in warnings if needle in w]
    assert len(named) == 1, warnings  # WARNING once...
    assert sum(needle in m for m in mqtt_records.at(logging.DEBUG)) >= 1  # ...then DEBUG
    assert not mqtt_records.at(logging.ERROR)  # paho's routine states are not errors
    assert not pub.connected


# --- bounded inputs: a 64 MB command -----------------------------------------------------------

_RSS_CHILD = """
import sys, threading
from edgepose.config import MqttConfig
from edgepose.mqtt import MqttPublisher
host, port, node_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def on_command(name):
    print("command", name, flush=True)
pub = MqttPublisher(MqttConfig(host=host, port=port, protocol="5"), node_id, on_command=on_command).start()
assert pub.wait_connected(10)
print("ready", flush=True)
threading.Event().wait()
"""


def test_a_64_mb_command_leaves_rss_flat_on_mqtt5(mosquitto_broker, subscriber):
    """MQTT 5's Maximum Packet Size: the broker never forwards the 64 MB payload. (On
    3.1.1 the client refuses it from its header: the tests below.)"""
    n = node()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_RSS_CHILD), mosquitto_broker.host, str(mosquitto_broker.port), n],
        stdout=subprocess.PIPE, env=env,
    )
    try:
        assert child.stdout.readline().strip() == b"ready"
        baseline = _peak_rss_kib(child.pid)
        sender = subscriber(mosquitto_broker, "unused/#")
        topic = f"edgepose/{n}/cmd/snapshot"
        sender.publish(topic, b"\x00" * (64 * 1024 * 1024))
        sender.publish(topic, b"1")  # same sender, same topic, QoS 1: arrives after the big one
        assert child.stdout.readline().strip() == b"command snapshot"
        grown_kib = _peak_rss_kib(child.pid) - baseline
        assert grown_kib < 20 * 1024, f"peak RSS grew {grown_kib / 1024:.1f} MB"
    finally:
        child.kill()
        child.wait()


BIG_COMMAND = b"\x00" * (64 * 1024 * 1024)


def _reconnected(pub: MqttPublisher, connects: int) -> bool:
    stats = pub.stats()
    return stats["connects"] == connects and pub.wait_connected(0)


def _publish_size(topic: str, payload: bytes) -> int:
    """Bytes of a QoS 1 PUBLISH on MQTT 3.1.1: fixed header (1 + 4 length bytes for 64 MB),
    topic name with its length, packet id, payload."""
    return 1 + 4 + 2 + len(topic) + 2 + len(payload)


def _refusals(records, topic: str) -> list[str]:
    return [m for m in records.at(logging.WARNING) if "dropped the connection without reading it" in m and topic in m]


def test_a_64_mb_command_on_mqtt_3_1_1_is_refused_from_its_header_and_the_node_carries_on(
        mosquitto_broker, publishers, subscriber, mqtt_records):
    """The default protocol, and a broker with no max_packet_size of its own (mosquitto's
    default: it accepts and forwards the 64 MB): the node reads the packet's fixed header,
    drops the connection before the body, reconnects, and commands and publishing go on."""
    assert MqttConfig().protocol == "3.1.1"
    n = node()
    seen: list[str] = []
    pub = publishers(cfg_for(mosquitto_broker), n, on_command=seen.append)
    assert pub.wait_connected(WAIT_S)
    sender = subscriber(mosquitto_broker, f"edgepose/{n}/person_count")
    topic = f"edgepose/{n}/cmd/snapshot"
    sender.publish(topic, BIG_COMMAND)  # acknowledged: the broker took it and forwards it
    wait_until(lambda: _reconnected(pub, 2), WAIT_S, "the connection dropped and made again")
    size = _publish_size(topic, BIG_COMMAND)
    assert pub.stats()["packets_refused"] == 1
    (logged,) = _refusals(mqtt_records, topic)
    assert f"{size / 2**20:.1f} MB message on {topic}" in logged
    assert seen == [] and pub.stats()["commands_invalid"] == 0  # never parsed: never read
    sender.publish(topic, b"1")
    wait_until(lambda: seen == ["snapshot"], WAIT_S, "the next command acted on")
    pub.publish(messages.person_count_message(3))
    sender.wait_for(lambda m: m.payload == b"3", timeout=WAIT_S)
    assert pub.stats()["connects"] == 2 and pub.stats()["packets_refused"] == 1


def test_an_oversized_retained_command_is_cleared_so_it_cannot_drop_every_connection(
        mosquitto_broker, publishers, subscriber, mqtt_records):
    """A retained message comes back on every subscribe: refused once, then cleared by the
    next connection before it subscribes, and the node stays connected."""
    n = node()
    topic = f"edgepose/{n}/cmd/snapshot"
    sender = subscriber(mosquitto_broker, "unused/#")
    sender.publish(topic, BIG_COMMAND, retain=True)
    seen: list[str] = []
    pub = publishers(cfg_for(mosquitto_broker), n, on_command=seen.append)
    wait_until(lambda: _reconnected(pub, 2), WAIT_S, "the connection dropped and made again")
    assert len(_refusals(mqtt_records, topic)) == 1 and "retained message" in _refusals(mqtt_records, topic)[0]
    assert any(f"clearing the oversized retained message on {topic}" in m for m in mqtt_records.at(logging.WARNING))
    # Nothing retained is left: a new subscriber's first message is the marker sent after it subscribed.
    fresh = subscriber(mosquitto_broker, topic)
    sender.publish(topic, b"0")
    (first,) = fresh.wait_for(lambda m: True, timeout=WAIT_S)
    assert first.payload == b"0" and not first.retain
    sender.publish(topic, b"1")
    wait_until(lambda: seen == ["snapshot"], WAIT_S, "a command acted on")
    assert pub.stats()["connects"] == 2 and pub.stats()["packets_refused"] == 1


def test_a_64_mb_command_over_tls_is_refused_unread_too(tls_broker, publishers, subscriber, mqtt_records):
    broker, files = tls_broker
    tls = TlsConfig(enabled=True, ca_file=str(files.ca_file))
    n = node()
    seen: list[str] = []
    pub = publishers(MqttConfig(host="localhost", port=broker.port, tls=tls), n, on_command=seen.append)
    assert pub.wait_connected(WAIT_S)
    sender = paho_tls_client(broker.port, files.ca_file)
    topic = f"edgepose/{n}/cmd/snapshot"
    try:
        sender.publish(topic, BIG_COMMAND, qos=1).wait_for_publish(WAIT_S)
        wait_until(lambda: _reconnected(pub, 2), WAIT_S, "the TLS connection dropped and made again")
        assert len(_refusals(mqtt_records, topic)) == 1
        sender.publish(topic, b"1", qos=1).wait_for_publish(WAIT_S)
        wait_until(lambda: seen == ["snapshot"], WAIT_S, "the next command acted on")
    finally:
        sender.disconnect()
        sender.loop_stop()


def paho_tls_client(port: int, ca_file) -> "paho.Client":
    import paho.mqtt.client as paho

    client = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=f"test-{node()}")
    client.tls_set(ca_certs=str(ca_file))
    client.connect("localhost", port)
    client.loop_start()
    return client


# --- a late will, commands -------------------------------------------------------------------


def test_a_late_offline_is_answered_with_online(mosquitto_broker, publishers, subscriber):
    """What a broker does when it notices a half-open link after we reconnected: it
    publishes the old session's will. Here another client plays that will."""
    n = node()
    availability = f"edgepose/{n}/availability"
    pub = publishers(cfg_for(mosquitto_broker), n)
    assert pub.wait_connected(WAIT_S)
    sub = subscriber(mosquitto_broker, availability)
    sub.wait_for(lambda m: m.payload == b"online")
    sub.publish(availability, b"offline", retain=True)
    sub.wait_for(lambda m: m.payload == b"online", count=2)
    assert retained_value(mosquitto_broker, availability, subscriber) == b"online"
    assert pub.stats()["availability_corrections"] == 1


def test_commands_obey_a_cooldown_and_invalid_ones_are_logged_at_a_bounded_rate(
    mosquitto_broker, publishers, subscriber, mqtt_records
):
    n = node()
    seen: list[str] = []
    pub = publishers(cfg_for(mosquitto_broker), n, on_command=seen.append, command_cooldown_s=60.0)
    assert pub.wait_connected(WAIT_S)
    sender = subscriber(mosquitto_broker, "unused/#")
    for _ in range(200):
        sender.publish(f"edgepose/{n}/cmd/snapshot", b"not a command")
    for _ in range(3):
        sender.publish(f"edgepose/{n}/cmd/snapshot", b"1")
    wait_until(lambda: pub.stats()["commands_throttled"] == 2, WAIT_S, "the last two snapshot commands throttled")
    stats = pub.stats()
    assert seen == ["snapshot"] and stats["commands"] == 1 and stats["commands_invalid"] == 200
    logged = [m for m in mqtt_records.at(logging.WARNING) if "not a command" in m]
    assert len(logged) <= 5 and stats["commands_log_suppressed"] >= 195


def test_the_last_runs_retained_offline_is_no_late_will(mosquitto_broker, publishers, subscriber, mqtt_records):
    """A clean stop leaves `offline` retained; the next start's subscription brings it back
    (retained). That is not a late will: no correction, no "late will" line."""
    n = node()
    availability = f"edgepose/{n}/availability"
    first = publishers(cfg_for(mosquitto_broker), n)
    assert first.wait_connected(WAIT_S)
    first.stop(timeout=WAIT_S)
    assert retained_value(mosquitto_broker, availability, subscriber) == b"offline"
    sub = subscriber(mosquitto_broker, availability)
    second = publishers(cfg_for(mosquitto_broker), n)
    assert second.wait_connected(WAIT_S)
    sub.wait_for(lambda m: m.payload == b"online" and not m.retain)
    # The broker sent the retained offline before the PUBACK of anything published after
    # the subscription, on the same socket: once that PUBACK is in, so was the offline.
    acked = threading.Event()
    assert second.publish_acked("probe", b"1", lambda ok: acked.set())
    assert acked.wait(WAIT_S)
    assert second.stats()["availability_corrections"] == 0
    assert not [m for m in mqtt_records.at(logging.INFO) if "late will" in m]
    assert retained_value(mosquitto_broker, availability, subscriber) == b"online"
