"""The daemon: builds the pipeline from the config and feeds it frames until stopped.

    capture thread -> latest-frame slot -> Pipeline (this thread) -> sinks

Capture runs in its own thread and only ever keeps the newest frame, so the
pipeline's latency stays one frame however slow inference is. This module is
the one place that wires sources, the estimator, stages and sinks together
(see pipeline.py for the stages); nothing here blocks on the broker or the
disk: an outage costs messages, never frames.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from .capture import CaptureLoop, LatestFrameSlot
from .config import Config
from .core import Frame
from .errors import ConfigError, EdgePoseError, ExitCode
from .estimators import Estimator, open_estimator
from .messages import PosesPolicy
from .notify import Notifier
from .pipeline import EstimateStage, Pipeline
from .sinks import MqttSink, SnapshotSink, StatsSink, WatchdogSink
from .snapshots import SnapshotPolicy, SnapshotWriter
from .sources import open_source

log = logging.getLogger(__name__)

#: How long start-up waits for the first frame before reporting READY anyway.
FIRST_FRAME_TIMEOUT_S = 20.0
#: How long the loop waits for a frame before ticking the sinks (stats) anyway.
IDLE_TICK_S = 0.5


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


def _make_publisher(config: Config, commands: "queue.Queue[str]"):
    """The MQTT adapter; commands arrive on paho's thread and only go into the queue."""
    if not config.mqtt.enabled:
        return None
    from .mqtt import MqttPublisher

    return MqttPublisher(config.mqtt, config.node.id, on_command=commands.put)


def _snapshot_writer(config: Config) -> SnapshotWriter | None:
    snapshots = config.snapshots
    if not snapshots.enabled:
        return None
    try:
        return SnapshotWriter(snapshots.dir, keep=snapshots.keep, max_bytes=snapshots.max_bytes)
    except OSError as exc:
        raise ConfigError(f"snapshots.dir: cannot use {snapshots.dir}: {exc.strerror or exc}") from exc


def build_pipeline(config: Config, estimator: Estimator, *, publisher, notifier: Notifier,
                   capture: CaptureLoop, started_at: float) -> Pipeline:
    """The one place the stages and sinks are chosen and put in order."""
    info = estimator.info
    sinks: list = []
    snapshot_sink = None
    writer = _snapshot_writer(config)
    publish = publisher.publish if publisher is not None else None
    if writer is not None or (publish is not None and config.mqtt.publish_snapshot):
        snap = config.snapshots
        snapshot_sink = SnapshotSink(
            SnapshotPolicy(snap.interval_s, snap.on_count_change, snap.cooldown_s),
            writer=writer,
            publish=publish if config.mqtt.publish_snapshot else None,
            labels=snap.labels,
            min_score=config.decode.min_part_score,
            jpeg_quality=snap.jpeg_quality,
        )
    if publish is not None:
        sinks.append(MqttSink(
            publish,
            node_id=config.node.id,
            poses_policy=PosesPolicy(config.mqtt.poses_mode, config.mqtt.poses_interval_s,
                                     min_part_score=config.decode.min_part_score),
            expiry_s=config.mqtt.poses_expiry_s,
        ))

        def figures() -> dict:
            counts = capture.stats
            return {
                "dropped_frames": counts.dropped_frames,
                "skipped_frames": counts.skipped_frames,
                "corrupt_frames": counts.corrupt_frames,
                "source_errors": counts.source_errors,
                "source_reopens": counts.reopen_count,
                "mqtt_dropped": publisher.dropped,
                "snapshots_dropped": snapshot_sink.dropped if snapshot_sink is not None else 0,
                "accelerator": info.accelerator,
                "runtime": info.runtime,
                "precision": info.precision,
                "threads": info.threads,
                "model": info.label,
            }

        sinks.append(StatsSink(publish, interval_s=config.mqtt.stats_interval_s, figures=figures,
                               started_at=started_at))
    if snapshot_sink is not None:
        sinks.append(snapshot_sink)
    sinks.append(WatchdogSink(notifier))
    return Pipeline(EstimateStage(estimator), sinks=sinks)


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


def _take_commands(commands: "queue.Queue[str]", pipeline: Pipeline) -> None:
    """Commands queued by paho's thread; acted on here, between frames."""
    while True:
        try:
            name = commands.get_nowait()
        except queue.Empty:
            return
        pipeline.command(name)


def run_daemon(config: Config, *, duration_s: float | None = None, stop: threading.Event | None = None,
               estimator: Estimator | None = None) -> int:
    """Run until SIGTERM/SIGINT, the end of a non-looping file (or `duration_s`);
    returns the process exit code. `estimator` replaces the one the config
    names (tests, and programs that embed edgepose with a model of their own)."""
    stop_flag = StopFlag()
    if stop is not None:
        stop_flag.event = stop
    elif threading.current_thread() is threading.main_thread():
        stop_flag.install()
    notifier = Notifier.from_env()
    notifier.status("loading model")

    if estimator is None:
        estimator = open_estimator(config.model, config.decode)
    info = estimator.info
    started_at = time.monotonic()
    slot = LatestFrameSlot()
    source_cfg = config.source
    capture = CaptureLoop(
        lambda: open_source(source_cfg.uri, width=source_cfg.width, height=source_cfg.height,
                            loop=source_cfg.loop, lores_size=info.input_size),
        slot,
        max_fps=source_cfg.max_fps,
        reopen_delay_s=source_cfg.reopen_delay_s,
        reopen_delay_max_s=source_cfg.reopen_delay_max_s,
        stop_at_end=not source_cfg.loop,
    )
    commands: queue.Queue[str] = queue.Queue()
    publisher = _make_publisher(config, commands)
    pipeline = build_pipeline(config, estimator, publisher=publisher, notifier=notifier,
                              capture=capture, started_at=started_at)

    if publisher is not None:
        publisher.start()
    capture.start()
    deadline = started_at + duration_s if duration_s else None
    exit_code = ExitCode.OK
    try:
        frame = _wait_first_frame(slot, stop_flag.event, FIRST_FRAME_TIMEOUT_S)
        notifier.ready()
        notifier.status(f"running {info.label} on {info.accelerator}")
        log.info("ready: %s (%s) on %s, source %s", info.label, info.precision, info.accelerator,
                 source_cfg.uri)
        while not stop_flag.event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if frame is not None:
                pipeline.process(frame)
            _take_commands(commands, pipeline)
            pipeline.tick(time.monotonic())
            frame = slot.get(timeout=IDLE_TICK_S)
            if frame is None and slot.closed:  # the capture loop has ended
                if capture.fatal_error is not None:
                    log.error("%s", capture.fatal_error)
                    exit_code = capture.fatal_error.exit_code
                else:
                    log.info("%s ended: stopping", capture.source_description or source_cfg.uri)
                break
    finally:
        notifier.stopping()
        capture.stop()
        capture.join(timeout=2.0)
        pipeline.close()
        if publisher is not None:
            publisher.stop()
        estimator.close()
        log.info("stopped after %d frames", pipeline.frames)
    return int(exit_code)


def check_installation(config: Config, report: Callable[[str], None]) -> bool:
    """Open the model, probe the source and the broker; one line each. True if all pass."""
    ok = True
    lores = None
    try:
        estimator = open_estimator(config.model, config.decode)
        info = estimator.info
        lores = info.input_size
        report(f"model: ok ({info.name}: {info.path}, {info.precision}, {info.accelerator}, "
               f"{info.runtime}, input {info.input_size[0]}x{info.input_size[1]}, {info.threads} threads)")
        estimator.close()
    except EdgePoseError as exc:
        ok = False
        report(f"model: FAIL {exc}")

    from .sources import probe_source

    source_ok, detail = probe_source(config.source.uri, width=config.source.width,
                                     height=config.source.height, lores_size=lores)
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
