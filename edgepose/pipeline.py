"""The stages of one frame, in order, and the one object that runs them.

    source -> capture thread -> latest-frame slot          (capture.py, sources.py)
      -> gate          skip frames where nothing changed     (a `FrameGate`; none yet)
      -> estimate      Frame -> FrameResult                  (`EstimateStage`, any Estimator)
      -> stages        FrameResult -> FrameResult            (track, smooth, zones, events)
      -> sinks         FrameResult -> MQTT, snapshots, watchdog   (sinks.py)

Everything here runs on the inference thread, which must never wait on the
disk or the network: sinks only decide and enqueue; writing and publishing
happen on their own threads (sinks.py, paho's network thread). The daemon
(daemon.py) builds a `Pipeline` and feeds it frames; tests build one from
stand-in parts.

Where new things go: a stage that changes or annotates poses is a
`ResultStage` in `stages`; a new output is a `Sink`; a model is an Estimator
(estimators/).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .core import Frame, FrameResult
from .estimators import Estimator

log = logging.getLogger(__name__)


class FrameGate(Protocol):
    """Decides before estimation whether a frame is worth running the model on."""

    def admit(self, frame: Frame) -> bool: ...


class ResultStage(Protocol):
    """One step after estimation (tracking, smoothing, zones, events): pure over its own state."""

    def process(self, result: FrameResult) -> FrameResult: ...


class Sink(Protocol):
    """Where results go. `consume` runs on the inference thread: decide and enqueue, never block."""

    def consume(self, result: FrameResult) -> None: ...

    def tick(self, now: float) -> None:
        """Called between frames and while no frame comes (now: time.monotonic())."""
        ...

    def command(self, name: str) -> bool:
        """Act on a command (from MQTT); True when this sink handled it."""
        ...

    def close(self) -> None: ...


class EstimateStage:
    """Frame -> FrameResult: the estimator on the frame, or on its smaller inference copy."""

    def __init__(self, estimator: Estimator):
        self.estimator = estimator

    def __call__(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        small = frame.inference_rgb
        if small is None:
            poses = self.estimator.estimate(frame.rgb)
        else:  # picamera2's lores stream: same picture, fewer pixels
            poses = self.estimator.estimate(small)
            scale = np.array([frame.width / small.shape[1], frame.height / small.shape[0]], np.float32)
            poses = poses.replace(
                xy=poses.xy * scale,
                boxes=None if poses.boxes is None else poses.boxes * np.tile(scale, 2),
            )
        inference_ms = (time.perf_counter() - start) * 1000.0
        return FrameResult(frame, poses, inference_ms, self.estimator.info.label)


class Pipeline:
    """Runs one frame through gate, estimate, stages and sinks; owns no thread."""

    def __init__(
        self,
        estimate: EstimateStage,
        *,
        gate: FrameGate | None = None,
        stages: Sequence[ResultStage] = (),
        sinks: Sequence[Sink] = (),
    ):
        self.estimate = estimate
        self.gate = gate
        self.stages = tuple(stages)
        self.sinks = tuple(sinks)
        self.frames = 0  # frames estimated
        self.gated = 0  # frames the gate skipped

    def process(self, frame: Frame) -> FrameResult | None:
        """The frame's result after every stage, handed to every sink; None when gated out."""
        if self.gate is not None and not self.gate.admit(frame):
            self.gated += 1
            return None
        result = self.estimate(frame)
        for stage in self.stages:
            result = stage.process(result)
        self.frames += 1
        for sink in self.sinks:
            sink.consume(result)
        return result

    def tick(self, now: float) -> None:
        for sink in self.sinks:
            sink.tick(now)

    def command(self, name: str) -> None:
        if not any(sink.command(name) for sink in self.sinks):
            log.info("command %r: nothing here acts on it", name)

    def close(self) -> None:
        """Close every sink (each finishes what it holds, within its own bound)."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # one sink's failure must not keep the others open
                log.exception("closing %s failed", type(sink).__name__)
