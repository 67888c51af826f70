"""The pure parts of the MQTT adapter: back-off, log rate limit, connect error causes."""

from __future__ import annotations

import logging
import socket
import ssl

from edgepose.mqtt import RECONNECT_MAX_S, Backoff, RateLimitedLog, connect_error_cause


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
