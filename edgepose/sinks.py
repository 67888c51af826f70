"""Sinks: where a frame's result goes (MQTT messages, stats, the watchdog), and
the snapshot stage, which hands its work to a thread of its own.

Everything here that runs on the inference thread only decides and hands
over: MQTT publishing goes to the MQTT adapter's queue (mqtt.py), and
snapshots are rendered, JPEG-encoded, written and published by
`SnapshotStage`'s own thread through a small bounded queue, so a slow SD card
costs snapshots, never frames.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .constants import TOPIC_POSES
from .core import FrameResult, Message
from .errors import ConfigError
from .events import FALL_DETECTED
from .messages import (
    PosesPolicy,
    event_message,
    person_count_message,
    poses_message,
    snapshot_message,
    state_message,
    stats_message,
)
from .overlay import encode_jpeg, render_overlay
from .scene import FALL_SNAPSHOT
from .snapshots import REASON_FALL, SnapshotPolicy, SnapshotWriter
from .zones import Zone

log = logging.getLogger(__name__)

#: Frames the rolling fps / inference percentiles are computed over.
STATS_WINDOW = 300
#: The first stats go out this long after start (or after stats_interval_s, if shorter),
#: when a frame rate can be measured; then every stats_interval_s. A first message at
#: start read 0 fps for a whole interval (a minute by default).
FIRST_STATS_S = 5.0
#: Snapshots waiting to be rendered and written; one more is dropped and counted.
SNAPSHOT_QUEUE = 2
#: Poses messages waiting to be written to a recording.
RECORD_QUEUE = 256
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

    def command(self, name: str, now: float, wall: float) -> bool:
        return False

    def close(self) -> None:
        pass


class MqttSink(_BaseSink):
    """`poses` (per `mqtt.poses_mode`), `events`, and the retained `person_count` and
    `state`: the debounced scene where the events stage runs, else the raw count.

    The debounced scene goes out only once the events stage has decided it
    (`FrameResult.state_changed`): until then, the values retained from before a
    restart stand, rather than an empty room nobody has looked at yet."""

    def __init__(self, publish: Publish, *, node_id: str, poses_policy: PosesPolicy, expiry_s: int | None,
                 send_event: Callable[[Any, Message], bool] | None = None,
                 wall_clock: Callable[[], float] = time.time):
        self._publish = publish
        #: (event, its message) -> queued; the disk outbox where there is one.
        self._send_event = send_event or (lambda event, message: publish(message))
        self._node_id = node_id
        self._policy = poses_policy
        self._expiry_s = expiry_s
        self._wall_clock = wall_clock
        self._last_count: int | None = None

    def consume(self, result: FrameResult) -> None:
        frame, poses = result.frame, result.poses
        if self._policy.should_publish(frame.captured_mono, poses, frame.width, frame.height):
            self._publish(poses_message(result, node_id=self._node_id, expiry_s=self._expiry_s))
        for event in result.events:
            self._send_event(event, event_message(event, node_id=self._node_id))
        if result.state is not None:
            if not result.state_changed:
                return
            self._publish(state_message(result.state, now=self._wall_clock()))
            count = result.state.person_count
        else:
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
    """The retained `stats` message every `interval_s`, whether or not frames arrive;
    the first one `FIRST_STATS_S` after start, once a frame rate can be measured.

    `figures()` returns the counters other parts own (capture, MQTT, snapshots,
    the model), read when stats are due. `started_at` is monotonic; the wall-clock
    start (``started_at`` in the message) is derived from it once, here.
    """

    def __init__(self, publish: Publish, *, interval_s: float, figures: Callable[[], dict[str, Any]],
                 started_at: float, wall_clock: Callable[[], float] = time.time):
        self._publish = publish
        self._interval_s = interval_s
        self._figures = figures
        self._wall_clock = wall_clock
        self.rolling = RollingStats(started_at)
        self._started_wall = wall_clock() - max(0.0, time.monotonic() - started_at)
        self._next_at = started_at + min(FIRST_STATS_S, interval_s)

    def consume(self, result: FrameResult) -> None:
        self.rolling.add(time.monotonic(), result.inference_ms)

    def close(self) -> None:
        """A last stats message at a clean stop, so the retained counters are the final ones."""
        self._next_at = 0.0
        self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        if now < self._next_at:
            return
        self._next_at = now + self._interval_s
        self._publish(stats_message(
            {**self.rolling.snapshot(now), **self._figures(), "cpu_temp_c": read_cpu_temperature(),
             "started_at": self._started_wall},
            now=self._wall_clock(),
        ))


class SnapshotStage:
    """Overlay snapshots. A stage, not a sink, so the result (and a fall event) can
    carry the snapshot's file name: the decision and the name are made on the
    inference thread; rendering, encoding, writing (`writer`) and publishing
    (`publish`) happen on this stage's own thread, through a bounded queue.

    Reasons: a fall raised by the events stage, a command, a change of the
    (debounced, where presence runs) person count, the interval. `privacy`
    (``snapshots.privacy``) decides what every one of them shows behind the overlay,
    on disk and on MQTT alike: one JPEG is made per snapshot.
    """

    def __init__(
        self,
        policy: SnapshotPolicy,
        *,
        writer: SnapshotWriter | None,
        publish: Publish | None,
        labels: bool,
        min_score: float,
        jpeg_quality: int,
        zones: Sequence[Zone] = (),
        privacy: str,
        queue_size: int = SNAPSHOT_QUEUE,
    ):
        self._policy = policy
        self._privacy = privacy
        self._writer = writer
        self._publish = publish
        self._labels = labels
        self._min_score = min_score
        self._jpeg_quality = jpeg_quality
        self._zones = tuple(zones)
        self._queue: queue.Queue[tuple[FrameResult, str, Path | None] | None] = queue.Queue(maxsize=queue_size)
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

    def process(self, result: FrameResult) -> FrameResult:
        count = len(result.poses) if result.state is None else result.state.person_count
        reason = self._policy.due(result.frame.captured_mono, count)
        if result.snapshot == FALL_SNAPSHOT:
            reason = REASON_FALL  # a fall is always taken, whatever the cooldown
        if reason is None:
            return result.replace(snapshot=None)
        tag = f"{reason}_p{len(result.poses)}"
        path = self._writer.reserve(result.frame.captured_at, tag) if self._writer is not None else None
        try:
            self._queue.put_nowait((result, tag, path))
        except queue.Full:
            with self._lock:
                self._dropped += 1
            log.warning("snapshot (%s) dropped: %d still being written", reason, self._queue.qsize())
            return result.replace(snapshot=None)
        name = path.name if path is not None else None
        events = tuple(
            dataclasses.replace(e, fields={**e.fields, "snapshot": name})
            if e.type == FALL_DETECTED and name else e
            for e in result.events
        )
        return result.replace(snapshot=name, events=events)

    def command(self, name: str, now: float, wall: float) -> bool:
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
                self._take(*item)
            except Exception:  # a rendering or disk surprise must not end snapshots for good
                with self._lock:
                    self._dropped += 1
                log.exception("snapshot failed")
            finally:
                self._queue.task_done()

    def _take(self, result: FrameResult, tag: str, path: Path | None) -> None:
        image = render_overlay(result.frame.rgb, result.poses, labels=self._labels, min_score=self._min_score,
                               zones=self._zones, privacy=self._privacy)
        jpeg = encode_jpeg(image, self._jpeg_quality)
        if self._writer is not None:
            try:
                path = self._writer.write(jpeg, result.frame.captured_at, tag, path)
                log.info("snapshot %s", path)
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


class Recorder(_BaseSink):
    """`edgepose run --record FILE`: every published ``poses`` message, one per line
    (the format `edgepose replay` reads), written on a thread of its own."""

    def __init__(self, path: Path, queue_size: int = RECORD_QUEUE):
        from .replay import RecordingWriter

        try:
            self._stream = open(path, "ab")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(f"--record: cannot write {path}: {exc.strerror or exc}") from exc
        self._writer = RecordingWriter(self._stream)
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="edgepose-recorder", daemon=True)
        self._thread.start()

    def __call__(self, message: Message) -> bool:
        if message.topic != TOPIC_POSES:
            return False
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._writer.write(message)
            except OSError as exc:
                self.dropped += 1
                log.warning("recording: %s", exc)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        self._stream.close()
