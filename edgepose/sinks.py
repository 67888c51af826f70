"""Sinks: where a frame's result goes (MQTT messages, stats, snapshots, the watchdog).

Each sink's `consume` runs on the inference thread and only decides and
hands over: MQTT publishing goes to paho's queue (mqtt.py), and snapshots are
rendered, JPEG-encoded, written and published by `SnapshotSink`'s own thread
through a small bounded queue, so a slow SD card costs snapshots, never frames.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .core import FrameResult, Message
from .messages import PosesPolicy, person_count_message, poses_message, snapshot_message, stats_message
from .notify import Notifier
from .overlay import encode_jpeg, render_overlay
from .snapshots import SnapshotPolicy, SnapshotWriter

log = logging.getLogger(__name__)

#: Frames the rolling fps / inference percentiles are computed over.
STATS_WINDOW = 300
#: Snapshots waiting to be rendered and written; one more is dropped and counted.
SNAPSHOT_QUEUE = 2
CPU_TEMPERATURE_FILE = Path("/sys/class/thermal/thermal_zone0/temp")

Publish = Callable[[Message], bool]


def read_cpu_temperature() -> float | None:
    try:
        return round(int(CPU_TEMPERATURE_FILE.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


class _BaseSink:
    """Defaults for the optional parts of the Sink protocol."""

    def consume(self, result: FrameResult) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def command(self, name: str) -> bool:
        return False

    def close(self) -> None:
        pass


class MqttSink(_BaseSink):
    """`poses` (per `mqtt.poses_mode`) and the retained `person_count` when it changes."""

    def __init__(self, publish: Publish, *, node_id: str, poses_policy: PosesPolicy, expiry_s: int | None):
        self._publish = publish
        self._node_id = node_id
        self._policy = poses_policy
        self._expiry_s = expiry_s
        self._last_count: int | None = None

    def consume(self, result: FrameResult) -> None:
        frame, poses = result.frame, result.poses
        if self._policy.should_publish(frame.captured_mono, poses, frame.width, frame.height):
            self._publish(poses_message(result, node_id=self._node_id, expiry_s=self._expiry_s))
        count = len(poses)
        if count != self._last_count:
            self._publish(person_count_message(count))
            self._last_count = count


class RollingStats:
    """Frame times and inference durations over the last STATS_WINDOW frames."""

    def __init__(self, started_at: float):
        self.started_at = started_at
        self.frames = 0
        self._done_at: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._inference_ms: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)

    def add(self, now: float, inference_ms: float) -> None:
        self.frames += 1
        self._done_at.append(now)
        self._inference_ms.append(inference_ms)

    def snapshot(self, now: float) -> dict:
        fps = 0.0
        if len(self._done_at) >= 2 and self._done_at[-1] > self._done_at[0]:
            fps = (len(self._done_at) - 1) / (self._done_at[-1] - self._done_at[0])
        ms = np.asarray(self._inference_ms) if self._inference_ms else np.zeros(1)
        return {
            "fps": round(fps, 2),
            "inference_ms_p50": round(float(np.percentile(ms, 50)), 1),
            "inference_ms_p95": round(float(np.percentile(ms, 95)), 1),
            "frames": self.frames,
            "uptime_s": round(now - self.started_at, 1),
        }


class StatsSink(_BaseSink):
    """The retained `stats` message every `interval_s`, whether or not frames arrive.

    `figures()` returns the counters other parts own (capture, MQTT, snapshots,
    the model), read when stats are due.
    """

    def __init__(self, publish: Publish, *, interval_s: float, figures: Callable[[], dict[str, Any]],
                 started_at: float, wall_clock: Callable[[], float] = time.time):
        self._publish = publish
        self._interval_s = interval_s
        self._figures = figures
        self._wall_clock = wall_clock
        self.rolling = RollingStats(started_at)
        self._next_at = started_at

    def consume(self, result: FrameResult) -> None:
        self.rolling.add(time.monotonic(), result.inference_ms)

    def tick(self, now: float) -> None:
        if now < self._next_at:
            return
        self._next_at = now + self._interval_s
        self._publish(stats_message(
            {**self.rolling.snapshot(now), **self._figures(), "cpu_temp_c": read_cpu_temperature()},
            now=self._wall_clock(),
        ))


class SnapshotSink(_BaseSink):
    """Overlay snapshots: the policy decides on the inference thread; a worker
    thread renders, encodes, writes (`writer`) and publishes (`publish`)."""

    def __init__(
        self,
        policy: SnapshotPolicy,
        *,
        writer: SnapshotWriter | None,
        publish: Publish | None,
        labels: bool,
        min_score: float,
        jpeg_quality: int,
        queue_size: int = SNAPSHOT_QUEUE,
    ):
        self._policy = policy
        self._writer = writer
        self._publish = publish
        self._labels = labels
        self._min_score = min_score
        self._jpeg_quality = jpeg_quality
        self._queue: queue.Queue[tuple[FrameResult, str] | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._dropped = 0
        self._written = 0
        self._thread = threading.Thread(target=self._run, name="edgepose-snapshots", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Snapshots given up: the queue was full, or the disk refused."""
        with self._lock:
            return self._dropped

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    def consume(self, result: FrameResult) -> None:
        reason = self._policy.due(result.frame.captured_mono, len(result.poses))
        if reason is None:
            return
        try:
            self._queue.put_nowait((result, reason))
        except queue.Full:
            with self._lock:
                self._dropped += 1
            log.warning("snapshot (%s) dropped: %d still being written", reason, self._queue.qsize())

    def command(self, name: str) -> bool:
        if name != "snapshot":
            return False
        self._policy.request()
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                result, reason = item
                self._take(result, reason)
            except Exception:  # a rendering or disk surprise must not end snapshots for good
                with self._lock:
                    self._dropped += 1
                log.exception("snapshot failed")
            finally:
                self._queue.task_done()

    def _take(self, result: FrameResult, reason: str) -> None:
        image = render_overlay(result.frame.rgb, result.poses, labels=self._labels, min_score=self._min_score)
        jpeg = encode_jpeg(image, self._jpeg_quality)
        if self._writer is not None:
            try:
                path = self._writer.write(jpeg, result.frame.captured_at, f"{reason}_p{len(result.poses)}")
                log.info("snapshot %s (%s)", path, reason)
            except OSError as exc:
                with self._lock:
                    self._dropped += 1
                log.warning("snapshot not written: %s", exc)
            else:
                with self._lock:
                    self._written += 1
        if self._publish is not None:
            self._publish(snapshot_message(jpeg))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued snapshot is done (tests, shutdown); True when it is."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued (within `timeout`), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("snapshot writer still busy after %.0f s; leaving it", timeout)


class WatchdogSink(_BaseSink):
    """WATCHDOG=1 to systemd after every completed frame."""

    def __init__(self, notifier: Notifier):
        self._notifier = notifier

    def consume(self, result: FrameResult) -> None:
        self._notifier.watchdog()

