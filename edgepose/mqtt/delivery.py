"""How messages reach the broker: three paths, so telemetry can never starve what must get through.

- **Retained state** (person count, state, stats, snapshot): kept here, latest
  value per topic, and re-published on every connect (a broker restarted
  without persistence forgot them). At most one message per topic is in
  paho's queue at a time (a newer value waits for the older one's PUBACK), so
  this path is bounded by the number of topics and is never refused: paho's
  own queue is left unbounded and the live path below is bounded here instead.
- **Live stream** (``poses``, QoS 0): dropped and counted when disconnected or
  when `max_queued` messages still wait for the socket; messages written into
  a socket that then died, with no packet from the broker after them, are
  counted too (``poses_unconfirmed``).
- **Acknowledged delivery** for the disk outbox (`publish_acked`): QoS 1, the
  caller is told when the broker acknowledged (PUBACK) and removes the message
  only then. paho re-sends unacknowledged QoS 1 messages after a reconnect.

`Delivery` owns the lock, the counters and the connected flag the client's
callbacks share with it; topics here are whole (the client adds the node's prefix).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..core import Message

log = logging.getLogger(__name__)

OnAck = Callable[[bool], None]

#: What `MqttPublisher.stats` counts, all guarded by `Delivery.lock`.
COUNTERS = ("poses_dropped", "poses_unconfirmed", "refused", "rejected", "availability_corrections",
            "connects", "connect_failures", "commands", "commands_invalid", "commands_throttled",
            "packets_refused")


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


class Delivery:
    """The three paths over one paho client; see the module docstring."""

    def __init__(self, client: paho.Client, *, max_queued: int) -> None:
        self._client = client
        self._max_queued = max_queued
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._retained: dict[str, _Retained] = {}  # full topic -> latest retained state
        self._seq = 0
        self._pending: dict[int, _Pending] = {}  # mid -> what it was, handed to paho, not yet sent/acked
        self._early: dict[int, bool] = {}  # mid -> failed, for acks that beat the registration
        self._qos0_pending = 0
        self._direct_pending = 0
        self._qos0_unconfirmed = 0  # QoS 0 written since the broker last sent us anything

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    @property
    def dropped(self) -> int:
        """Messages given up on: live messages not sent or unconfirmed, refused, rejected."""
        with self.lock:
            c = self.counts
            return c["poses_dropped"] + c["poses_unconfirmed"] + c["refused"] + c["rejected"]

    # --- the three paths -----------------------------------------------------------------

    def publish(self, topic: str, msg: Message) -> bool:
        """`msg` on `topic`; False when it was dropped (see `MqttPublisher.publish`)."""
        if msg.retain:
            self._publish_retained(topic, msg.payload, msg.qos)
            return True
        with self.lock:
            if msg.qos == 0:
                if not self.connected.is_set() or self._qos0_pending >= self._max_queued:
                    self.counts["poses_dropped"] += 1
                    return False
            elif self._direct_pending >= self._max_queued:
                self.counts["refused"] += 1
                return False
        kind = "qos0" if msg.qos == 0 else "direct"
        return self._send(topic, msg.payload, msg.qos, False, _Pending(kind), msg.expiry_s) is not None

    def publish_acked(self, topic: str, payload: bytes, on_ack: OnAck) -> bool:
        """QoS 1 for the outbox; False (nothing sent) while disconnected."""
        if not self.connected.is_set():
            return False
        return self._send(topic, payload, 1, False, _Pending("acked", on_ack=on_ack)) is not None

    def send_now(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        """Straight to paho, outside the retained store: availability, discovery, a clear."""
        self._send(topic, payload, qos, retain, _Pending("availability"))

    def _publish_retained(self, topic: str, payload: bytes, qos: int) -> None:
        with self.lock:
            self._seq += 1
            entry = self._retained.get(topic)
            if entry is None:
                entry = self._retained[topic] = _Retained(payload, qos, self._seq)
            else:
                entry.payload, entry.qos, entry.seq = payload, qos, self._seq
            if not self.connected.is_set() or entry.inflight_mid is not None:
                return  # sent on connect, or when the one in flight is acknowledged
        self._send_retained(topic)

    def _send_retained(self, topic: str) -> None:
        """Hand the latest value of one retained topic to paho, if it is not there already."""
        with self.lock:
            entry = self._retained[topic]
            if entry.inflight_mid is not None or entry.sent_seq == entry.seq:
                return
            payload, qos, seq = entry.payload, entry.qos, entry.seq
            # Marked sent before paho has it: paho's thread may write it and call
            # on_publish before `_send` returns, and `_finish` must then see this value
            # as sent, or it sends it again, without end.
            before, entry.sent_seq = entry.sent_seq, seq
            entry.inflight_mid = -1  # reserved until paho gives the mid
        mid = self._send(topic, payload, qos, True, _Pending("retained", topic=topic))
        with self.lock:
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
            with self.lock:
                self.counts["refused"] += 1
            return None
        queued = info.rc == paho.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN)
        early_failed: bool | None = None
        with self.lock:
            if not queued:
                self.counts["poses_dropped" if qos == 0 else "refused"] += 1
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

    # --- what the connection tells us (paho's network thread) --------------------------------

    def confirmed(self) -> None:
        """A packet came from the broker: what was written before it arrived."""
        self._qos0_unconfirmed = 0

    def on_connected(self) -> None:
        """Connected (``online`` already handed to paho): every retained topic goes out again."""
        with self.lock:
            for entry in self._retained.values():
                if entry.inflight_mid is None or entry.qos == 0:
                    entry.inflight_mid, entry.sent_seq = None, 0  # (re)send: the broker may have forgotten
                # else: paho re-sends the one in flight; the latest follows its PUBACK
            topics = list(self._retained)
            self.connected.set()
        for topic in topics:
            self._send_retained(topic)

    def on_disconnected(self, stopping: bool) -> bool:
        """The connection is gone: QoS 0 in flight is lost (and counted). Whether it was up."""
        with self.lock:
            was_connected = self.connected.is_set()
            self.connected.clear()
            lost = [mid for mid, p in self._pending.items() if p.kind == "qos0" or
                    (p.kind == "retained" and self._retained.get(p.topic, _Retained(b"", 1, 0)).qos == 0)]
            for mid in lost:
                what = self._pending.pop(mid)
                if what.kind == "retained":
                    entry = self._retained.get(what.topic)
                    if entry is not None and entry.inflight_mid == mid:
                        entry.inflight_mid, entry.sent_seq = None, 0
                else:
                    self.counts["poses_dropped"] += 1
            if was_connected and not stopping:
                # Written into a socket that died with no packet from the broker after them.
                self.counts["poses_unconfirmed"] += self._qos0_unconfirmed
            self._qos0_unconfirmed = 0
            self._qos0_pending = 0
            self._early.clear()
        return was_connected

    def on_published(self, mid: int, failed: bool) -> None:
        """paho's on_publish: written (QoS 0) or acknowledged (QoS 1)."""
        with self.lock:
            what = self._pending.pop(mid, None)
            if what is None:
                self._early[mid] = failed
                return
        self._finish(what, mid, failed)

    def _finish(self, what: _Pending, mid: int, failed: bool) -> None:
        resend: str | None = None
        with self.lock:
            if what.kind == "qos0":
                self._qos0_pending -= 1
                self._qos0_unconfirmed += 1
            elif what.kind == "direct":
                self._direct_pending -= 1
            elif what.kind == "retained":
                entry = self._retained.get(what.topic)
                if entry is not None and entry.inflight_mid in (mid, -1):
                    entry.inflight_mid = None
                    if entry.sent_seq != entry.seq and self.connected.is_set():
                        resend = what.topic
            if failed:
                self.counts["rejected"] += 1
        if failed:
            log.warning("MQTT: broker rejected message %d", mid)
        if what.on_ack is not None:
            what.on_ack(not failed)
        if resend is not None:
            self._send_retained(resend)
