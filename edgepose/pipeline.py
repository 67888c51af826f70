"""The stages of one frame, in order, and the one object that runs them.

    source -> capture thread -> latest-frame slot          (capture.py, sources.py)
                 `prepare`     work that needs no earlier frame, done ahead while the
                               model runs on the frame before: the gate's thumbnail,
                               the model's input (`Estimator.prepare`, where a family has it)
      -> gate          skip frames where nothing changed     (a `FrameGate`: scene.MotionGateStage)
      -> estimate      Frame -> FrameResult                  (`EstimateStage`, any Estimator)
      -> stages        FrameResult -> FrameResult            (scene.py: exclusion zones, track,
                                                               events, smooth; then the snapshot decision)
      -> sinks         FrameResult -> MQTT, stats, watchdog  (sinks/)

The inference thread gates and estimates; the stages and sinks run on a
thread of the pipeline's own (`threaded=True`), and neither ever waits on the
disk or the network: sinks only decide and enqueue; writing and publishing
happen on their own threads (sinks/, paho's network thread). The daemon
(daemon.py) builds a `Pipeline` and feeds it frames; tests build one from
stand-in parts.

Where new things go: a stage that changes or annotates poses is a
`ResultStage` in `stages`; a new output is a `Sink`; a model is an Estimator
(estimators/).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .core import Frame, FrameResult
from .estimators import Estimator

log = logging.getLogger(__name__)

#: Results waiting for the stages' thread; one more holds the inference thread back.
PIPELINE_QUEUE = 2
#: How long closing waits for the stages' thread to finish what is queued.
CLOSE_TIMEOUT_S = 5.0


class FrameGate(Protocol):
    """Decides before estimation whether a frame is worth running the model on.
    A gate may also have `prepare(frame) -> Frame`: the part of its work that needs
    no earlier frame, which `Pipeline.prepare` runs ahead on the capture thread;
    and `expects_to_run(now) -> bool`: whether it will almost surely admit a frame
    captured at `now` (then the model's input is worth making ahead)."""

    def admit(self, frame: Frame) -> bool: ...


class ResultStage(Protocol):
    """One step after estimation (tracking, smoothing, zones, events, the snapshot
    decision): pure over its own state. A stage may also have `command(name, now,
    wall) -> bool` (commands from MQTT) and `close()`."""

    def process(self, result: FrameResult) -> FrameResult: ...


class Sink(Protocol):
    """Where results go. `consume` runs on the inference thread: decide and enqueue, never block."""

    def consume(self, result: FrameResult) -> None: ...

    def tick(self, now: float) -> None:
        """Called between frames and while no frame comes (now: time.monotonic())."""
        ...

    def command(self, name: str, now: float, wall: float) -> bool:
        """Act on a command (from MQTT) at monotonic `now`, wall-clock `wall`; True when handled."""
        ...

    def close(self) -> None: ...


class EstimateStage:
    """Frame -> FrameResult: the estimator on the frame, or on its smaller inference copy."""

    def __init__(self, estimator: Estimator):
        self.estimator = estimator

    def prepare(self, frame: Frame) -> Frame:
        """The frame with its model input made (`Estimator.prepare`), when the
        estimator's family can make it ahead; else the frame as it is."""
        prepare = getattr(self.estimator, "prepare", None)
        if prepare is None:
            return frame
        return dataclasses.replace(frame, model_input=prepare(frame.model_image))

    def __call__(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        if frame.scene_cut:  # a crop that followed someone in the last scene means nothing here
            self.estimator.reset()
        small = frame.inference_rgb
        image = frame.model_image
        if frame.model_input is None:
            poses = self.estimator.estimate(image)
        else:
            poses = self.estimator.estimate(image, frame.model_input)
        if small is not None:  # picamera2's lores stream: same picture, fewer pixels
            scale = np.array([frame.width / small.shape[1], frame.height / small.shape[0]], np.float32)
            poses = poses.replace(
                xy=poses.xy * scale,
                boxes=None if poses.boxes is None else poses.boxes * np.tile(scale, 2),
            )
        inference_ms = (time.perf_counter() - start) * 1000.0
        if frame.model_input is not None:  # the part done ahead, on the capture thread
            inference_ms += frame.model_input.preprocess_ms
            frame = dataclasses.replace(frame, model_input=None)  # used: not kept with the result
        return FrameResult(frame, poses, inference_ms, self.estimator.info.label)


class Pipeline:
    """Runs one frame through gate, estimate, stages and sinks.

    `threaded=False` (tests, replay): everything on the caller's thread.
    `threaded=True` (the daemon): the caller's thread (the inference thread)
    gates and estimates only; a thread of the pipeline's own runs the stages,
    the sinks, their commands and their ticks in order, behind a small bounded
    queue, so tracking, events and building messages overlap the next
    inference instead of delaying it. A full queue holds the inference thread
    back (nothing is dropped), so a stuck stage stops the whole loop, and with
    it the watchdog pings.
    """

    def __init__(
        self,
        estimate: EstimateStage,
        *,
        gate: FrameGate | None = None,
        stages: Sequence[ResultStage] = (),
        sinks: Sequence[Sink] = (),
        threaded: bool = False,
        inline: int = 0,
        idle_tick_s: float = 0.5,
    ):
        self.estimate = estimate
        self.gate = gate
        self.stages = tuple(stages)
        #: The first `inline` stages run on the inference thread even when threaded:
        #: the ones the gate must have seen before it decides on the next frame.
        self._inline, self._queued = self.stages[:inline], self.stages[inline:]
        self.sinks = tuple(sinks)
        self.frames = 0  # frames through every stage and sink
        self.gated = 0  # frames the gate skipped
        self._idle_tick_s = idle_tick_s
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self.crashed: BaseException | None = None
        self._closing = False
        if threaded:
            self._queue = queue.Queue(maxsize=PIPELINE_QUEUE)
            self._thread = threading.Thread(target=self._run, name="edgepose-stages", daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        """False when the stages' thread died (the daemon then exits for systemd)."""
        return self._thread is None or self._thread.is_alive() or self._closing

    def prepare(self, frame: Frame, *, model_input: bool = True) -> Frame:
        """Work on a frame that needs nothing from earlier frames, so the capture thread
        does it ahead of inference, while the model runs on the frame before
        (`CaptureLoop.prepare`): the gate's thumbnail, and the model's input when the
        gate expects to run the model on this frame and `model_input` (the capture
        thread knows the frame will be taken, not replaced). `process` does
        whatever was not done here itself."""
        gate = self.gate
        prepare = getattr(gate, "prepare", None)
        if prepare is not None:
            frame = prepare(frame)
        if not model_input:
            return frame
        expects = getattr(gate, "expects_to_run", None)
        if gate is not None and (expects is None or not expects(frame.captured_mono)):
            return frame  # a static scene: no input made for a frame the gate will skip
        return self.estimate.prepare(frame)

    def process(self, frame: Frame) -> FrameResult | None:
        """Estimate the frame and send it through the stages and sinks; None when gated
        out. Threaded, the result returned is the model's, before the stages."""
        if self.gate is not None and not self.gate.admit(frame):
            self.gated += 1
            return None
        result = self.estimate(frame)
        for stage in self._inline:
            result = stage.process(result)
        if self._queue is None:
            return self._finish(result)
        self._queue.put((self._finish, (result,)))
        return result

    def _finish(self, result: FrameResult) -> FrameResult:
        for stage in self._queued:
            result = stage.process(result)
        self.frames += 1
        for sink in self.sinks:
            sink.consume(result)
        return result

    def tick(self, now: float) -> None:
        """Stats and other timed work; the stages' thread ticks itself when threaded."""
        if self._queue is None:
            self._tick(now)

    def _tick(self, now: float) -> None:
        for sink in self.sinks:
            sink.tick(now)

    def command(self, name: str, now: float, wall: float) -> None:
        """A command from MQTT, between frames: the first stage or sink that knows it acts
        (in order with the frames, on the stages' thread when threaded)."""
        if self._queue is None:
            self._command(name, now, wall)
        else:
            self._queue.put((self._command, (name, now, wall)))

    def _command(self, name: str, now: float, wall: float) -> None:
        for part in (*self.stages, *self.sinks):
            handler = getattr(part, "command", None)
            if handler is not None and handler(name, now, wall):
                return
        log.info("command %r: nothing here acts on it", name)

    def _run(self) -> None:
        assert self._queue is not None
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._idle_tick_s)
                except queue.Empty:
                    self._tick(time.monotonic())
                    continue
                if item is None:
                    return
                work, args = item
                work(*args)
                self._tick(time.monotonic())
        except BaseException as exc:  # a bug in a stage or sink: say so; the daemon exits 70
            self.crashed = exc
            log.exception("the stages' thread died")

    def close(self) -> None:
        """Finish what is queued, then close every stage and sink that holds something
        (each finishes within its own bound)."""
        if self._thread is not None and self._thread.is_alive():
            self._closing = True
            self._queue.put(None)
            self._thread.join(CLOSE_TIMEOUT_S)
        for part in (*self.stages, *self.sinks):
            close = getattr(part, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:  # one part's failure must not keep the others open
                log.exception("closing %s failed", type(part).__name__)
