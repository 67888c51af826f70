"""Supervision and the watchdog policy, with the real daemon under a test watchdog:
a source that is down is a reported, degraded state (no restart); a stuck inference
stops the pings; a dead capture thread ends the process with 70 for systemd."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import threading
from pathlib import Path

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


def _queued_event_ids(outbox: Path) -> list[str]:
    if not outbox.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=1)) as db:
            return [row[0] for row in db.execute("SELECT event_id FROM outbox ORDER BY id")]
    except sqlite3.Error:  # the daemon is creating it right now
        return []


def test_events_queued_while_the_broker_is_down_survive_a_killed_daemon(
        tmp_path, broker_factory, subscriber, daemon):
    """SIGKILL while the broker is down and an event waits in the outbox; broker and daemon
    restarted: the queued event arrives, with its original id and time."""
    photos = tmp_path / "someone"
    photos.mkdir()
    shutil.copy(DEMO_PHOTOS[0], photos)
    broker = broker_factory(start=False)
    node = node_id("outbox")
    prefix = f"edgepose/{node}"
    config = demo_config(tmp_path, node, broker, source={"uri": str(photos), "loop": True, "max_fps": 10.0},
                         presence={"enter_s": 0.2})
    first = daemon(config)
    outbox = tmp_path / "outbox.sqlite3"  # relative to the daemon's working directory
    queued = first.wait_until("an event queued in the outbox", lambda: _queued_event_ids(outbox))
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(WAIT_S)

    broker.start()
    sub = subscriber(broker, f"{prefix}/events")
    second = daemon(config)
    delivered = wait_msgs(sub, second, lambda m: decode(m)["id"] == queued[0])
    event = decode(delivered[0])
    assert event["type"] == "person_entered"
    first_seen = [decode(m)["id"] for m in sub.matching(f"{prefix}/events")]
    assert first_seen[0] == queued[0], "the queued event comes before the new run's events"
    code, _ = second.terminate()
    assert code == 0, second.explain()
