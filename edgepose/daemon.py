"""The daemon: builds the pipeline from the config, feeds it frames until stopped,
supervises its threads and feeds the systemd watchdog.

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
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .capture import SOURCE_OK, SOURCE_STARTING, CaptureLoop, LatestFrameSlot
from .config import Config, check_writable
from .core import Frame, Message
from .errors import ConfigError, ExitCode
from .estimators import Estimator, open_estimator
from .messages import reply_message
from .notify import Notifier, watchdog_interval
from .pipeline import EstimateStage, Pipeline
from .scene import ACK_FALL, EventsStage, MotionGateStage, scene_stages
from .sinks import MqttSink, PosesPolicy, Recorder, SnapshotStage, StatsSink
from .sinks.snapshots import SnapshotPolicy, SnapshotWriter
from .sources import open_source
from .statefile import StateFile
from .zones import Zone

if TYPE_CHECKING:
    from .devtools.faults import Faults

log = logging.getLogger(__name__)

#: How long start-up waits for the first frame before reporting READY anyway.
FIRST_FRAME_TIMEOUT_S = 20.0
#: Python's thread switch interval in the daemon (the default is 5 ms). The capture
#: thread's preparation and the stages' thread both run Python between numpy calls;
#: with 5 ms a thread that needs the interpreter back can wait that long behind the
#: other (what 1 ms gained: docs/performance-history.md).
SWITCH_INTERVAL_S = 0.001
#: How long the loop waits for a frame before ticking the sinks (stats) anyway.
IDLE_TICK_S = 0.5
#: ack_fall is idempotent and safe: a second press a second later is acted on
#: (the snapshot command has the snapshot cooldown); this only bounds a flood.
ACK_FALL_COOLDOWN_S = 0.5


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


def _make_publisher(config: Config, commands: "queue.Queue[str]", memory: StateFile | None = None):
    """The MQTT adapter; commands arrive on paho's thread and only go into the queue.

    Home Assistant discovery removes what the node announced before and no longer
    has (remembered in the state file; the publisher also reads the broker's)."""
    if not config.mqtt.enabled:
        return None
    from .mqtt import MqttPublisher
    from .mqtt import discovery

    memory = memory or StateFile(None)
    announced = discovery.for_config(config, memory) if config.mqtt.home_assistant else None
    return MqttPublisher(config.mqtt, config.node.id, on_command=commands.put, discovery=announced,
                         command_cooldown_s=config.snapshots.cooldown_s,
                         command_cooldowns={ACK_FALL: ACK_FALL_COOLDOWN_S},
                         on_discovery=lambda msgs: discovery.remember(memory, msgs))


#: What the start-up log says snapshots show (snapshots.privacy).
PRIVACY_LOG = {
    "off": "the camera picture with the overlay (snapshots.privacy = \"off\")",
    "skeleton": "the overlay on a plain background, never the camera picture (snapshots.privacy)",
    "blur": "the overlay on the picture blurred beyond recognition, never the picture itself (snapshots.privacy)",
}

#: Outbox counters that count messages given up.
OUTBOX_DROPS = ("dropped_telemetry", "dropped_events", "dropped_critical")


def outbox_sender(outbox):
    """Events into the disk outbox: critical ones (falls) dropped last, everything in order, ids kept."""
    from .events import EVENT_KINDS
    from .outbox import PRIORITY_CRITICAL, PRIORITY_EVENT, OutboxMessage

    def send(event, message) -> bool:
        priority = PRIORITY_CRITICAL if EVENT_KINDS[event.type].critical else PRIORITY_EVENT
        return outbox.put(OutboxMessage(message.topic, message.payload, event.id, event.wall_time, priority))

    return send


def _snapshot_writer(config: Config) -> SnapshotWriter | None:
    snapshots = config.snapshots
    if not snapshots.enabled:
        return None
    try:
        return SnapshotWriter(snapshots.dir, keep=snapshots.keep, max_bytes=snapshots.max_bytes)
    except OSError as exc:
        raise ConfigError(f"snapshots.dir: cannot use {snapshots.dir}: {exc.strerror or exc}") from exc


def build_pipeline(config: Config, estimator: Estimator, *, publisher, capture: CaptureLoop,
                   started_at: float, boot: str | None = None, record: Path | None = None,
                   outbox=None, threaded: bool = True, memory: StateFile | None = None) -> Pipeline:
    """The one place the stages and sinks are chosen and put in order.

    `boot` makes event ids unique per start (default: a random token; the
    outbox keeps ids across restarts, so they must never repeat); `record`
    writes every poses message to that file (`edgepose replay` reads it);
    `outbox` carries events across outages and restarts; `memory` keeps who is
    present across restarts."""
    gate = MotionGateStage(config.motion) if config.motion.enabled else None
    stages: list = scene_stages(config, config.node.id, boot or secrets.token_hex(4), gate,
                                memory=memory, answer=_replier(publisher))
    events_stage = next(s for s in stages if isinstance(s, EventsStage))
    writer = _snapshot_writer(config)
    sinks: list = []
    publish = _outputs(publisher, record, sinks)
    snapshot_stage = None
    if writer is not None or (publisher is not None and config.mqtt.publish_snapshot):
        snapshot_stage = _snapshot_stage(config, writer, publisher)
        stages.append(snapshot_stage)
    if publish is not None:
        sinks.append(MqttSink(
            publish,
            send_event=outbox_sender(outbox) if outbox is not None else None,
            node_id=config.node.id,
            poses_policy=PosesPolicy(config.mqtt.poses_mode, config.mqtt.poses_interval_s,
                                     min_part_score=config.decode.min_part_score),
            expiry_s=config.mqtt.poses_expiry_s,
        ))
    if publisher is not None:
        figures = _stats_figures(estimator.info, capture, publisher, outbox, snapshot_stage, gate, events_stage)
        sinks.append(StatsSink(publish, interval_s=config.mqtt.stats_interval_s, figures=figures,
                               started_at=started_at))
    # The gate decides on the next frame from what it saw of this one: the stages up to
    # and including its feedback run on the inference thread, the rest on their own.
    inline = stages.index(gate) + 1 if gate is not None else 0
    return Pipeline(EstimateStage(estimator), gate=gate, stages=stages, sinks=sinks, threaded=threaded,
                    inline=inline)


def _replier(publisher) -> Callable[[str, int], None]:
    """How an ``ack_fall`` is answered: a ``reply`` message, where there is a broker."""

    def answer(command: str, cleared: int) -> None:
        if publisher is not None:
            publisher.publish(reply_message(command, "acknowledged" if cleared else "no_fall",
                                            now=time.time(), falls_cleared=cleared))

    return answer


def _outputs(publisher, record: Path | None, sinks: list) -> Callable[[Message], None] | None:
    """Where messages go: the broker, and a recording (`record`, also a sink: it is closed)."""
    outputs: list = [publisher.publish] if publisher is not None else []
    if record is not None:
        recorder = Recorder(record)
        outputs.append(recorder)
        sinks.append(recorder)
    if not outputs:
        return None

    def publish_all(message: Message) -> None:
        for output in outputs:
            output(message)

    return publish_all


def _snapshot_stage(config: Config, writer: SnapshotWriter | None, publisher) -> SnapshotStage:
    snap = config.snapshots
    stage = SnapshotStage(
        SnapshotPolicy(snap.interval_s, snap.on_count_change, snap.cooldown_s),
        writer=writer,
        publish=publisher.publish if publisher is not None and config.mqtt.publish_snapshot else None,
        labels=snap.labels,
        min_score=config.decode.min_part_score,
        jpeg_quality=snap.jpeg_quality,
        zones=[Zone.from_config(z) for z in config.zones],
        privacy=snap.privacy,
    )
    log.info("snapshots: %s", PRIVACY_LOG[snap.privacy])
    return stage


def _stats_figures(info, capture: CaptureLoop, publisher, outbox, snapshot_stage: SnapshotStage | None,
                   gate: MotionGateStage | None, events_stage: EventsStage) -> Callable[[], dict]:
    """The figures in ``stats`` that other parts own, read when stats are due."""

    def figures() -> dict:
        counts = capture.stats
        box = outbox.stats() if outbox is not None else None
        return {
            "dropped_frames": counts.dropped_frames,
            "skipped_frames": counts.skipped_frames,
            "corrupt_frames": counts.corrupt_frames,
            "source_errors": counts.source_errors,
            "source_reopens": counts.reopen_count,
            "mqtt_dropped": publisher.dropped,
            "snapshots_dropped": snapshot_stage.dropped if snapshot_stage is not None else 0,
            "accelerator": info.accelerator,
            "runtime": info.runtime,
            "precision": info.precision,
            "threads": info.threads,
            "model": info.label,
            "gated_frames": gate.skipped if gate is not None else 0,
            "source_state": capture.state,
            "source_error": capture.last_error or None,
            "mqtt_connected": publisher.connected,
            "outbox_queued": int(box["queued"]) if box else 0,
            "outbox_dropped": sum(int(box[k]) for k in OUTBOX_DROPS) if box else 0,
            "fall_acks_without_fall": events_stage.acks_without_fall,
        }

    return figures


class Heartbeat:
    """WATCHDOG=1 from the main loop, and STATUS= whenever the node's state changes.

    The policy (systemd/edgepose.service says it too): a ping proves the
    pipeline is alive, not that frames arrive. `beat` is called by the main
    loop after each frame and each idle wait, so a stuck inference stops the
    pings; it pings only while the capture thread shows progress (a read
    returned, or a reopen is scheduled), so a read that never returns stops
    them too. A source that is down and being retried keeps them going: it is
    a degraded state the node reports (STATUS=, stats, the log), not a reason to
    restart the service and reload the model every WatchdogSec.
    """

    def __init__(self, notifier: Notifier, capture: CaptureLoop, label: str):
        self._notifier = notifier
        self._capture = capture
        self._label = label
        interval = watchdog_interval()
        #: Ping at twice the rate systemd needs; without a watchdog, once a second is plenty.
        self.period = interval / 2 if interval else 1.0
        self._next_ping = 0.0
        self._status = ""

    def beat(self, now: float) -> None:
        capture = self._capture
        if capture.healthy(now) and now >= self._next_ping:
            self._notifier.watchdog()
            self._next_ping = now + self.period
        if capture.state in (SOURCE_OK, SOURCE_STARTING):
            status = f"running {self._label}"
        else:
            status = f"running {self._label}; source {capture.state}: {capture.last_error}"
        if status != self._status:
            self._status = status
            self._notifier.status(status)


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
        pipeline.command(name, time.monotonic(), time.time())


def _dead_part(capture: CaptureLoop, publisher, outbox, pipeline: Pipeline) -> str | None:
    """The supervised thread that died, if one did: the daemon then exits 70 so
    systemd restarts it, never running on half alive."""
    if not pipeline.alive:
        return f"the stages' thread died ({type(pipeline.crashed).__name__}: {pipeline.crashed})"
    if capture.crashed is not None:
        return f"the capture thread died ({type(capture.crashed).__name__}: {capture.crashed})"
    if publisher is not None and not publisher.alive:
        return "the MQTT network thread died"
    if outbox is not None and not outbox.alive:
        return "the outbox thread died"
    return None


def _open_outbox(config: Config, publisher):
    """The disk outbox for events, started before the publisher connects (it listens for connects)."""
    if publisher is None or not config.outbox.enabled:
        return None
    import sqlite3

    from .outbox import Outbox

    try:
        return Outbox.from_config(config.outbox, publisher).start()
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"outbox.path: cannot open {config.outbox.path}: {exc}") from exc


def run_daemon(config: Config, *, duration_s: float | None = None, stop: threading.Event | None = None,
               estimator: Estimator | None = None, record: Path | None = None, faults: Faults | None = None) -> int:
    """Run until SIGTERM/SIGINT, the end of a non-looping file (or `duration_s`);
    returns the process exit code. `estimator` replaces the one the config
    names (tests, and programs that embed edgepose with a model of their own);
    `faults` are a test's (devtools/faults.py), never set in a real deployment."""
    stop_flag = StopFlag()
    if stop is not None:
        stop_flag.event = stop
    elif threading.current_thread() is threading.main_thread():
        stop_flag.install()
    check_writable(config)
    memory = StateFile(Path(config.node.state_file))
    notifier = Notifier.from_env()
    notifier.status("loading model")

    if estimator is None:
        estimator = open_estimator(config.model, config.decode)
    if faults is not None:
        estimator = faults.wrap_estimator(estimator)
    info = estimator.info
    started_at = time.monotonic()
    slot = LatestFrameSlot()
    capture = _capture_loop(config, info.lores_size, slot, faults)
    commands: queue.Queue[str] = queue.Queue()
    publisher = _make_publisher(config, commands, memory)
    outbox = _open_outbox(config, publisher)
    pipeline = build_pipeline(config, estimator, publisher=publisher, capture=capture,
                              started_at=started_at, record=record, outbox=outbox, memory=memory)
    # What needs no earlier frame is done on the capture thread while the model runs.
    capture.prepare = pipeline.prepare
    node = _Running(capture, slot, pipeline, commands, publisher, outbox,
                    Heartbeat(notifier, capture, f"{info.label} on {info.accelerator}"), stop_flag.event,
                    started_at + duration_s if duration_s else None, config.source.uri)
    switch_interval = sys.getswitchinterval()  # restored at the end (tests run the daemon in-process)
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    if publisher is not None:
        publisher.start()
    capture.start()
    first_frame_wait = FIRST_FRAME_TIMEOUT_S
    if node.deadline is not None:  # --duration also bounds the wait for a first frame
        first_frame_wait = max(0.0, min(first_frame_wait, node.deadline - time.monotonic()))
    exit_code = ExitCode.OK
    try:
        frame = _wait_first_frame(slot, stop_flag.event, first_frame_wait)
        notifier.ready()
        log.info("ready: %s (%s) on %s, source %s", info.label, info.precision, info.accelerator,
                 config.source.uri)
        exit_code = node.loop(frame)
    finally:
        notifier.stopping()
        capture.stop()
        capture.join(timeout=2.0)
        pipeline.close()
        if outbox is not None:
            outbox.stop()
        if publisher is not None:
            publisher.stop()
        memory.close()
        estimator.close()
        sys.setswitchinterval(switch_interval)
        log.info("stopped after %d frames", pipeline.frames)
    return int(exit_code)


def _capture_loop(config: Config, lores_size, slot: LatestFrameSlot, faults: Faults | None) -> CaptureLoop:
    source_cfg = config.source
    return CaptureLoop(
        lambda: open_source(source_cfg.uri, width=source_cfg.width, height=source_cfg.height,
                            loop=source_cfg.loop, lores_size=lores_size,
                            fps=source_cfg.max_fps or None),
        slot,
        max_fps=source_cfg.max_fps,
        reopen_delay_s=source_cfg.reopen_delay_s,
        reopen_delay_max_s=source_cfg.reopen_delay_max_s,
        stop_at_end=not source_cfg.loop,
        **(faults.capture_options() if faults is not None else {}),
    )


@dataclass
class _Running:
    """What the main loop drives and supervises."""

    capture: CaptureLoop
    slot: LatestFrameSlot
    pipeline: Pipeline
    commands: queue.Queue[str]
    publisher: Any
    outbox: Any
    heartbeat: Heartbeat
    stop: threading.Event
    deadline: float | None  # monotonic: --duration
    source_uri: str

    def loop(self, frame: Frame | None) -> ExitCode:
        """Frames through the pipeline, commands between them, the watchdog fed, until a stop,
        the deadline, the end of the source or a dead thread; the exit code."""
        capture, pipeline = self.capture, self.pipeline
        while not self.stop.is_set():
            if self.deadline is not None and time.monotonic() >= self.deadline:
                if capture.finished.is_set() and capture.fatal_error is not None:
                    log.error("%s", capture.fatal_error)  # it failed for good before the time was up
                    return capture.fatal_error.exit_code
                break
            if frame is not None:
                pipeline.process(frame)
            _take_commands(self.commands, pipeline)
            now = time.monotonic()
            pipeline.tick(now)
            if (dead := _dead_part(capture, self.publisher, self.outbox, pipeline)) is not None:
                log.error("%s: exiting so that systemd restarts the service", dead)
                return ExitCode.SOFTWARE
            self.heartbeat.beat(now)
            frame = self.slot.get(timeout=IDLE_TICK_S)
            if frame is None and self.slot.closed and capture.finished.is_set():  # the capture loop has ended
                if capture.fatal_error is not None:
                    log.error("%s", capture.fatal_error)
                    return capture.fatal_error.exit_code
                if capture.ended:
                    log.info("%s ended: stopping", capture.source_description or self.source_uri)
                    break
        return ExitCode.OK
