"""`MqttPublisher`: the node's one MQTT connection, its availability, and what goes over it.

It connects in paho's network thread (``connect_async`` + ``loop_start``), so a
missing broker never blocks start-up or the camera loop. What is published
takes one of three paths (delivery.py); commands (commands.py) and Home
Assistant discovery (discovery.py) ride on the same connection.

Availability: ``online`` (retained, QoS 1) on every connect, before anything
else; ``offline`` as the will and at a clean stop. The old session's will can
land *after* our ``online`` when a half-open link is noticed by the broker late
(keepalive x 1.5): we subscribe to our own availability topic and answer any
live ``offline`` seen while connected with ``online`` (the retained one the
subscription brings is the last run's, already replaced by our ``online``),
and re-send ``online`` once after keepalive x 1.5 anyway (for brokers whose
ACL forbids the subscription).

A failed connect names its cause at WARNING once, then at DEBUG while the
cause stays the same; paho's own log lines for normal reconnect and shutdown
states are demoted to DEBUG. A packet over the limit (transport.py) drops the
connection; a retained message that big on the node's own command topics would
come back on every subscribe, so the next connection clears it first
(retained commands are never acted on anyway).

Both entry points take the `config.MqttConfig` that ``load_config`` validated
and resolved (password read, ``client_id`` filled in): defaults live there only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config import MqttConfig
from ..constants import PAYLOAD_OFFLINE, PAYLOAD_ONLINE, TOPIC_AVAILABILITY
from ..core import Message
from ..errors import ConfigError
from .commands import CMD_SUFFIX, CommandGate, OnCommand
from .delivery import Delivery, OnAck
from .discovery import Announcer, discovery_messages, ha_status_topic
from .topics import is_node_id, node_topic
from .transport import (
    _PAHO_ROUTINE,
    MAX_INCOMING_PACKET_BYTES,
    MAX_INFLIGHT,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
    STABLE_CONNECTION_S,
    Backoff,
    RefusedPacket,
    _connack_cause,
    connect_error_cause,
    new_client,
)

log = logging.getLogger(__name__)

OnConnection = Callable[[bool], None]
OnDiscovery = Callable[[list[Message]], None]


class MqttPublisher:
    """Publishes `core.Message`s under ``<topic_prefix>/<node_id>/`` and takes commands.

    `on_command` is called with a command name (``"snapshot"``) on paho's
    network thread: it must only set a flag or enqueue, never run inference.
    Use `start` / `stop`, or the publisher as a context manager.
    ``command_cooldown_s`` / ``command_cooldowns``: see `commands.CommandGate`.

    Home Assistant discovery follows the config across restarts: the caller
    passes discovery that already removes what it remembers announcing (the
    default, without it: the bare node); `discovery.Announcer` reads back what
    the broker holds and tells `on_discovery` when it removed more.
    """

    def __init__(
        self,
        mqtt_cfg: MqttConfig,
        node_id: str,
        *,
        on_command: OnCommand | None = None,
        discovery: list[Message] | None = None,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        command_cooldown_s: float = 0.0,
        command_cooldowns: dict[str, float] | None = None,
        on_discovery: OnDiscovery | None = None,
    ) -> None:
        self.node_id = node_id
        self.host = mqtt_cfg.host
        self.port = mqtt_cfg.port
        if not is_node_id(node_id):
            raise ConfigError(f"node.id: {node_id!r} must be 1-64 letters, digits, '_' or '-'")
        self._topic_prefix = mqtt_cfg.topic_prefix
        self._keepalive = mqtt_cfg.keepalive_s
        self._tls = mqtt_cfg.tls.enabled
        client = new_client(mqtt_cfg, mqtt_cfg.client_id)
        self._client = client
        self._delivery = Delivery(client, max_queued=mqtt_cfg.max_queued)
        self._subscribed = threading.Event()  # SUBACK of this connection: commands are heard
        self._listeners: list[OnConnection] = []
        self._stopping = False
        self._started = False
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(reconnect_min_s, max(reconnect_min_s, reconnect_max_s))
        self._connected_at: float | None = None
        self._attempt_reported = False
        self._last_cause: str | None = None
        self._recheck: threading.Timer | None = None
        self._refused = False  # this connection is being dropped for a packet over the limit
        self._clear_on_connect: str | None = None  # an oversized retained command to clear

        self.availability_topic = self.topic(TOPIC_AVAILABILITY)
        self.command_topic = self.topic(f"{CMD_SUFFIX}/#")
        self._commands = CommandGate(self.topic(""), on_command, cooldown_s=command_cooldown_s,
                                     cooldowns=command_cooldowns, count=self._delivery.count)
        self._announcer: Announcer | None = None
        if mqtt_cfg.home_assistant:
            # The daemon passes the discovery of what it runs (presence, falls, zones).
            if discovery is None:
                discovery = discovery_messages(node_id, mqtt_cfg.topic_prefix, mqtt_cfg.discovery_prefix,
                                               mqtt_cfg.publish_snapshot)
            self._announcer = Announcer(
                discovery, ha_status_topic(mqtt_cfg.discovery_prefix),
                lambda m: self._delivery.send_now(m.topic, m.payload, m.qos, m.retain), on_discovery)
        self._set_up(client)

    def _set_up(self, client: paho.Client) -> None:
        client.will_set(self.availability_topic, PAYLOAD_OFFLINE, qos=1, retain=True)
        # Unbounded in paho: the live path is bounded here, retained state by its topics,
        # the outbox by its own window. A cap in paho would refuse `online` (issue 8).
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.reconnect_delay_set(self._backoff.next(), self._backoff.cap_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_pre_connect = self._on_pre_connect
        client.on_subscribe = self._on_subscribe
        client.on_log = self._on_log
        client.on_packet_refused = self._on_packet_refused

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
            props = Properties(PacketTypes.CONNECT)
            props.MaximumPacketSize = MAX_INCOMING_PACKET_BYTES
            kwargs["properties"] = props
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive, **kwargs)
        self._client.loop_start()
        # paho keeps its network thread here; we hold it too, for `alive` (supervision).
        self._thread = getattr(self._client, "_thread", None)
        log.info("MQTT: connecting to %s:%d as %s", self.host, self.port, self.topic(""))
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Say ``offline`` (retained, QoS 1), wait up to `timeout` for it, disconnect."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        self._cancel_recheck()
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
        self._delivery.connected.clear()
        self._subscribed.clear()
        log.info("MQTT: stopped (%d messages dropped)", self.dropped)

    def __enter__(self) -> "MqttPublisher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._delivery.connected.is_set()

    @property
    def alive(self) -> bool:
        """paho's network thread runs (or we were stopped on purpose): for a supervisor."""
        if not self._started or self._stopping:
            return True
        return self._thread is not None and self._thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected, retained state re-sent and the command subscription
        acknowledged; False after `timeout` s."""
        return self._subscribed.wait(timeout) and self.connected

    @property
    def dropped(self) -> int:
        """Messages given up on: live messages not sent or unconfirmed, refused, rejected."""
        return self._delivery.dropped

    def stats(self) -> dict[str, int | bool]:
        """Counters for the stats message (see the daemon wiring notes)."""
        with self._delivery.lock:
            out: dict[str, int | bool] = dict(self._delivery.counts)
        out["commands_log_suppressed"] = self._commands.log.suppressed
        out["connected"] = self.connected
        return out

    def add_connection_listener(self, listener: OnConnection) -> None:
        """`listener(True)` after each connect (online sent), `listener(False)` on each loss;
        called on paho's thread: it must only set a flag or enqueue."""
        self._listeners.append(listener)

    def topic(self, suffix: str) -> str:
        return node_topic(self._topic_prefix, self.node_id, suffix)

    # --- publishing ------------------------------------------------------------------

    def publish(self, msg: Message) -> bool:
        """Send `msg` under this node's prefix; False when it was dropped. Never raises for an outage.

        Retained messages are state: the latest per topic is kept and sent now
        or on the next connect; they are never refused nor counted as dropped.
        QoS 0 messages are the live stream; QoS 1 non-retained messages that do
        not go through the outbox wait in paho's queue, bounded by ``max_queued``.
        """
        return self._delivery.publish(self.topic(msg.topic), msg)

    def publish_acked(self, suffix: str, payload: bytes, on_ack: OnAck) -> bool:
        """For the outbox: QoS 1 on ``<prefix>/<node>/<suffix>``; `on_ack(ok)` on paho's thread
        once the broker answered (ok False: an MQTT 5 negative PUBACK). False (nothing
        sent) while disconnected: the caller keeps the message and tries again after
        a connect. Never refused for queue size: the outbox bounds what it hands over.
        """
        return self._delivery.publish_acked(self.topic(suffix), payload, on_ack)

    # --- paho callbacks (paho's network thread) ----------------------------------------

    def _on_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        self._attempt_reported = False

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:  # e.g. an ACL: commands or the late-will check will not work
            log.warning("MQTT: broker refused a subscription (%s); commands may not arrive", ", ".join(refused))
        if self.connected:
            self._subscribed.set()

    def _on_log(self, client: paho.Client, userdata: Any, level: int, buf: str) -> None:
        """paho's log: routine connection states at DEBUG, never as ERROR; inbound packets
        also prove the broker was alive after what we wrote (see poses_unconfirmed)."""
        if buf.startswith("Received "):
            self._delivery.confirmed()
        if level == paho.MQTT_LOG_ERR:
            if buf.startswith("Caught exception"):  # one of our callbacks raised: a bug
                log.error("MQTT (paho): %s", buf)
            elif buf.startswith(_PAHO_ROUTINE):
                log.debug("MQTT (paho): %s", buf)
            else:
                log.warning("MQTT (paho): %s", buf)
        elif level == paho.MQTT_LOG_WARNING:
            log.warning("MQTT (paho): %s", buf)
        elif log.isEnabledFor(logging.DEBUG - 1):  # paho is chatty: one line per packet
            log.log(logging.DEBUG - 1, "MQTT (paho): %s", buf)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._report_failure(_connack_cause(reason_code, f"{self.host}:{self.port}"))
            return
        self._delivery.count("connects")
        if self._last_cause is not None:
            log.info("MQTT: connected to %s:%d (after: %s)", self.host, self.port, self._last_cause)
        else:
            log.info("MQTT: connected to %s:%d", self.host, self.port)
        self._last_cause = None
        self._connected_at = time.monotonic()
        clear, self._clear_on_connect = self._clear_on_connect, None
        if clear is not None:  # before subscribing, or the broker sends it again at once
            log.warning("MQTT: clearing the oversized retained message on %s", clear)
            self._delivery.send_now(clear, b"")
        # Availability first: published here, before paho re-sends anything it held.
        announcer = self._announcer
        client.subscribe([(self.command_topic, 1), (self.availability_topic, 1)]
                         + [(t, 1) for t in (announcer.subscriptions() if announcer else ())])
        self._delivery.send_now(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"))
        if announcer is not None:
            announcer.send_all()
        self._delivery.on_connected()
        self._schedule_recheck()
        for listener in self._listeners:
            listener(True)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        exc = getattr(client, "last_connect_error", None)
        if exc is None:
            cause = f"cannot connect to {self.host}:{self.port}"
        else:
            cause = connect_error_cause(exc, host=self.host, port=self.port, tls=self._tls)
        self._report_failure(cause)
        self._next_delay()

    def _report_failure(self, cause: str) -> None:
        """WARNING once per distinct cause, then DEBUG; always counted."""
        if self._attempt_reported:
            return
        self._attempt_reported = True
        self._delivery.count("connect_failures")
        if self._stopping:
            return
        if cause != self._last_cause:
            log.warning("MQTT: %s; retrying in the background", cause)
            self._last_cause = cause
        else:
            log.debug("MQTT: %s; retrying", cause)

    def _next_delay(self) -> None:
        delay = self._backoff.next()
        self._client.reconnect_delay_set(delay, delay)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._cancel_recheck()
        self._subscribed.clear()
        was_connected = self._delivery.on_disconnected(self._stopping)
        refused, self._refused = self._refused, False
        if self._stopping:
            return
        if was_connected:
            up = time.monotonic() - (self._connected_at or 0.0)
            if up >= STABLE_CONNECTION_S:
                self._backoff.reset()
            if not refused:  # else _on_packet_refused said why
                log.warning("MQTT: lost connection to %s:%d (%s); reconnecting", self.host, self.port, reason_code)
        else:
            self._report_failure(
                f"{self.host}:{self.port} closed the connection before answering ({reason_code})"
                + ("" if self._tls else f": a TLS-only port? (mqtt.tls.enabled is false)")
            )
        self._next_delay()
        for listener in self._listeners:
            listener(False)

    def _on_packet_refused(self, packet: RefusedPacket) -> None:
        """The broker sent a packet over the limit; the connection is dropped unread."""
        self._refused = True
        self._delivery.count("packets_refused")
        self._commands.log.log(
            logging.WARNING,
            "MQTT: the broker sent %s, over the %d-byte limit: dropped the connection without reading it; "
            "reconnecting", packet.describe(), MAX_INCOMING_PACKET_BYTES,
        )
        if packet.retain and packet.topic is not None and packet.topic.startswith(self._commands.prefix):
            self._clear_on_connect = packet.topic  # it would come back on every subscribe

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._delivery.on_published(mid, bool(reason_code.is_failure))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.availability_topic:
            self._on_availability(msg.payload, retained=bool(msg.retain))
        elif self._announcer is None or not self._announcer.handle(msg.topic, msg.payload, bool(msg.retain)):
            self._commands.handle(msg.topic, msg.payload, bool(msg.retain))

    # --- availability ------------------------------------------------------------------

    def _on_availability(self, payload: bytes, *, retained: bool = False) -> None:
        """Our own availability topic: an ``offline`` while we are connected is the old
        session's will landing late (a half-open link): say ``online`` again.

        A *retained* ``offline`` is what the broker held when we subscribed (the last
        run's clean stop, or a will that fired before then): the ``online`` we publish
        right after subscribing, on the same connection, already replaced it."""
        if bytes(payload).strip() != PAYLOAD_OFFLINE.encode("ascii"):
            return
        if self._stopping or not self.connected:
            return
        if retained:
            log.debug("MQTT: the broker held 'offline' from before this connection; 'online' replaced it")
            return
        self._delivery.count("availability_corrections")
        log.info("MQTT: the broker says this node is offline (a late will); re-publishing online")
        self._delivery.send_now(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"))

    def _schedule_recheck(self) -> None:
        """Re-send ``online`` once after keepalive x 1.5 (+1 s), when a late will has fired
        for sure, in case the subscription to our own topic is not allowed."""
        self._cancel_recheck()
        timer = threading.Timer(self._keepalive * 1.5 + 1.0, self._recheck_online)
        timer.daemon = True
        self._recheck = timer
        timer.start()

    def _cancel_recheck(self) -> None:
        timer, self._recheck = self._recheck, None
        if timer is not None:
            timer.cancel()

    def _recheck_online(self) -> None:
        if self.connected and not self._stopping:
            self._delivery.send_now(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"))
