"""The MQTT adapter: the only module that imports paho-mqtt (>= 2).

`MqttPublisher` connects in paho's network thread (``connect_async`` +
``loop_start``), so a missing broker never blocks start-up or the camera loop.

Three paths, so telemetry can never starve what must get through:

- **Availability and retained state** (``online``, person count, stats,
  snapshot, Home Assistant discovery). Kept here, latest value per topic, and
  re-published on every connect (a broker restarted without persistence forgot
  them). At most one message per topic is in paho's queue at a time (a newer
  value waits for the older one's PUBACK), so this path is bounded by the
  number of topics and is never refused: paho's own queue is left unbounded and
  the live path below is bounded here instead. The old session's will
  (``offline``) can land *after* our ``online`` when a half-open link is
  noticed by the broker late (keepalive x 1.5): we subscribe to our own
  availability topic and answer any live ``offline`` seen while connected with
  ``online`` (the retained one the subscription brings is the last run's, already
  replaced by our ``online``), and re-send ``online`` once after keepalive x 1.5 anyway (for
  brokers whose ACL forbids the subscription).
- **Live stream** (``poses``, QoS 0): dropped and counted when disconnected or
  when `max_queued` messages still wait for the socket; messages written into
  a socket that then died, with no packet from the broker after them, are
  counted too (``poses_unconfirmed``).
- **Acknowledged delivery** for the disk outbox (`publish_acked`): QoS 1, the
  caller is told when the broker acknowledged (PUBACK) and removes the message
  only then. paho re-sends unacknowledged QoS 1 messages after a reconnect.

Reconnects use bounded exponential back-off with jitter (cap 2 s);
a failed connect names its cause (TLS verification, hostname mismatch,
refused credentials, refused connection, unknown host, TLS to a plain port)
at WARNING once, then at DEBUG while the cause stays the same. paho's own log
lines for normal reconnect and shutdown states are demoted to DEBUG.

Bounded inputs: no incoming packet over `MAX_INCOMING_PACKET_BYTES` is ever
read into memory. On MQTT 5 the CONNECT announces it as the Maximum Packet
Size, so the broker never forwards a bigger one. On both versions the client
follows MQTT's framing in the bytes it receives (`PacketFraming`): when a
packet's fixed header declares more, the connection is dropped before its body
is read (only a PUBLISH's topic name, at most 64 KiB, to say where it came
from) and paho reconnects with the usual back-off. A retained message that big
on the node's own command topics would come back on every subscribe: the next
connection clears it first (retained commands are never acted on anyway).
Commands obey a cooldown per command, and invalid ones are logged at a bounded
rate.

Both entry points take the `config.MqttConfig` that ``load_config`` validated
and resolved (password read, ``client_id`` filled in): defaults live there only.
"""

from __future__ import annotations

import errno
import json
import logging
import random
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

#: Reconnect back-off: the first retry after about the minimum, doubling up to the
#: cap, each delay drawn from [d/2, d] (jitter, so nodes do not reconnect in step).
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 2.0  # the first message after a broker restart goes out within ~3 s
#: A connection that lasted this long resets the back-off; a shorter one (a client
#: id taken over by another node, say) keeps backing off.
STABLE_CONNECTION_S = 10.0
#: TCP connect and TLS handshake timeout per attempt.
CONNECT_TIMEOUT_S = 5.0
#: QoS > 0 messages on the wire at once (paho's default).
MAX_INFLIGHT = 20
#: The largest packet the node reads (the MQTT 5 Maximum Packet Size it announces,
#: and the bound `PacketFraming` enforces on 3.1.1): commands are at most
#: messages.MAX_COMMAND_BYTES, topics are bounded by the config.
MAX_INCOMING_PACKET_BYTES = 16 * 1024
#: MQTT control packet type of PUBLISH (the high nibble of a packet's first byte).
PACKET_PUBLISH = 3
#: Received payloads are logged only this far.
LOG_PAYLOAD_BYTES = 64
#: Invalid or throttled commands: at most this many log lines per window.
COMMAND_LOG_BURST = 5
COMMAND_LOG_WINDOW_S = 60.0
#: Commands arrive on <prefix>/<node>/cmd/<name>.
CMD_SUFFIX = "cmd"

OnCommand = Callable[[str], None]
OnAck = Callable[[bool], None]
OnConnection = Callable[[bool], None]
OnDiscovery = Callable[[list[Message]], None]


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


@dataclass(frozen=True)
class RefusedPacket:
    """An incoming packet whose fixed header declared more than the limit: never read."""

    packet_type: int  # 1-15 (3: PUBLISH)
    size: int  # bytes the whole packet would take (fixed header included)
    retain: bool = False  # a PUBLISH with RETAIN set: a retained message, sent because we subscribed
    topic: str | None = None  # a PUBLISH's topic name, when it could be read

    def describe(self) -> str:
        size = f"{self.size / 2**20:.1f} MB" if self.size >= 2**20 else f"{self.size} bytes"
        if self.packet_type != PACKET_PUBLISH:
            return f"a {size} packet of type {self.packet_type}"
        retained = "retained " if self.retain else ""
        return f"a {size} {retained}message on {self.topic if self.topic is not None else 'a topic not read'}"


class PacketFraming:
    """Follows MQTT's framing in the bytes received on one connection, and stops at
    the first packet whose fixed header declares more than `limit` bytes in all.

    Pure: `feed` every chunk read from the socket, in order; after a header over the
    limit, `refused` holds (first byte, packet size) and the caller must read no more
    (it drops the connection). `reset` for a new connection. The remaining
    length is MQTT's variable-length integer: 7 bits a byte, low bits first, at most
    4 bytes (paho refuses a 5th before anything would be allocated).
    """

    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError(f"a packet limit below 2 bytes refuses every packet, got {limit}")
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self._first: int | None = None  # first byte of the packet whose header is being read
        self._length = 0
        self._length_bytes = 0
        self._body_left = 0  # bytes of the current packet's body still to come
        self.refused: tuple[int, int] | None = None

    def feed(self, data: bytes | bytearray) -> None:
        if self.refused is not None:
            return  # the caller drops the connection: nothing after it is framed
        i, n = 0, len(data)
        while i < n:
            if self._body_left:
                step = min(self._body_left, n - i)
                self._body_left -= step
                i += step
                continue
            byte = data[i]
            i += 1
            if self._first is None:
                self._first, self._length, self._length_bytes = byte, 0, 0
                continue
            self._length |= (byte & 0x7F) << (7 * self._length_bytes)
            self._length_bytes += 1
            if byte & 0x80 and self._length_bytes < 4:
                continue
            size = 1 + self._length_bytes + self._length
            first, self._first = self._first, None
            if size > self.limit:
                self.refused = (first, size)
                return
            self._body_left = self._length


class PacketTooLarge(ConnectionAbortedError):
    """Raised into paho's read loop: it closes the socket and reconnects."""


class _Client(paho.Client):
    """paho's client, remembering why the last connect attempt failed, and refusing
    incoming packets over `max_packet_bytes` before reading them.

    paho's network loop catches the exception of a failed (re)connect and calls
    ``on_connect_fail`` without it; we keep it so the log can name the cause.
    Anything but an OSError would end paho's thread for good (a bug, or a value
    paho refuses): it is turned into an OSError so the loop keeps retrying and
    the cause is still logged.

    Every read from the broker goes through paho's ``_sock_recv`` (TLS included:
    it reads the SSL socket), so the bound lives there: the bytes are fed to a
    `PacketFraming`, and once a header declares too much, the next read (paho's
    read of that body) raises `PacketTooLarge` instead; paho treats it as a lost
    connection. ``on_packet_refused`` is told first, on paho's thread.
    """

    last_connect_error: BaseException | None = None
    on_packet_refused: Callable[[RefusedPacket], None] | None = None

    def __init__(self, *args: Any, max_packet_bytes: int = MAX_INCOMING_PACKET_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._framing = PacketFraming(max_packet_bytes)
        self._refused_head = bytearray()  # a refused PUBLISH's topic length and name, as read so far

    def _sock_recv(self, bufsize: int) -> bytes:
        framing = self._framing
        if framing.refused is None:
            data = super()._sock_recv(bufsize)
            framing.feed(data)
            return data
        first, size = framing.refused
        topic = None
        if first >> 4 == PACKET_PUBLISH:
            topic = self._read_topic(size)  # BlockingIOError: paho waits for more bytes and comes back
        packet = RefusedPacket(first >> 4, size, bool(first & 0x01) and first >> 4 == PACKET_PUBLISH, topic)
        hook = self.on_packet_refused
        if hook is not None:
            hook(packet)
        raise PacketTooLarge(f"refused {packet.describe()} (over {framing.limit} bytes)")

    def _read_topic(self, size: int) -> str | None:
        """A refused PUBLISH's topic name: its two-byte length, then the name (at most
        64 KiB, read in the space paho would have used for the whole packet)."""
        head = self._refused_head
        while True:
            need = 2 if len(head) < 2 else 2 + int.from_bytes(head[:2], "big")
            if len(head) >= need or need > size:
                break
            chunk = super()._sock_recv(need - len(head))
            if not chunk:  # the broker closed the connection: the name stays unknown
                break
            head += chunk
        if len(head) < 2 or len(head) != 2 + int.from_bytes(head[:2], "big"):
            return None
        return bytes(head[2:]).decode("utf-8", "replace")

    def reconnect(self) -> Any:
        self.last_connect_error = None
        self._framing.reset()
        self._refused_head = bytearray()
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.last_connect_error = exc
            raise OSError(f"{type(exc).__name__}: {exc}") from exc


def _new_client(cfg: MqttConfig, client_id: str) -> _Client:
    """A paho client with protocol, credentials and TLS set; not connected."""
    protocol = PROTOCOLS[cfg.protocol]  # config.py allows only these keys
    client = _Client(
        callback_api_version=paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=True if protocol != paho.MQTTv5 else None,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls.enabled:
        # paho takes its hostname check from the context's check_hostname.
        client.tls_set_context(_tls_context(cfg.tls))
    client.connect_timeout = CONNECT_TIMEOUT_S
    client.on_socket_open = _send_without_delay
    return client


def _send_without_delay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY on each new socket: every publish is a whole message, to go out now.

    With Nagle's algorithm on (paho's default), a message written while the broker
    has not yet acknowledged the previous segment waits for that ACK, which the
    broker's delayed ACK can hold back for up to 40 ms. Measured with `bench --e2e`
    (vtest.avi, a frame every 21-26 ms; 9 runs with Nagle, 7 without): capture to
    subscriber p95 48-52 ms with it, 38-44 without; p50 unchanged beyond the noise.
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket: nothing to turn off
        pass


# --- why a connection failed ---------------------------------------------------------------

_PAHO_ROUTINE = (
    "Client is not connected",  # paho's loop after a close: a normal reconnect/shutdown state
    "failed to receive on socket",
    "timeout on socket",
    "Connection failed, retrying",
)


def connect_error_cause(exc: BaseException, *, host: str, port: int, tls: bool) -> str:
    """One line naming why a connect attempt failed, for a log or ``edgepose check``."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        if exc.verify_code == 62 or "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
            return (f"TLS: the broker's certificate does not name {host!r} (hostname mismatch: {detail}); "
                    "connect by the name in the certificate")
        return f"TLS: the broker's certificate is not trusted ({detail}); check mqtt.tls.ca_file"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE") or isinstance(
            exc, ssl.SSLEOFError
        ):
            return f"TLS handshake with {where} failed ({reason}): is port {port} a plain MQTT port, not TLS?"
        return f"TLS handshake with {where} failed ({reason})"
    if tls and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return f"TLS handshake with {where} failed (connection reset): is port {port} a plain MQTT port, not TLS?"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach broker {where}: connection refused (is the broker running and listening on port {port}?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach broker {where}: unknown host {host!r} ({exc.strerror or exc})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"cannot reach broker {where}: no answer within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"cannot reach broker {where}: {exc.strerror}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach broker {where}: {exc.strerror}"
    return f"cannot connect to {where} ({type(exc).__name__}: {exc})"


def _connack_cause(reason_code: Any, where: str) -> str:
    text = str(reason_code)
    lowered = text.lower()
    if "user name or password" in lowered or "not authori" in lowered:
        return f"broker {where} refused the credentials ({text}); check mqtt.username and the password"
    if "identifier" in lowered:
        return f"broker {where} refused the client id ({text}); check mqtt.client_id"
    return f"broker {where} refused the connection ({text})"


# --- small helpers ---------------------------------------------------------------------------


class Backoff:
    """Bounded exponential back-off with jitter: each delay is drawn from [d/2, d]."""

    def __init__(self, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(f"back-off needs 0 < base <= cap, got {base_s}, {cap_s}")
        self.base_s, self.cap_s, self._rng = base_s, cap_s, rng
        self._step = 0

    def next(self) -> float:
        delay = min(self.cap_s, self.base_s * (2 ** min(self._step, 30)))
        self._step += 1
        return delay * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self._step = 0


class RateLimitedLog:
    """At most `burst` lines per `window_s`; then one line saying how many were held back."""

    def __init__(self, logger: logging.Logger, burst: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._burst, self._window_s, self._clock = logger, burst, window_s, clock
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._count = 0
        self.suppressed = 0  # total, for stats

    def log(self, level: int, msg: str, *args: Any) -> bool:
        now = self._clock()
        with self._lock:
            held = 0
            if now - self._window_start >= self._window_s:
                held = self._count - self._burst if self._count > self._burst else 0
                self._window_start, self._count = now, 0
            self._count += 1
            allowed = self._count <= self._burst
            if not allowed:
                self.suppressed += 1
        if held:
            self._log.log(level, "MQTT: %d similar messages not logged in the last %.0f s", held, self._window_s)
        if allowed:
            self._log.log(level, msg, *args)
        return allowed


@dataclass
class _Retained:
    payload: bytes
    qos: int
    seq: int  # bumped on every update
    sent_seq: int = 0  # the seq handed to paho last (0: never, or to be re-sent)
    inflight_mid: int | None = None  # handed to paho, not yet acknowledged


@dataclass
class _Pending:
    kind: str  # "qos0" | "direct" | "retained" | "acked" | "availability"
    topic: str = ""
    on_ack: OnAck | None = None


class MqttPublisher:
    """Publishes `core.Message`s under ``<topic_prefix>/<node_id>/`` and takes commands.

    `on_command` is called with a command name (``"snapshot"``) on paho's
    network thread: it must only set a flag or enqueue, never run inference.
    Use `start` / `stop`, or the publisher as a context manager.
    ``command_cooldown_s``: a command of the same name is acted on at most once
    per this many seconds (the daemon passes ``snapshots.cooldown_s``);
    ``command_cooldowns`` sets it per command name instead.

    Home Assistant discovery follows the config across restarts: the caller
    passes discovery that already removes what it remembers announcing; on
    every connect we also read back the retained discovery config the broker
    holds (it arrives before our own, which follows the subscription on the
    same connection), and if it configures components ours does not, send ours
    again with those removed and tell `on_discovery` (the daemon remembers it).
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
        if not messages.is_node_id(node_id):
            raise ConfigError(f"node.id: {node_id!r} must be 1-64 letters, digits, '_' or '-'")
        self._topic_prefix = mqtt_cfg.topic_prefix
        self._on_command = on_command
        self._max_queued = mqtt_cfg.max_queued
        self._keepalive = mqtt_cfg.keepalive_s
        self._tls = mqtt_cfg.tls.enabled
        self._command_cooldown_s = command_cooldown_s
        self._command_cooldowns = dict(command_cooldowns or {})
        self._on_discovery = on_discovery

        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # SUBACK of this connection: commands are heard
        self._retained: dict[str, _Retained] = {}  # full topic -> latest retained state
        self._seq = 0
        self._pending: dict[int, _Pending] = {}  # mid -> what it was, handed to paho, not yet sent/acked
        self._early: dict[int, bool] = {}  # mid -> failed, for acks that beat the registration
        self._qos0_pending = 0
        self._direct_pending = 0
        self._qos0_unconfirmed = 0  # QoS 0 written since the broker last sent us anything
        self._listeners: list[OnConnection] = []
        self._stopping = False
        self._started = False
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(reconnect_min_s, max(reconnect_min_s, reconnect_max_s))
        self._connected_at: float | None = None
        self._attempt_reported = False
        self._last_cause: str | None = None
        self._recheck: threading.Timer | None = None
        self._last_command_at: dict[str, float] = {}
        self._command_log = RateLimitedLog(log, COMMAND_LOG_BURST, COMMAND_LOG_WINDOW_S)
        self._counts = dict.fromkeys(
            ("poses_dropped", "poses_unconfirmed", "refused", "rejected", "availability_corrections",
             "connects", "connect_failures", "commands", "commands_invalid", "commands_throttled",
             "packets_refused"),
            0,
        )
        self._refused = False  # this connection is being dropped for a packet over the limit
        self._clear_on_connect: str | None = None  # an oversized retained command to clear

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
        self._discovery_topics = {m.topic for m in self._discovery}

        client = _new_client(mqtt_cfg, mqtt_cfg.client_id)
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
        self._connected.clear()
        self._subscribed.clear()
        log.info("MQTT: stopped (%d messages dropped)", self.dropped)

    def __enter__(self) -> "MqttPublisher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """paho's network thread runs (or we were stopped on purpose): for a supervisor."""
        if not self._started or self._stopping:
            return True
        return self._thread is not None and self._thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected, retained state re-sent and the command subscription
        acknowledged; False after `timeout` s."""
        return self._subscribed.wait(timeout) and self._connected.is_set()

    @property
    def dropped(self) -> int:
        """Messages given up on: live messages not sent or unconfirmed, refused, rejected."""
        with self._lock:
            c = self._counts
            return c["poses_dropped"] + c["poses_unconfirmed"] + c["refused"] + c["rejected"]

    def stats(self) -> dict[str, int | bool]:
        """Counters for the stats message (see the daemon wiring notes)."""
        with self._lock:
            out: dict[str, int | bool] = dict(self._counts)
        out["commands_log_suppressed"] = self._command_log.suppressed
        out["connected"] = self.connected
        return out

    def add_connection_listener(self, listener: OnConnection) -> None:
        """`listener(True)` after each connect (online sent), `listener(False)` on each loss;
        called on paho's thread: it must only set a flag or enqueue."""
        self._listeners.append(listener)

    def topic(self, suffix: str) -> str:
        return messages.node_topic(self._topic_prefix, self.node_id, suffix)

    # --- publishing ------------------------------------------------------------------

    def publish(self, msg: Message) -> bool:
        """Send `msg` under this node's prefix; False when it was dropped. Never raises for an outage.

        Retained messages are state: the latest per topic is kept and sent now
        or on the next connect; they are never refused nor counted as dropped.
        QoS 0 messages are the live stream; QoS 1 non-retained messages that do
        not go through the outbox wait in paho's queue, bounded by ``max_queued``.
        """
        topic = self.topic(msg.topic)
        if msg.retain:
            self._publish_retained(topic, msg.payload, msg.qos)
            return True
        with self._lock:
            if msg.qos == 0:
                if not self._connected.is_set() or self._qos0_pending >= self._max_queued:
                    self._counts["poses_dropped"] += 1
                    return False
            elif self._direct_pending >= self._max_queued:
                self._counts["refused"] += 1
                return False
        kind = "qos0" if msg.qos == 0 else "direct"
        return self._send(topic, msg.payload, msg.qos, False, _Pending(kind), msg.expiry_s) is not None

    def publish_acked(self, suffix: str, payload: bytes, on_ack: OnAck) -> bool:
        """For the outbox: QoS 1 on ``<prefix>/<node>/<suffix>``; `on_ack(ok)` on paho's thread
        once the broker answered (ok False: an MQTT 5 negative PUBACK). False (nothing
        sent) while disconnected: the caller keeps the message and tries again after
        a connect. Never refused for queue size: the outbox bounds what it hands over.
        """
        if not self._connected.is_set():
            return False
        return self._send(self.topic(suffix), payload, 1, False, _Pending("acked", on_ack=on_ack)) is not None

    def _publish_retained(self, topic: str, payload: bytes, qos: int) -> None:
        with self._lock:
            self._seq += 1
            entry = self._retained.get(topic)
            if entry is None:
                entry = self._retained[topic] = _Retained(payload, qos, self._seq)
            else:
                entry.payload, entry.qos, entry.seq = payload, qos, self._seq
            if not self._connected.is_set() or entry.inflight_mid is not None:
                return  # sent on connect, or when the one in flight is acknowledged
        self._send_retained(topic)

    def _send_retained(self, topic: str) -> None:
        """Hand the latest value of one retained topic to paho, if it is not there already."""
        with self._lock:
            entry = self._retained[topic]
            if entry.inflight_mid is not None or entry.sent_seq == entry.seq:
                return
            payload, qos, seq = entry.payload, entry.qos, entry.seq
            # Marked sent before paho has it: paho's thread may write it and call
            # on_publish before `_send` returns, and `_finish` must then see this value
            # as sent, or it sends it again (and again: one 77 KB snapshot went out 62 times).
            before, entry.sent_seq = entry.sent_seq, seq
            entry.inflight_mid = -1  # reserved until paho gives the mid
        mid = self._send(topic, payload, qos, True, _Pending("retained", topic=topic))
        with self._lock:
            if entry.inflight_mid == -1:  # the ack may already have cleared it
                entry.inflight_mid = mid
            if mid is None:
                entry.inflight_mid = None
                if entry.sent_seq == seq:
                    entry.sent_seq = before

    def _properties(self, expiry_s: int | None) -> Properties | None:
        if self._client.protocol != paho.MQTTv5 or not expiry_s:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = int(expiry_s)
        return props

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, what: _Pending,
              expiry_s: int | None = None) -> int | None:
        """Hand one message to paho and track it until paho reports it sent; its mid, or None."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=self._properties(expiry_s))
        except ValueError as exc:  # bad topic or oversized payload: a bug, not an outage
            log.error("MQTT: cannot publish to %s: %s", topic, exc)
            with self._lock:
                self._counts["refused"] += 1
            return None
        queued = info.rc == paho.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN)
        early_failed: bool | None = None
        with self._lock:
            if not queued:
                self._counts["poses_dropped" if qos == 0 else "refused"] += 1
                return None
            if info.mid in self._early:
                early_failed = self._early.pop(info.mid)
            else:
                self._pending[info.mid] = what
                if what.kind == "qos0":
                    self._qos0_pending += 1
                elif what.kind == "direct":
                    self._direct_pending += 1
        if early_failed is not None:
            self._finish(what, info.mid, early_failed)
        return info.mid

    # --- paho callbacks (paho's network thread) ----------------------------------------

    def _on_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        self._attempt_reported = False

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:  # e.g. an ACL: commands or the late-will check will not work
            log.warning("MQTT: broker refused a subscription (%s); commands may not arrive", ", ".join(refused))
        if self._connected.is_set():
            self._subscribed.set()

    def _on_log(self, client: paho.Client, userdata: Any, level: int, buf: str) -> None:
        """paho's log: routine connection states at DEBUG, never as ERROR; inbound packets
        also prove the broker was alive after what we wrote (see poses_unconfirmed)."""
        if buf.startswith("Received "):
            self._qos0_unconfirmed = 0
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
        with self._lock:
            self._counts["connects"] += 1
        if self._last_cause is not None:
            log.info("MQTT: connected to %s:%d (after: %s)", self.host, self.port, self._last_cause)
        else:
            log.info("MQTT: connected to %s:%d", self.host, self.port)
        self._last_cause = None
        self._connected_at = time.monotonic()
        clear, self._clear_on_connect = self._clear_on_connect, None
        if clear is not None:  # before subscribing, or the broker sends it again at once
            log.warning("MQTT: clearing the oversized retained message on %s", clear)
            self._send(clear, b"", 1, True, _Pending("availability"))
        # Availability first: published here, before paho re-sends anything it held.
        client.subscribe([(self.command_topic, 1), (self.availability_topic, 1)]
                         + ([(self._ha_status_topic, 1)] if self._ha_status_topic else [])
                         + [(t, 1) for t in sorted(self._discovery_topics)])
        self._send(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"), 1, True, _Pending("availability"))
        self._send_discovery()
        with self._lock:
            for entry in self._retained.values():
                if entry.inflight_mid is None or entry.qos == 0:
                    entry.inflight_mid, entry.sent_seq = None, 0  # (re)send: the broker may have forgotten
                # else: paho re-sends the one in flight; the latest follows its PUBACK
            topics = list(self._retained)
            self._connected.set()
        for topic in topics:
            self._send_retained(topic)
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
        with self._lock:
            self._counts["connect_failures"] += 1
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
        with self._lock:
            was_connected = self._connected.is_set()
            self._connected.clear()
            lost = [mid for mid, p in self._pending.items() if p.kind == "qos0" or
                    (p.kind == "retained" and self._retained.get(p.topic, _Retained(b"", 1, 0)).qos == 0)]
            for mid in lost:
                what = self._pending.pop(mid)
                if what.kind == "retained":
                    entry = self._retained.get(what.topic)
                    if entry is not None and entry.inflight_mid == mid:
                        entry.inflight_mid, entry.sent_seq = None, 0
                else:
                    self._counts["poses_dropped"] += 1
            if was_connected and not self._stopping:
                # Written into a socket that died with no packet from the broker after them.
                self._counts["poses_unconfirmed"] += self._qos0_unconfirmed
            self._qos0_unconfirmed = 0
            self._qos0_pending = 0
            self._early.clear()
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
        with self._lock:
            self._counts["packets_refused"] += 1
        self._command_log.log(
            logging.WARNING,
            "MQTT: the broker sent %s, over the %d-byte limit: dropped the connection without reading it; "
            "reconnecting", packet.describe(), MAX_INCOMING_PACKET_BYTES,
        )
        if packet.retain and packet.topic is not None and packet.topic.startswith(self.topic(f"{CMD_SUFFIX}/")):
            self._clear_on_connect = packet.topic  # it would come back on every subscribe

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        failed = bool(reason_code.is_failure)
        with self._lock:
            what = self._pending.pop(mid, None)
            if what is None:
                self._early[mid] = failed
                return
        self._finish(what, mid, failed)

    def _finish(self, what: _Pending, mid: int, failed: bool) -> None:
        """A message paho has written (QoS 0) or the broker acknowledged (QoS 1)."""
        resend: str | None = None
        with self._lock:
            if what.kind == "qos0":
                self._qos0_pending -= 1
                self._qos0_unconfirmed += 1
            elif what.kind == "direct":
                self._direct_pending -= 1
            elif what.kind == "retained":
                entry = self._retained.get(what.topic)
                if entry is not None and entry.inflight_mid in (mid, -1):
                    entry.inflight_mid = None
                    if entry.sent_seq != entry.seq and self._connected.is_set():
                        resend = what.topic
            if failed:
                self._counts["rejected"] += 1
        if failed:
            log.warning("MQTT: broker rejected message %d", mid)
        if what.on_ack is not None:
            what.on_ack(not failed)
        if resend is not None:
            self._send_retained(resend)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if topic == self.availability_topic:
            self._on_availability(msg.payload, retained=bool(msg.retain))
            return
        if topic in self._discovery_topics:
            if msg.retain:  # what the broker held when we subscribed: the last announcement
                self._on_retained_discovery(topic, bytes(msg.payload))
            return
        if self._ha_status_topic and topic == self._ha_status_topic:
            if msg.payload.strip() == PAYLOAD_ONLINE.encode("ascii"):
                log.info("MQTT: Home Assistant is online; re-sending discovery")
                self._send_discovery()
            return
        cmd_prefix = self.topic(f"{CMD_SUFFIX}/")
        if not topic.startswith(cmd_prefix):
            self._command_log.log(logging.WARNING, "MQTT: ignoring message on unexpected topic %s", topic)
            return
        if msg.retain:
            self._command_log.log(
                logging.WARNING,
                "MQTT: ignoring retained command on %s (clear it with an empty retained message)", topic,
            )
            return
        suffix = topic[len(self.topic("")) :]
        try:
            command = messages.parse_command(suffix, msg.payload)
        except ValueError as exc:
            with self._lock:
                self._counts["commands_invalid"] += 1
            self._command_log.log(logging.WARNING, "MQTT: ignoring %s %s: %s", topic, _preview(msg.payload), exc)
            return
        if command is None or self._on_command is None:
            return
        now = time.monotonic()
        last = self._last_command_at.get(command)
        cooldown = self._command_cooldowns.get(command, self._command_cooldown_s)
        if last is not None and now - last < cooldown:
            with self._lock:
                self._counts["commands_throttled"] += 1
            self._command_log.log(
                logging.INFO, "MQTT: ignoring %s command: %.1f s cooldown (last one %.1f s ago)",
                command, cooldown, now - last,
            )
            return
        self._last_command_at[command] = now
        with self._lock:
            self._counts["commands"] += 1
        try:
            self._on_command(command)
        except Exception:  # a bad handler must not kill paho's thread
            log.exception("MQTT: command handler failed for %s", command)

    def _on_availability(self, payload: bytes, *, retained: bool = False) -> None:
        """Our own availability topic: an ``offline`` while we are connected is the old
        session's will landing late (a half-open link): say ``online`` again.

        A *retained* ``offline`` is what the broker held when we subscribed (the last
        run's clean stop, or a will that fired before then): the ``online`` we publish
        right after subscribing, on the same connection, already replaced it."""
        if bytes(payload).strip() != PAYLOAD_OFFLINE.encode("ascii"):
            return
        if self._stopping or not self._connected.is_set():
            return
        if retained:
            log.debug("MQTT: the broker held 'offline' from before this connection; 'online' replaced it")
            return
        with self._lock:
            self._counts["availability_corrections"] += 1
        log.info("MQTT: the broker says this node is offline (a late will); re-publishing online")
        self._send(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"), 1, True, _Pending("availability"))

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
        if self._connected.is_set() and not self._stopping:
            self._send(self.availability_topic, PAYLOAD_ONLINE.encode("ascii"), 1, True, _Pending("availability"))

    def _send_discovery(self) -> None:
        for m in self._discovery:
            self._send(m.topic, m.payload, m.qos, m.retain, _Pending("availability"))

    def _on_retained_discovery(self, topic: str, retained: bytes) -> None:
        """The broker's retained discovery config, as it was before we connected: what
        it configures and ours does not is removed (sent once with only its platform)."""
        for i, m in enumerate(self._discovery):
            if m.topic != topic:
                continue
            merged = messages.with_removals(m.payload, retained)
            if merged is None:
                return
            gone = sorted(set(json.loads(merged)["components"]) - set(json.loads(m.payload)["components"]))
            log.info("Home Assistant: removing %d entit%s no longer configured (%s)",
                     len(gone), "y" if len(gone) == 1 else "ies", ", ".join(gone))
            self._discovery[i] = Message(m.topic, merged, m.qos, m.retain)
            self._send(m.topic, merged, m.qos, m.retain, _Pending("availability"))
            if self._on_discovery is not None:
                self._on_discovery(list(self._discovery))
            return


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


def forget(mqtt_cfg: MqttConfig, messages_to_send: list[Message], timeout: float = 10.0) -> tuple[bool, str]:
    """Publish `messages_to_send` (whole topics, QoS 1) on one connection and wait for
    every PUBACK: ``edgepose forget`` (uninstall) clears the node's retained topics and
    removes its Home Assistant device. (False, why) when the broker cannot be reached."""
    ok, detail = probe(mqtt_cfg, timeout=timeout)
    if not ok:
        return False, detail
    client = _new_client(mqtt_cfg, f"{mqtt_cfg.client_id}-forget" if mqtt_cfg.client_id else "")
    acked: set[int] = set()
    client.on_publish = lambda c, u, mid, rc, props: acked.add(mid)
    client.connect(mqtt_cfg.host, mqtt_cfg.port, keepalive=mqtt_cfg.keepalive_s)
    try:
        mids = [client.publish(m.topic, m.payload, qos=1, retain=m.retain).mid for m in messages_to_send]
        deadline = time.monotonic() + timeout
        while not set(mids) <= acked and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                break
        missing = len(set(mids) - acked)
        if missing:
            return False, f"{missing} of {len(mids)} messages were not acknowledged within {timeout:g} s"
        return True, f"cleared {len(mids)} retained topics on {mqtt_cfg.host}:{mqtt_cfg.port}"
    finally:
        client.disconnect()


__all__ = ["MqttPublisher", "PROTOCOLS", "forget", "probe"]
