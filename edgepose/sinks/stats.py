"""`StatsSink`: the node's health figures as the retained ``stats`` message, on a timer."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core import FrameResult
from ..messages import stats_message
from .base import BaseSink, Publish

#: Frames the rolling fps / inference percentiles are computed over.
STATS_WINDOW = 300
#: The first stats go out this long after start (or after stats_interval_s, if shorter),
#: when a frame rate can be measured; then every stats_interval_s. A first message at
#: start read 0 fps for a whole interval (a minute by default).
FIRST_STATS_S = 5.0
CPU_TEMPERATURE_FILE = Path("/sys/class/thermal/thermal_zone0/temp")


def read_cpu_temperature() -> float | None:
    """The SoC's temperature in degrees Celsius; None where the kernel does not say."""
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


class StatsSink(BaseSink):
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
