"""The MQTT adapter: the only module that imports paho-mqtt (>= 2).

`MqttPublisher` connects in paho's network thread (``connect_async`` +
``loop_start``), so a missing broker never blocks start-up or the camera loop;
paho reconnects with back-off. The broker is told ``offline`` by a retained
last will set before connecting, ``online`` on every connect. Retained node
state (person count, stats, snapshot, Home Assistant discovery) is kept here
and re-published on every connect, because a broker restarted without
persistence forgets it.

A broker outage is not an error: `MqttPublisher.publish` never raises for it.
QoS 0 messages that cannot go out now (disconnected, or `max_queued` QoS 0
messages still waiting for the socket) are dropped and counted in
`MqttPublisher.dropped`; QoS > 0 messages wait in paho's queue, bounded by
``max_queued_messages_set`` (a full queue drops and counts too).

Both entry points take the `config.MqttConfig` that ``load_config`` validated
and resolved (password read, ``client_id`` filled in): defaults live there only.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import messages
from .constants import PAYLOAD_OFFLINE, PAYLOAD_ONLINE, TOPIC_AVAILABILITY
from .core import Message
from .config import MqttConfig, TlsConfig
from .errors import ConfigError

log = logging.getLogger(__name__)

#: Config value -> paho protocol constant.
PROTOCOLS: dict[str, int] = {"3.1.1": paho.MQTTv311, "5": paho.MQTTv5}

#: Reconnect back-off: first retry after the minimum, doubling to the maximum.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: QoS > 0 messages on the wire at once (paho's default); capped by max_queued.
MAX_INFLIGHT = 20
#: Received payloads are logged only this far.
LOG_PAYLOAD_BYTES = 64
#: Commands arrive on <prefix>/<node>/cmd/<name>.
CMD_SUFFIX = "cmd"

OnCommand = Callable[[str], None]


def _preview(payload: bytes) -> str:
    """A payload for a log line: truncated, never trusted to be text."""
    head = bytes(payload[:LOG_PAYLOAD_BYTES])
    more = f"... ({len(payload)} bytes)" if len(payload) > LOG_PAYLOAD_BYTES else ""
    return f"{head!r}{more}"


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verifying by default; ``insecure`` skips the hostname check, and with no
    ca_file also the certificate chain (a self-signed broker)."""
    ca_file = tls.ca_file or None
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls: cannot load certificates ({exc})") from exc
    if tls.insecure:
        ctx.check_hostname = False
        if ca_file is None:
            ctx.verify_mode = ssl.CERT_NONE
        log.warning(
            "mqtt.tls.insecure is set: the broker's %s is not verified; "
            "anyone on the network path can impersonate it",
            "hostname" if ca_file else "certificate",
        )
    return ctx


def _new_client(cfg: MqttConfig, client_id: str) -> paho.Client:
    """A paho client with protocol, credentials and TLS set; not connected."""
    protocol = PROTOCOLS[cfg.protocol]  # config.py allows only these keys
    client = paho.Client(
        callback_api_version=paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=True if protocol != paho.MQTTv5 else None,
    )
    client.enable_logger(log.getChild("paho"))
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls.enabled:
        # paho takes its hostname check from the context's check_hostname.
        client.tls_set_context(_tls_context(cfg.tls))
    return client


@dataclass
class _Retained:
    payload: bytes
    qos: int
    seq: int  # bumped on every update, so on_connect can tell what changed meanwhile


class MqttPublisher:
    """Publishes `core.Message`s under ``<topic_prefix>/<node_id>/`` and takes commands.

    `on_command` is called with a command name (``"snapshot"``) on paho's
    network thread: it must only set a flag or enqueue, never run inference.
    Use `start` / `stop`, or the publisher as a context manager.
    """

    def __init__(
        self,
        mqtt_cfg: MqttConfig,
        node_id: str,
        *,
        on_command: OnCommand | None = None,
        discovery: list[Message] | None = None,
        reconnect_min_s: int = RECONNECT_MIN_S,
        reconnect_max_s: int = RECONNECT_MAX_S,
    ) -> None:
        self.node_id = node_id
        self.host = mqtt_cfg.host
        self.port = mqtt_cfg.port
        if not messages.is_node_id(node_id):
            raise ConfigError(f"node.id: {node_id!r} must be 1-64 letters, digits, '_' or '-'")
        self._topic_prefix = mqtt_cfg.topic_prefix
        self._on_command = on_command
        self._max_queued = mqtt_cfg.max_queued
        self._keepalive = mqtt_cfg.keepalive_s

        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._dropped = 0
        self._retained: dict[str, _Retained] = {}  # full topic -> latest retained state
        self._seq = 0
        self._pending: dict[int, int] = {}  # mid -> qos, handed to paho, not yet sent/acked
        self._early: set[int] = set()  # mids whose on_publish beat the registration
        self._qos0_pending = 0
        self._stopping = False
        self._started = False
        self._connect_failures = 0

        self.availability_topic = self.topic(TOPIC_AVAILABILITY)
        self.command_topic = self.topic(f"{CMD_SUFFIX}/#")
        self._discovery: list[Message] = []
        self._ha_status_topic: str | None = None
        if mqtt_cfg.home_assistant:
            # The daemon passes the discovery of what it runs (presence, falls, zones).
            self._discovery = discovery if discovery is not None else messages.discovery_messages(
                node_id, mqtt_cfg.topic_prefix, mqtt_cfg.discovery_prefix, mqtt_cfg.publish_snapshot
            )
            self._ha_status_topic = messages.ha_status_topic(mqtt_cfg.discovery_prefix)

        client = _new_client(mqtt_cfg, mqtt_cfg.client_id)
        client.will_set(self.availability_topic, PAYLOAD_OFFLINE, qos=1, retain=True)
        client.max_queued_messages_set(self._max_queued)
        client.max_inflight_messages_set(min(MAX_INFLIGHT, self._max_queued))
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client

    def __repr__(self) -> str:  # no credentials, ever
        state = "connected" if self.connected else "disconnected"
        return f"MqttPublisher({self.host}:{self.port}, node={self.node_id!r}, {state})"

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> "MqttPublisher":
        """Begin connecting in paho's thread; returns at once even if the broker is down."""
        if self._started:
            return self
        self._started = True
        kwargs: dict[str, Any] = {}
        if self._client.protocol == paho.MQTTv5:
            kwargs["clean_start"] = True
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive, **kwargs)
        self._client.loop_start()
        log.info("MQTT: connecting to %s:%d as %s", self.host, self.port, self.topic(""))
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Say ``offline`` (retained, QoS 1), wait up to `timeout` for it, disconnect."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        if self.connected:
            info = self._client.publish(self.availability_topic, PAYLOAD_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (ValueError, RuntimeError) as exc:
                log.warning("MQTT: could not send offline: %s", exc)
            if not info.is_published():
                log.warning("MQTT: offline not acknowledged within %.1f s", timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        log.info("MQTT: stopped (%d messages dropped)", self.dropped)

    def __enter__(self) -> "MqttPublisher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected (and retained state re-sent); False after `timeout` s."""
        return self._connected.wait(timeout)

    @property
    def dropped(self) -> int:
        """Messages given up on: QoS 0 while disconnected or backed up, queue full."""
        with self._lock:
            return self._dropped

    def topic(self, suffix: str) -> str:
        return messages.node_topic(self._topic_prefix, self.node_id, suffix)

    # --- publishing ------------------------------------------------------------------

    def publish(self, msg: Message) -> bool:
        """Send `msg` under this node's prefix; False when it was dropped. Never raises for an outage.

        Retained messages are remembered (latest per topic) and sent on the
        next connect when the broker is away now; they are not counted as dropped.
        """
        topic = self.topic(msg.topic)
        if msg.retain:
            with self._lock:
                self._seq += 1
                self._retained[topic] = _Retained(msg.payload, msg.qos, self._seq)
                if not self._connected.is_set():
                    return True
            return self._send(topic, msg.payload, msg.qos, True, msg.expiry_s)
        if msg.qos == 0:
            with self._lock:
                if not self._connected.is_set() or self._qos0_pending >= self._max_queued:
                    self._dropped += 1
                    return False
        return self._send(topic, msg.payload, msg.qos, False, msg.expiry_s)

    def _properties(self, expiry_s: int | None) -> Properties | None:
        if self._client.protocol != paho.MQTTv5 or not expiry_s:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = int(expiry_s)
        return props

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, expiry_s: int | None = None) -> bool:
        """Hand one message to paho and track it until paho reports it sent."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=self._properties(expiry_s))
        except ValueError as exc:  # bad topic or oversized payload: a bug, not an outage
            log.error("MQTT: cannot publish to %s: %s", topic, exc)
            with self._lock:
                self._dropped += 1
            return False
        queued = info.rc == paho.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN)
        with self._lock:
            if not queued:
                self._dropped += 1
                return False
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending[info.mid] = qos
                if qos == 0:
                    self._qos0_pending += 1
        return True

    # --- paho callbacks (paho's network thread) ----------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error(
                "MQTT: broker %s:%d refused the connection: %s", self.host, self.port, reason_code
            )
            return
        self._connect_failures = 0
        log.info("MQTT: connected to %s:%d", self.host, self.port)
        client.subscribe(self.command_topic, qos=1)
        if self._ha_status_topic:
            client.subscribe(self._ha_status_topic, qos=1)
        self._send(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"), 1, True)
        self._send_discovery()
        # Re-send retained state; anything updated meanwhile is sent again
        # before publish() may go direct, so the broker ends up with the latest.
        sent: dict[str, int] = {}
        while True:
            with self._lock:
                todo = [(t, r) for t, r in self._retained.items() if sent.get(t) != r.seq]
                if not todo:
                    self._connected.set()
                    return
            for topic, entry in todo:
                self._send(topic, entry.payload, entry.qos, True)
                sent[topic] = entry.seq

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._connect_failures += 1
        level = logging.WARNING if self._connect_failures == 1 else logging.DEBUG
        log.log(level, "MQTT: cannot reach broker %s:%d; retrying in the background", self.host, self.port)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            was_connected = self._connected.is_set()
            self._connected.clear()
            lost = [mid for mid, qos in self._pending.items() if qos == 0]
            for mid in lost:
                del self._pending[mid]
            self._dropped += len(lost)
            self._qos0_pending = 0
            self._early.clear()
        if self._stopping:
            return
        if was_connected:
            log.warning("MQTT: lost connection to %s:%d (%s); reconnecting", self.host, self.port, reason_code)
        else:
            log.debug("MQTT: disconnected before ready (%s)", reason_code)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            qos = self._pending.pop(mid, None)
            if qos is None:
                self._early.add(mid)
            elif qos == 0:
                self._qos0_pending -= 1
            if reason_code.is_failure:
                self._dropped += 1
        if reason_code.is_failure:
            log.warning("MQTT: broker rejected message %d: %s", mid, reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if self._ha_status_topic and topic == self._ha_status_topic:
            if msg.payload.strip() == PAYLOAD_ONLINE.encode("ascii"):
                log.info("MQTT: Home Assistant is online; re-sending discovery")
                self._send_discovery()
            return
        cmd_prefix = self.topic(f"{CMD_SUFFIX}/")
        if not topic.startswith(cmd_prefix):
            log.warning("MQTT: ignoring message on unexpected topic %s", topic)
            return
        if msg.retain:
            log.warning(
                "MQTT: ignoring retained command on %s (clear it with an empty retained message)", topic
            )
            return
        suffix = topic[len(self.topic("")) :]
        try:
            command = messages.parse_command(suffix, msg.payload)
        except ValueError as exc:
            log.warning("MQTT: ignoring %s %s: %s", topic, _preview(msg.payload), exc)
            return
        if command is None or self._on_command is None:
            return
        try:
            self._on_command(command)
        except Exception:  # a bad handler must not kill paho's thread
            log.exception("MQTT: command handler failed for %s", command)

    def _send_discovery(self) -> None:
        for m in self._discovery:
            self._send(m.topic, m.payload, m.qos, m.retain)


# --- edgepose check ----------------------------------------------------------------------


def probe(mqtt_cfg: MqttConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """Try one real connection; (True, "connected to ...") or (False, why not).

    For ``edgepose check``: the reason names the host and port and says what
    went wrong (refused, unresolvable, timed out, TLS, credentials).
    """
    host, port = mqtt_cfg.host, mqtt_cfg.port
    where = f"{host}:{port}"
    # Not the daemon's own id: the broker would drop a running daemon to let us in.
    client_id = f"{mqtt_cfg.client_id}-check" if mqtt_cfg.client_id else ""
    try:
        client = _new_client(mqtt_cfg, client_id)
    except ConfigError as exc:
        return False, str(exc)
    client.connect_timeout = timeout
    answered = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(c: paho.Client, u: Any, flags: Any, reason_code: Any, props: Any) -> None:
        result["connack"] = reason_code
        answered.set()

    def on_disconnect(c: paho.Client, u: Any, flags: Any, reason_code: Any, props: Any) -> None:
        result["closed"] = reason_code
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(host, port, keepalive=mqtt_cfg.keepalive_s)
    except ConnectionRefusedError:
        return False, f"cannot reach broker {where} (connection refused)"
    except socket.gaierror as exc:
        return False, f"cannot resolve broker host {host!r} ({exc.strerror or exc})"
    except TimeoutError:
        return False, f"cannot reach broker {where} (no answer within {timeout:g} s)"
    except ssl.SSLCertVerificationError as exc:
        return False, f"TLS: broker {where} certificate not trusted ({exc.verify_message or exc})"
    except ssl.SSLError as exc:
        return False, f"TLS handshake with {where} failed ({exc.reason or exc})"
    except OSError as exc:
        return False, f"cannot reach broker {where} ({exc.strerror or exc})"
    # Drive the network loop here (no thread, no automatic reconnect) until CONNACK.
    deadline = time.monotonic() + timeout
    try:
        while not answered.is_set() and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                break
        if "connack" not in result:
            what = "closed it" if "closed" in result else f"sent no reply within {timeout:g} s"
            return False, (
                f"{where} accepted TCP but {what} instead of an MQTT CONNACK "
                "(not an MQTT broker port, or one that expects TLS?)"
            )
        reason = result["connack"]
        if reason.is_failure:
            return False, f"broker {where} refused the connection ({reason})"
        secure = ", TLS" if mqtt_cfg.tls.enabled else ""
        return True, f"connected to {where} (MQTT {mqtt_cfg.protocol}{secure})"
    finally:
        client.disconnect()


__all__ = ["MqttPublisher", "PROTOCOLS", "probe"]
