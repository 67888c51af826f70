"""The connection under the MQTT adapter: paho's client with the bounds and the
diagnosis edgepose needs, and nothing about what is published.

- `new_client`: a paho (>= 2) client with protocol, credentials and TLS set,
  TCP_NODELAY on each socket, not yet connected.
- Bounded inputs: no incoming packet over `MAX_INCOMING_PACKET_BYTES` is ever
  read into memory. On MQTT 5 the CONNECT announces it as the Maximum Packet
  Size, so the broker never forwards a bigger one. On both versions the client
  follows MQTT's framing in the bytes it receives (`PacketFraming`): when a
  packet's fixed header declares more, the connection is dropped before its
  body is read (only a PUBLISH's topic name, at most 64 KiB, to say where it
  came from) and paho reconnects with the usual back-off.
- Reconnects use bounded exponential back-off with jitter (`Backoff`, cap 2 s).
- `connect_error_cause` names why a connect failed (TLS verification, hostname
  mismatch, refused credentials, refused connection, unknown host, TLS to a
  plain port), for the log and ``edgepose check``.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from ..config import MqttConfig, TlsConfig
from ..errors import ConfigError

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
#: commands.MAX_COMMAND_BYTES, topics are bounded by the config.
MAX_INCOMING_PACKET_BYTES = 16 * 1024
#: MQTT control packet type of PUBLISH (the high nibble of a packet's first byte).
PACKET_PUBLISH = 3


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


def new_client(cfg: MqttConfig, client_id: str) -> _Client:
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
    broker's delayed ACK can hold back for up to 40 ms (the p95 latency it cost:
    docs/performance-history.md).
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


# --- reconnecting ---------------------------------------------------------------------------


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

