"""The disk outbox without a broker: persistence, bounds and drop order, dedupe, damage.

Delivery (in order, PUBACK before delete, re-sends across reconnects) runs
against a real mosquitto in tests/integration/test_reliability.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from edgepose.outbox import (
    PRIORITY_CRITICAL,
    PRIORITY_EVENT,
    PRIORITY_TELEMETRY,
    Outbox,
    OutboxMessage,
    new_event_id,
)

WAIT_S = 10.0


def message(seq: int, priority: int = PRIORITY_EVENT, size: int = 0) -> OutboxMessage:
    event_id = f"e{seq:06d}"
    payload = json.dumps({"id": event_id, "seq": seq, "pad": "x" * size}).encode()
    return OutboxMessage("events", payload, event_id, 1_700_000_000.0 + seq, priority)


def rows(path: Path) -> list[tuple[int, int]]:
    """(seq, priority) of every stored row, in delivery order (read beside the writer: WAL)."""
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT payload, priority FROM outbox ORDER BY id").fetchall()
    return [(json.loads(payload)["seq"], priority) for payload, priority in found]


@pytest.fixture
def make(tmp_path):
    made: list[Outbox] = []

    def build(**kw) -> Outbox:
        kw = {"max_messages": 1000, "max_bytes": 10_000_000} | kw
        box = Outbox(tmp_path / "state" / "outbox.sqlite3", **kw).start()
        made.append(box)
        return box

    yield build
    for box in made:
        box.stop()


def test_messages_survive_a_restart_in_order_with_their_payloads(make, tmp_path):
    box = make()
    for seq in range(50):
        assert box.put(message(seq))
    assert box.flush(WAIT_S)
    box.stop()
    again = make()
    assert again.stats()["queued"] == 50
    assert [seq for seq, _ in rows(again.path)] == list(range(50))
    with sqlite3.connect(again.path) as db:
        (payload, created_at), = db.execute("SELECT payload, created_at FROM outbox WHERE event_id = 'e000007'")
    assert json.loads(payload)["id"] == "e000007" and created_at == 1_700_000_007.0


def test_uses_wal_and_full_sync(make):
    box = make()
    with sqlite3.connect(box.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_outbox_drops_the_oldest_telemetry_first_and_counts(make):
    box = make(max_messages=10)
    for seq in range(3):
        box.put(message(seq, PRIORITY_EVENT))
    box.put(message(3, PRIORITY_CRITICAL))
    for seq in range(100, 120):
        box.put(message(seq, PRIORITY_TELEMETRY))
    assert box.flush(WAIT_S)
    kept = rows(box.path)
    assert len(kept) == 10
    # Every event kept; the telemetry left is the newest, still in order.
    assert [s for s, p in kept if p != PRIORITY_TELEMETRY] == [0, 1, 2, 3]
    assert [s for s, p in kept if p == PRIORITY_TELEMETRY] == list(range(114, 120))
    stats = box.stats()
    assert stats["dropped_telemetry"] == 14 and stats["dropped_events"] == 0 and stats["queued"] == 10


def test_events_go_only_when_no_telemetry_is_left_and_falls_last(make):
    box = make(max_messages=10)
    for seq in range(5):
        box.put(message(seq, PRIORITY_CRITICAL))
    for seq in range(10, 20):
        box.put(message(seq, PRIORITY_EVENT))
    assert box.flush(WAIT_S)
    kept = rows(box.path)
    assert [s for s, p in kept if p == PRIORITY_CRITICAL] == list(range(5))
    assert [s for s, p in kept if p == PRIORITY_EVENT] == list(range(15, 20))
    assert box.stats()["dropped_events"] == 5 and box.stats()["dropped_critical"] == 0


def test_byte_bound_holds(make):
    box = make(max_bytes=100_000)
    for seq in range(40):
        box.put(message(seq, PRIORITY_TELEMETRY, size=5_000))
    assert box.flush(WAIT_S)
    stats = box.stats()
    assert stats["bytes"] <= 100_000 and stats["dropped_telemetry"] > 0
    assert [s for s, _ in rows(box.path)] == list(range(40 - stats["queued"], 40))


def test_the_same_event_id_is_stored_once(make):
    box = make()
    box.put(message(1))
    box.put(message(1))
    assert box.flush(WAIT_S)
    box.put(message(1))
    assert box.flush(WAIT_S)
    assert rows(box.path) == [(1, PRIORITY_EVENT)]
    assert box.stats()["duplicates"] == 2


def test_put_from_many_threads_never_blocks_and_loses_nothing(make):
    box = make(max_messages=10_000)
    def produce(base: int) -> None:
        for i in range(200):
            assert box.put(message(base + i))
    threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box.flush(WAIT_S)
    assert len(rows(box.path)) == 800


def test_a_corrupt_database_is_moved_aside(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    box = Outbox(path, max_messages=100, max_bytes=100_000).start()
    try:
        assert box.put(message(1)) and box.flush(WAIT_S)
        assert rows(path) == [(1, PRIORITY_EVENT)]
        assert list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    finally:
        box.stop()


def test_an_unopenable_path_fails_at_start(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        Outbox(tmp_path / "file" / "outbox.sqlite3", max_messages=10, max_bytes=100_000).start()


@pytest.mark.parametrize("kw", [dict(topic="/abs"), dict(topic="a/#"), dict(event_id=""),
                                dict(event_id="x" * 129), dict(priority=7)])
def test_message_fields_are_checked(kw):
    fields = dict(topic="events", payload=b"{}", event_id=new_event_id(), created_at=0.0) | kw
    with pytest.raises(ValueError):
        OutboxMessage(**fields)
