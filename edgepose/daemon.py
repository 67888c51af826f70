"""The daemon: capture thread -> latest-frame slot -> one inference worker -> sinks.

Capture runs in its own thread and only ever keeps the newest frame, so the
worker's latency stays one frame however slow inference is. The worker (this
module's main loop, on the main thread) detects poses and hands them to the
sinks: MQTT messages, overlay snapshots, the systemd watchdog. Nothing here
blocks on the broker: a broker outage costs messages, never frames.
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from .backend import PoseModel, load_model
from .capture import CaptureLoop, LatestFrameSlot
from .config import Config, ModelConfig
from .core import Detection, Frame, Poses
from .detector import PoseDetector
from .errors import EdgePoseError, ExitCode
from .messages import (
    PosesPolicy,
    person_count_message,
    poses_message,
    snapshot_message,
    stats_message,
)
from .notify import Notifier
from .overlay import encode_jpeg, render_overlay
from .snapshots import SnapshotPolicy, SnapshotWriter
from .sources import open_source

log = logging.getLogger(__name__)

#: How long start-up waits for the first frame before reporting READY anyway.
FIRST_FRAME_TIMEOUT_S = 20.0
#: Frames the rolling fps / inference percentiles are computed over.
STATS_WINDOW = 300
CPU_TEMPERATURE_FILE = Path("/sys/class/thermal/thermal_zone0/temp")


def read_cpu_temperature() -> float | None:
    try:
        return round(int(CPU_TEMPERATURE_FILE.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


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


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between frames."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        log.info("%s received: finishing the frame in flight", signal.Signals(signum).name)
        self.event.set()


def open_model(model: ModelConfig) -> PoseModel:
    return load_model(model.path, stride=model.stride, input_size=model.input_size,
                      accelerator=model.accelerator, device=model.edgetpu_device,
                      threads=model.threads, quantized=model.quantized)


def _make_publisher(config: Config, commands: "queue.Queue[str]"):
    """The MQTT sink; commands arrive on paho's thread and only go into the queue."""
    if not config.mqtt.enabled:
        return None
    from .mqtt import MqttPublisher

    return MqttPublisher(config.mqtt, config.node.id, on_command=commands.put)


class Worker:
    """Detect poses in each frame and feed the sinks. Owns no threads."""

    def __init__(self, config: Config, model, detector: PoseDetector, publisher, snapshots, notifier, capture,
                 commands: "queue.Queue[str]"):
        self.config = config
        self.model = model
        self.detector = detector
        self.publisher = publisher
        self.snapshots = snapshots
        self.notifier = notifier
        self.capture = capture
        self.started = time.monotonic()
        self.stats = RollingStats(self.started)
        self.poses_policy = PosesPolicy(config.mqtt.poses_mode, config.mqtt.poses_interval_s,
                                        min_part_score=config.decode.min_part_score)
        self.snapshot_policy = SnapshotPolicy(config.snapshots.interval_s, config.snapshots.on_count_change,
                                              config.snapshots.cooldown_s)
        self.commands = commands
        self.last_person_count: int | None = None
        self.next_stats_at = self.started
        self.model_label = f"{model.name} {model.input_size[0]}x{model.input_size[1]}"

    def detect(self, frame: Frame) -> Poses:
        """Poses in `frame.rgb` pixels, found on the smaller inference copy when there is one."""
        if frame.inference_rgb is None:
            return self.detector.detect(frame.rgb)
        small = frame.inference_rgb
        poses = self.detector.detect(small)
        scale = np.array([frame.width / small.shape[1], frame.height / small.shape[0]], np.float32)
        return Poses(poses.xy * scale, poses.scores, poses.pose_scores)

    def process(self, frame: Frame) -> Detection:
        start = time.perf_counter()
        poses = self.detect(frame)
        detection = Detection(frame, poses, (time.perf_counter() - start) * 1000.0, self.model_label)
        now = time.monotonic()
        self.stats.add(now, detection.inference_ms)
        self._publish(detection, now)
        self._snapshot(detection, now)
        if now >= self.next_stats_at:
            self._publish_stats(now)
        self.notifier.watchdog()  # after each completed frame, never from a timer
        return detection

    def _publish(self, detection: Detection, now: float) -> None:
        count = len(detection.poses)
        if self.publisher is not None:
            if self.poses_policy.should_publish(now, detection.poses, detection.frame.width, detection.frame.height):
                self.publisher.publish(poses_message(
                    detection,
                    node_id=self.config.node.id,
                    model_name=self.model_label,
                    expiry_s=self.config.mqtt.poses_expiry_s,
                ))
            if count != self.last_person_count:
                self.publisher.publish(person_count_message(count))
        self.last_person_count = count

    def _snapshot(self, detection: Detection, now: float) -> None:
        reason = None
        self._take_commands()
        if self.snapshots is not None or (self.publisher is not None and self.config.mqtt.publish_snapshot):
            reason = self.snapshot_policy.due(now, len(detection.poses))
        if reason is None:
            return
        image = render_overlay(detection.frame.rgb, detection.poses, labels=self.config.snapshots.labels,
                               min_score=self.config.decode.min_part_score)
        jpeg = encode_jpeg(image, self.config.snapshots.jpeg_quality)
        if self.snapshots is not None:
            try:
                path = self.snapshots.write(jpeg, detection.frame.captured_at, f"{reason}_p{len(detection.poses)}")
                log.info("snapshot %s (%s)", path, reason)
            except OSError as exc:
                log.warning("snapshot not written: %s", exc)
        if self.publisher is not None and self.config.mqtt.publish_snapshot:
            self.publisher.publish(snapshot_message(jpeg))

    def _take_commands(self) -> None:
        """Commands queued by paho's thread; acted on here, between frames."""
        try:
            while True:
                if self.commands.get_nowait() == "snapshot":
                    self.snapshot_policy.request()
        except queue.Empty:
            pass

    def _publish_stats(self, now: float) -> None:
        self.next_stats_at = now + self.config.mqtt.stats_interval_s
        if self.publisher is None:
            return
        capture = self.capture.stats
        self.publisher.publish(stats_message({
            **self.stats.snapshot(now),
            "dropped_frames": capture.dropped_frames,
            "corrupt_frames": capture.corrupt_frames,
            "source_errors": capture.source_errors,
            "mqtt_dropped": self.publisher.dropped,
            "accelerator": self.model.accelerator,
            "cpu_temp_c": read_cpu_temperature(),
        }, now=time.time()))


def _wait_first_frame(slot: LatestFrameSlot, stop: threading.Event, timeout: float) -> Frame | None:
    """The first frame; None after `timeout` s, or at once when a stop is asked
    (SIGTERM must not wait out a camera that delivers nothing)."""
    give_up = time.monotonic() + timeout
    while not stop.is_set():
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            return None
        frame = slot.get(timeout=min(remaining, 0.5))
        if frame is not None or slot.closed:
            return frame
    return None


def run_daemon(config: Config, *, duration_s: float | None = None, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `duration_s`); returns the process exit code."""
    stop_flag = StopFlag()
    if stop is not None:
        stop_flag.event = stop
    elif threading.current_thread() is threading.main_thread():
        stop_flag.install()
    notifier = Notifier.from_env()
    notifier.status("loading model")

    model = open_model(config.model)
    detector = PoseDetector(model, **asdict(config.decode))

    snapshots = None
    if config.snapshots.enabled:
        snapshots = SnapshotWriter(config.snapshots.dir, keep=config.snapshots.keep,
                                   max_bytes=config.snapshots.max_bytes)

    slot = LatestFrameSlot()
    source_cfg = config.source
    capture = CaptureLoop(
        lambda: open_source(source_cfg.uri, width=source_cfg.width, height=source_cfg.height,
                            loop=source_cfg.loop, lores_size=model.input_size),
        slot,
        max_fps=source_cfg.max_fps,
        reopen_delay_s=source_cfg.reopen_delay_s,
        reopen_delay_max_s=source_cfg.reopen_delay_max_s,
    )
    commands: queue.Queue[str] = queue.Queue()
    publisher = _make_publisher(config, commands)
    worker = Worker(config, model, detector, publisher, snapshots, notifier, capture, commands)

    if publisher is not None:
        publisher.start()
    capture.start()
    deadline = time.monotonic() + duration_s if duration_s else None
    try:
        first = _wait_first_frame(slot, stop_flag.event, FIRST_FRAME_TIMEOUT_S)
        notifier.ready()
        notifier.status(f"running {worker.model_label} on {model.accelerator}")
        log.info("ready: %s on %s, source %s", worker.model_label, model.accelerator, source_cfg.uri)
        frame = first
        while not stop_flag.event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if frame is not None:
                worker.process(frame)
            frame = slot.get(timeout=0.5)
    finally:
        notifier.stopping()
        capture.stop()
        capture.join(timeout=2.0)
        if publisher is not None:
            publisher.stop()
        log.info("stopped after %d frames", worker.stats.frames)
    return int(ExitCode.OK)


def check_installation(config: Config, report: Callable[[str], None]) -> bool:
    """Open the model, probe the source and the broker; one line each. True if all pass."""
    ok = True
    try:
        model = open_model(config.model)
        report(f"model: ok ({model.path}, {model.accelerator}, input {model.input_size[0]}x"
               f"{model.input_size[1]}, stride {model.output_stride})")
    except EdgePoseError as exc:
        ok = False
        report(f"model: FAIL {exc}")

    from .sources import probe_source

    source_ok, detail = probe_source(config.source.uri, width=config.source.width, height=config.source.height)
    ok &= source_ok
    report(f"source: {'ok' if source_ok else 'FAIL'} {detail}")

    if config.mqtt.enabled:
        from .mqtt import probe

        broker_ok, detail = probe(config.mqtt, timeout=5.0)
        ok &= broker_ok
        report(f"broker: {'ok' if broker_ok else 'FAIL'} {detail}")
    else:
        report("broker: skipped (mqtt.enabled = false)")

    if config.snapshots.enabled:
        directory = Path(config.snapshots.dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe_file = directory / ".edgepose-check"
            probe_file.write_bytes(b"")
            probe_file.unlink()
            report(f"snapshots: ok ({directory})")
        except OSError as exc:
            ok = False
            report(f"snapshots: FAIL cannot write to {directory}: {exc.strerror or exc}")
    return bool(ok)
