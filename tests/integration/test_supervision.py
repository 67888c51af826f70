"""Supervision and the watchdog policy, with the real daemon under a test watchdog:
a source that is down is a reported, degraded state (no restart); a stuck inference
stops the pings; a dead capture thread ends the process with 70 for systemd."""

from __future__ import annotations

import shutil
import threading

import pytest

from .test_daemon import (  # noqa: F401 - daemon is a fixture
    DEMO_PHOTOS,
    NotifyListener,
    WAIT_S,
    daemon,
    decode,
    demo_config,
    node_id,
    wait_msgs,
    watchdog_times,
)

pytestmark = pytest.mark.integration

#: The test watchdog: systemd would kill the service after this long without a ping.
WATCHDOG_S = 1.0


def _source_outage(tmp_path, mosquitto_broker, subscriber, daemon, outage_s: float) -> None:
    photos = tmp_path / "camera"
    photos.mkdir()  # empty: the "camera" delivers nothing until photos arrive
    listener = NotifyListener(tmp_path)
    node = node_id("down")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/stats", f"{prefix}/poses")
    try:
        d = daemon(demo_config(tmp_path, node, mosquitto_broker,
                               source={"uri": str(photos), "loop": True, "max_fps": 10.0,
                                       "reopen_delay_s": 0.2, "reopen_delay_max_s": 1.0},
                               mqtt={"stats_interval_s": 0.5}),
                   env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
        listener.wait_for("READY=1", timeout=WAIT_S + 25)  # READY after 20 s without a first frame
        down = wait_msgs(sub, d, lambda m: m.topic == f"{prefix}/stats"
                         and decode(m)["source_state"] == "retrying")
        body = decode(down[0])
        assert "no " in body["source_error"] and body["frames"] == 0
        d.wait_until("STATUS= saying the source is retrying",
                     lambda: any(line.startswith("STATUS=") and "retrying" in line for line in listener.lines()))
        # Stay down for the outage: stats keep coming, the watchdog keeps being fed.
        seen = len(sub.matching(f"{prefix}/stats"))
        wait_msgs(sub, d, f"{prefix}/stats", count=seen + int(outage_s / 0.5), timeout=outage_s + WAIT_S)
        for photo in DEMO_PHOTOS[:2]:
            shutil.copy(photo, photos)
        wait_msgs(sub, d, f"{prefix}/poses", count=5)
        wait_msgs(sub, d, lambda m: m.topic == f"{prefix}/stats" and decode(m)["source_state"] == "ok")
        assert d.proc.poll() is None, "the process kept running: no restart"
        code, _ = d.terminate()
        assert code == 0, d.explain()
    finally:
        listener.close()
    times = watchdog_times(listener)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= outage_s / WATCHDOG_S, times
    assert max(gaps) < WATCHDOG_S, f"a {max(gaps):.2f} s gap: systemd would have restarted the service"


def test_a_source_that_is_down_keeps_the_watchdog_fed_and_recovers(tmp_path, mosquitto_broker, subscriber, daemon):
    _source_outage(tmp_path, mosquitto_broker, subscriber, daemon, outage_s=8.0)


@pytest.mark.slow
def test_a_source_down_for_five_minutes_keeps_the_process_running(tmp_path, mosquitto_broker, subscriber, daemon):
    _source_outage(tmp_path, mosquitto_broker, subscriber, daemon, outage_s=300.0)


def test_a_stuck_inference_stops_the_watchdog_pings(tmp_path, mosquitto_broker, subscriber, daemon):
    listener = NotifyListener(tmp_path)
    node = node_id("stuck")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/poses")
    try:
        d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 10.0}),
                   env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
                        "EDGEPOSE_FAULT": "stall-inference-after=5"})
        wait_msgs(sub, d, f"{prefix}/poses", count=5)
        before = len(watchdog_times(listener))
        # Three watchdog intervals with no ping at all: systemd would restart it.
        threading.Event().wait(3 * WATCHDOG_S)  # observing an absence takes a span of time
        assert len(watchdog_times(listener)) <= before + 1, "pings went on while inference hung"
        assert len(sub.matching(f"{prefix}/poses")) == 5
        d.proc.kill()
    finally:
        listener.close()


def test_a_dead_capture_thread_ends_the_process_with_70(tmp_path, daemon):
    empty = tmp_path / "nothing"
    empty.mkdir()
    d = daemon(demo_config(tmp_path, node_id("crash"), None, mqtt={"enabled": False},
                           source={"uri": str(empty), "reopen_delay_s": 0.2}),
               env={"EDGEPOSE_FAULT": "crash-capture"})
    assert d.proc.wait(WAIT_S + 25) == 70, d.explain()
    assert "the capture thread died" in d.log_text() and "OverflowError" in d.log_text()
