"""The pure parts of the MQTT adapter: back-off, log rate limit, connect error causes, and
the bound on incoming packets (framing, and paho's read loop over a stand-in socket)."""

from __future__ import annotations

import logging
import socket
import ssl

import paho.mqtt.client as paho
import pytest

from edgepose.mqtt.commands import RateLimitedLog
from edgepose.mqtt.transport import (
    PACKET_PUBLISH,
    RECONNECT_MAX_S,
    Backoff,
    PacketFraming,
    PacketTooLarge,
    RefusedPacket,
    _Client,
    connect_error_cause,
)


def test_backoff_doubles_to_a_low_cap_with_jitter():
    low = Backoff(0.5, 2.0, rng=lambda: 0.0)
    high = Backoff(0.5, 2.0, rng=lambda: 1.0)
    assert [low.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert [high.next() for _ in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    high.reset()
    assert high.next() == 0.5
    assert RECONNECT_MAX_S <= 2.0  # first message within ~3 s of a broker restart


def test_backoff_survives_a_long_outage():
    backoff = Backoff(0.5, 2.0)
    delays = [backoff.next() for _ in range(10_000)]
    assert max(delays) <= 2.0 and min(delays) >= 0.25


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_log_holds_back_a_flood_and_says_so(caplog):
    clock = _Clock()
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=3, window_s=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        results = [limited.log(logging.WARNING, "bad %d", i) for i in range(100)]
        clock.now = 61.0
        limited.log(logging.WARNING, "bad again")
    assert results[:3] == [True] * 3 and not any(results[3:])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad 0", "bad 1", "bad 2", "MQTT: 97 similar messages not logged in the last 60 s", "bad again"]
    assert limited.suppressed == 97


def test_causes_name_what_went_wrong():
    def cause(exc, tls=False):
        return connect_error_cause(exc, host="broker.lan", port=8883, tls=tls)

    assert "unknown host 'broker.lan'" in cause(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert "connection refused" in cause(ConnectionRefusedError(111, "Connection refused"))
    assert "no answer" in cause(TimeoutError())
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_code, mismatch.verify_message = 62, "Hostname mismatch, certificate is not valid for 'broker.lan'."
    assert "hostname mismatch" in cause(mismatch, tls=True)
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_code, untrusted.verify_message = 20, "unable to get local issuer certificate"
    assert "not trusted" in cause(untrusted, tls=True)
    assert "plain MQTT port" in cause(ConnectionResetError(104, "Connection reset by peer"), tls=True)


# --- the bound on incoming packets (any protocol version) ---------------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: str, payload_len: int, *, retain: bool = False, qos: int = 0) -> tuple[bytes, bytes]:
    """(fixed header + topic, what follows), for a PUBLISH whose payload is payload_len bytes."""
    name = topic.encode()
    variable = len(name).to_bytes(2, "big") + name + (b"\x00\x01" if qos else b"")
    first = (PACKET_PUBLISH << 4) | (qos << 1) | int(retain)
    head = bytes([first]) + _remaining_length(len(variable) + payload_len) + len(name).to_bytes(2, "big") + name
    return head, (b"\x00\x01" if qos else b"") + b"x" * payload_len


def test_framing_follows_packets_in_any_chunking_and_stops_at_the_first_over_the_limit():
    small = b"\xd0\x00" + b"\x30" + _remaining_length(200) + b"y" * 200  # PINGRESP, a 203-byte PUBLISH
    big_head = b"\x31" + _remaining_length(70_000)  # a retained PUBLISH declaring 70 000 bytes
    stream = small * 3 + big_head
    for chunk in (1, 2, 7, 64, len(stream)):
        framing = PacketFraming(limit=1000)
        for i in range(0, len(stream), chunk):
            framing.feed(stream[i:i + chunk])
        assert framing.refused == (0x31, 1 + 3 + 70_000)
        framing.reset()
        framing.feed(small)
        assert framing.refused is None


def test_framing_limit_counts_the_whole_packet():
    fits = b"\x30" + _remaining_length(98)  # 1 + 1 + 98 = 100 bytes
    framing = PacketFraming(limit=100)
    framing.feed(fits + b"z" * 98)
    assert framing.refused is None
    framing.feed(b"\x30" + _remaining_length(99))
    assert framing.refused == (0x30, 101)
    framing.feed(b"more")  # ignored: the caller drops the connection
    assert framing.refused == (0x30, 101)


class _Socket:
    """Bytes the broker sent, read as a non-blocking socket reads them."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)

    def recv(self, bufsize: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        out = bytes(self.data[:bufsize])
        del self.data[:bufsize]
        return out

    def close(self) -> None:
        pass


def _client(limit: int = 1024) -> tuple[_Client, list[RefusedPacket]]:
    client = _Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id="t", max_packet_bytes=limit)
    refused: list[RefusedPacket] = []
    client.on_packet_refused = refused.append
    return client, refused


def test_paho_reads_the_header_and_topic_of_a_packet_over_the_limit_and_never_its_body():
    """paho's own read loop over a stand-in socket: a PINGRESP goes through; then a
    64 MB retained PUBLISH loses the connection with its payload still unread."""
    client, refused = _client()
    head, rest = _publish("edgepose/n/cmd/snapshot", 64 * 1024 * 1024, retain=True)
    sock = _Socket(b"\xd0\x00" + head + rest[:4096])
    client._sock = sock
    assert client._packet_read() == paho.MQTT_ERR_SUCCESS  # the PINGRESP
    assert client._packet_read() == paho.MQTT_ERR_CONN_LOST
    assert refused == [RefusedPacket(PACKET_PUBLISH, len(head) + len(rest), True, "edgepose/n/cmd/snapshot")]
    assert len(sock.data) == 4096  # nothing of the payload was read
    assert len(client._in_packet["packet"]) == 0
    assert "64.0 MB retained message on edgepose/n/cmd/snapshot" in refused[0].describe()


def test_a_topic_that_arrives_in_pieces_is_waited_for():
    client, refused = _client()
    head, _ = _publish("a/long/topic/name", 5000, qos=1)
    split = len(head) - 5
    sock = _Socket(head[:split])
    client._sock = sock
    assert client._packet_read() == paho.MQTT_ERR_AGAIN  # paho waits for the socket again
    assert refused == []
    sock.data += head[split:] + b"\x00\x01" + b"x" * 100
    assert client._packet_read() == paho.MQTT_ERR_CONN_LOST
    assert refused == [RefusedPacket(PACKET_PUBLISH, 1 + 2 + 5000 + 2 + 17 + 2, False, "a/long/topic/name")]
    assert len(sock.data) == 102


def test_a_large_packet_of_another_kind_is_refused_without_reading_anything_more():
    client, refused = _client(limit=64)
    sock = _Socket(b"\x90" + _remaining_length(100) + b"\x00" * 100)  # a SUBACK declaring 100 bytes
    client._sock = sock
    for _ in range(2):  # command byte, one length byte
        client._sock_recv(1)
    with pytest.raises(PacketTooLarge):
        client._sock_recv(100)
    assert refused == [RefusedPacket(9, 102)] and len(sock.data) == 100
