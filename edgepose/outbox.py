"""A disk-backed outbox: events and telemetry that must survive outages, restarts and reboots.

Messages are put from any thread (the inference thread included) without
blocking: `Outbox.put` only enqueues. One writer thread owns the SQLite
database (WAL, ``synchronous=FULL``: a committed batch survives a power cut)
and does everything else: inserts in batches, keeps the bounds, hands messages
to the broker in order and deletes each one only once the broker acknowledged
it (QoS 1 PUBACK, through `mqtt.MqttPublisher.publish_acked`).

Guarantees (held by tests/unit/test_outbox.py and tests/integration/test_reliability.py):

- **In order, with original time stamps and event ids**: rows are delivered
  in insertion order (AUTOINCREMENT ids are never reused); the payload is
  stored as given, so the time stamp and event id the producer wrote in it are
  what subscribers get, however late.
- **At least once**: a row is removed only after its PUBACK. A message the
  broker got but whose PUBACK was lost (a crash, a cut link) is sent again; the
  payload carries its event id so subscribers drop the duplicate. The same
  event id put twice is stored once.
- **Bounded**: at most ``max_messages`` rows and ``max_bytes`` payload bytes.
  Past either, rows are dropped by priority, then age: the oldest telemetry
  first, events only when no telemetry is left, critical events (falls) last.
  Every drop is counted (`stats`).
- **Order across reconnects**: up to `WINDOW` messages are in flight. paho
  re-sends the in-flight ones after a reconnect; no newer row is handed over
  until those are acknowledged, so a re-send never overtakes a newer message.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Priorities: what a full outbox drops first (lowest) and last (highest).
PRIORITY_TELEMETRY = 0  # count/occupancy changes, snapshot notices
PRIORITY_EVENT = 1
PRIORITY_CRITICAL = 2  # falls: dropped only when nothing else is left
PRIORITIES = (PRIORITY_TELEMETRY, PRIORITY_EVENT, PRIORITY_CRITICAL)

#: Messages handed to the broker and not yet acknowledged, at most.
WINDOW = 10
#: Rows fetched per delivery query and inserted per transaction, at most.
BATCH = 200
#: The writer wakes at least this often (to retry a failed write, or deliver
#: after a connect it was not told about).
TICK_S = 1.0
#: Messages put but not yet taken by the writer, at most (memory bound if the disk
#: stalls): telemetry past this is refused and counted; events get twice as much.
BACKLOG_MAX = 5000
#: Connected, but messages from before a reconnect still unacknowledged after this
#: long: paho did not re-send them (never seen; a safety net). They are handed over
#: again, which may duplicate them; subscribers dedupe by event id.
STALE_RESEND_S = 60.0
#: Event ids: 1-128 characters (they are SQLite keys and JSON strings).
EVENT_ID_MAX = 128
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- delivery order; never reused
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,                   -- suffix under <prefix>/<node>/
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    created_at REAL NOT NULL,              -- wall clock when produced
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_drop_order ON outbox (priority, id);
"""


def new_event_id() -> str:
    """A fresh event id (32 hex digits, random): put it in the payload and in `OutboxMessage`."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message for the outbox. The payload already carries ``event_id`` and its time
    stamp (the outbox never rewrites it), so subscribers can dedupe and order."""

    topic: str
    payload: bytes
    event_id: str
    created_at: float  # time.time() when it happened
    priority: int = PRIORITY_EVENT

    def __post_init__(self) -> None:
        if not self.topic or self.topic.startswith("/") or any(c in self.topic for c in "+#\x00"):
            raise ValueError(f"outbox topic must be a plain topic suffix, got {self.topic!r}")
        if not 1 <= len(self.event_id) <= EVENT_ID_MAX:
            raise ValueError(f"event id must be 1-{EVENT_ID_MAX} characters, got {len(self.event_id)}")
        if self.priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {self.priority!r}")


class Deliverer(Protocol):
    """What the outbox needs from the MQTT side (`mqtt.MqttPublisher` is one)."""

    @property
    def connected(self) -> bool: ...

    def publish_acked(self, suffix: str, payload: bytes, on_ack: Any) -> bool: ...

    def add_connection_listener(self, listener: Any) -> None: ...


class Outbox:
    """The outbox over one SQLite file. `start`, `put` from anywhere, `stop` at the end."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_messages: int,
        max_bytes: int,
        deliverer: Deliverer | None = None,
        window: int = WINDOW,
    ) -> None:
        if max_messages < 1 or max_bytes < 1 or window < 1:
            raise ValueError("outbox bounds and window must be >= 1")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._deliverer = deliverer
        self._window = window
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._backlog = 0  # put() calls the writer has not taken yet
        self._thread: threading.Thread | None = None
        self._fatal: BaseException | None = None
        self._stopped = False
        # Writer-thread state (read by stats() under the lock).
        self._rows = 0
        self._bytes = 0
        self._inflight: dict[int, int] = {}  # row id -> epoch it was handed over in
        self._epoch = 0  # bumped on every connection loss
        self._last_handed = 0  # highest row id handed over this run
        self._more = True  # rows may wait beyond _last_handed
        self._stale_since: float | None = None
        self._retry: list[OutboxMessage] = []  # a batch whose write failed
        self._counts = dict.fromkeys(
            ("put", "delivered", "dropped_telemetry", "dropped_events", "dropped_critical",
             "rejected", "duplicates", "write_errors", "refused"),
            0,
        )
        if deliverer is not None:
            deliverer.add_connection_listener(self._on_connection)

    @classmethod
    def from_config(cls, cfg: Any, deliverer: Deliverer | None) -> "Outbox":
        """From a validated `config.OutboxConfig` (path already resolved)."""
        return cls(cfg.path, max_messages=cfg.max_messages, max_bytes=cfg.max_bytes, deliverer=deliverer)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> "Outbox":
        """Open (or create) the database in the writer thread; raises OSError/sqlite3.Error
        here, at start, when it cannot be opened."""
        if self._thread is not None:
            return self
        opened = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(opened,), name="edgepose-outbox", daemon=True)
        self._thread.start()
        opened.wait()
        if self._fatal is not None:
            raise self._fatal
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what was put, then end the writer. Unacknowledged rows stay on disk."""
        if self._thread is None or self._stopped:
            return
        self._stopped = True
        self._queue.put(("stop",))
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("outbox: writer did not stop within %.1f s", timeout)

    def __enter__(self) -> "Outbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        """The writer thread runs (for a supervisor); False after a fatal error."""
        return self._thread is not None and self._thread.is_alive() and self._fatal is None

    # --- producers (any thread) ------------------------------------------------------

    def put(self, msg: OutboxMessage) -> bool:
        """Queue `msg` for the disk; never blocks. False (counted) only when the writer
        is so far behind that telemetry is refused, or stopped."""
        with self._lock:
            limit = BACKLOG_MAX if msg.priority == PRIORITY_TELEMETRY else 2 * BACKLOG_MAX
            if self._stopped or self._backlog >= limit:
                self._counts["refused"] += 1
                return False
            self._backlog += 1
            self._counts["put"] += 1
        self._queue.put(("put", msg))
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything put before this call is committed to disk."""
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def wait_empty(self, timeout: float) -> bool:
        """Wait until nothing is left to deliver (no rows, nothing waiting to be written)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._rows == 0 and self._backlog == 0 and not self._retry,
                                          timeout)

    def stats(self) -> dict[str, int | float | bool]:
        with self._lock:
            out: dict[str, int | float | bool] = dict(self._counts)
            queued = self._rows + self._backlog + len(self._retry)
            out.update(queued=queued, bytes=self._bytes, inflight=len(self._inflight))
        out["alive"] = self.alive
        return out

    # --- deliverer callbacks (paho's thread) ------------------------------------------

    def _on_connection(self, up: bool) -> None:
        self._queue.put(("conn", up))

    def _acked(self, row_id: int) -> Any:
        return lambda ok: self._queue.put(("ack", row_id, ok))

    # --- the writer thread -------------------------------------------------------------

    def _run(self, opened: threading.Event) -> None:
        try:
            db = self._open()
        except (OSError, sqlite3.Error) as exc:
            self._fatal = exc
            opened.set()
            return
        opened.set()
        try:
            self._loop(db)
        except BaseException as exc:  # noqa: BLE001 - reported through `alive` and the log
            self._fatal = exc
            log.exception("outbox: writer thread failed")
        finally:
            db.close()

    def _loop(self, db: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            try:
                items = [self._queue.get(timeout=TICK_S)]
            except queue.Empty:
                items = []
            while True:  # drain: one transaction for whatever arrived together
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            puts = [item[1] for item in items if item[0] == "put"]
            acks = [(item[1], item[2]) for item in items if item[0] == "ack"]
            flushes = [item[1] for item in items if item[0] == "flush"]
            for item in items:
                if item[0] == "conn" and not item[1] and self._inflight:
                    self._epoch += 1  # paho re-sends those in flight; wait for them
                elif item[0] == "conn" and item[1]:
                    self._more = True
                elif item[0] == "stop":
                    stop = True
            self._write(db, self._retry + puts, taken=len(puts))
            if acks:
                self._remove(db, acks)
            if not stop:
                self._deliver(db)
            with self._changed:
                self._changed.notify_all()
            for done in flushes:
                if not self._retry:
                    done.set()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:  # a corrupt file (SD card): keep it, start afresh
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("outbox: %s is unreadable (%s); moved to %s, starting empty", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            db = self._connect()
        rows, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        with self._lock:
            self._rows, self._bytes = rows, size
        if rows:
            log.info("outbox: %d messages (%d bytes) from before the restart wait for delivery", rows, size)
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _write(self, db: sqlite3.Connection, batch: list[OutboxMessage], taken: int) -> None:
        """Insert `batch` (retried messages first, then `taken` new ones) in one transaction."""
        with self._lock:
            self._retry = []
        if not batch:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            added = dup = 0
            size = 0
            for msg in batch:
                if len(msg.payload) > self.max_bytes:
                    self._count_drop(msg.priority)
                    log.warning("outbox: a %d-byte message on %s is over outbox.max_bytes; dropped",
                                len(msg.payload), msg.topic)
                    continue
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (event_id, topic, payload, priority, created_at, size) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (msg.event_id, msg.topic, msg.payload, msg.priority, msg.created_at, len(msg.payload)),
                )
                if cur.rowcount:
                    added += 1
                    size += len(msg.payload)
                else:
                    dup += 1
            dropped = self._enforce_bounds(db, self._rows + added, self._bytes + size)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rolled_back(db)
            with self._lock:
                self._retry = batch[-BACKLOG_MAX:]  # retried on the next tick, bounded
                self._backlog -= taken
            log.warning("outbox: cannot write %d messages to %s (%s); retrying", len(batch), self.path, exc)
            return
        with self._lock:  # one step, so stats() never sees a message in neither place
            self._backlog -= taken
            self._rows += added - dropped[0]
            self._bytes += size - dropped[1]
            self._counts["duplicates"] += dup
        self._more = True

    def _enforce_bounds(self, db: sqlite3.Connection, rows: int, size: int) -> tuple[int, int]:
        """Delete rows, lowest priority then oldest, until both bounds hold. Inside the
        caller's transaction. Rows in flight are never chosen. (rows, bytes) deleted."""
        deleted_rows = deleted_bytes = 0
        while rows - deleted_rows > self.max_messages or size - deleted_bytes > self.max_bytes:
            excess = max(rows - deleted_rows - self.max_messages, 1)
            candidates = db.execute(
                "SELECT id, size, priority FROM outbox ORDER BY priority, id LIMIT ?",
                (excess + len(self._inflight) + BATCH,),
            ).fetchall()
            victims = []
            for row_id, row_size, priority in candidates:
                if row_id in self._inflight:
                    continue
                if rows - deleted_rows <= self.max_messages and size - deleted_bytes <= self.max_bytes:
                    break
                victims.append(row_id)
                deleted_rows += 1
                deleted_bytes += row_size
                self._count_drop(priority)
            if not victims:
                break  # only rows in flight are left: they leave on their PUBACK
            db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
        if deleted_rows:
            log.warning("outbox: full (%d messages / %d bytes): dropped the %d oldest lowest-priority messages",
                        self.max_messages, self.max_bytes, deleted_rows)
        return deleted_rows, deleted_bytes

    def _rolled_back(self, db: sqlite3.Connection) -> None:
        """After a failed write: undo the transaction (if it still can be) and count it."""
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        with self._lock:
            self._counts["write_errors"] += 1

    def _count_drop(self, priority: int) -> None:
        key = {PRIORITY_TELEMETRY: "dropped_telemetry", PRIORITY_EVENT: "dropped_events"}.get(
            priority, "dropped_critical")
        with self._lock:
            self._counts[key] += 1

    def _remove(self, db: sqlite3.Connection, acks: list[tuple[int, bool]]) -> None:
        ids = [(row_id,) for row_id, _ in acks]
        try:
            db.execute("BEGIN IMMEDIATE")
            sizes = {}
            for (row_id,) in ids:
                found = db.execute("SELECT size FROM outbox WHERE id = ?", (row_id,)).fetchone()
                if found is not None:
                    sizes[row_id] = found[0]
            db.executemany("DELETE FROM outbox WHERE id = ?", ids)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rolled_back(db)
            log.warning("outbox: cannot delete %d delivered messages (%s); they may be sent again", len(ids), exc)
            sizes = {}
        with self._lock:
            for row_id, ok in acks:
                self._inflight.pop(row_id, None)
                self._counts["delivered" if ok else "rejected"] += 1
            self._rows -= len(sizes)
            self._bytes -= sum(sizes.values())
        if any(not ok for _, ok in acks):
            log.warning("outbox: the broker refused %d messages; they are not sent again",
                        sum(1 for _, ok in acks if not ok))

    def _deliver(self, db: sqlite3.Connection) -> None:
        deliverer = self._deliverer
        if deliverer is None or not deliverer.connected:
            return
        stale = [row_id for row_id, epoch in self._inflight.items() if epoch != self._epoch]
        if stale:  # paho is re-sending older ones: nothing newer may overtake them
            now = time.monotonic()
            if self._stale_since is None:
                self._stale_since = now
            if now - self._stale_since < STALE_RESEND_S:
                return
            log.warning("outbox: %d messages unacknowledged %.0f s after a reconnect; sending them again",
                        len(stale), STALE_RESEND_S)
            with self._lock:
                self._inflight.clear()
            self._last_handed = min(stale) - 1
            self._more = True
        self._stale_since = None
        room = self._window - len(self._inflight)
        if room <= 0 or not self._more:
            return
        rows = db.execute(
            "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (self._last_handed, room),
        ).fetchall()
        if len(rows) < room:
            self._more = False
        for row_id, topic, payload in rows:
            with self._lock:
                self._inflight[row_id] = self._epoch
            if not deliverer.publish_acked(topic, bytes(payload), self._acked(row_id)):
                with self._lock:
                    self._inflight.pop(row_id, None)
                self._more = True
                return  # disconnected meanwhile: resume after the next connect
            self._last_handed = row_id


__all__ = [
    "Outbox",
    "OutboxMessage",
    "PRIORITY_CRITICAL",
    "PRIORITY_EVENT",
    "PRIORITY_TELEMETRY",
    "new_event_id",
]
