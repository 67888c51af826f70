"""One Euro filter per track and keypoint (Casiez, Roussel, Vogel, CHI 2012), pure numpy.

A low-pass filter whose cut-off rises with speed: a still keypoint is
smoothed hard (no jitter), a moving one lightly (little lag). It runs on
coordinates as fractions of the frame (x / width, y / height), the units of
the published poses, so ``min_cutoff_hz`` and ``beta`` mean the same at any
camera resolution; beta is "per frame-fraction per second". Keypoints below
``min_part_score`` are passed through and restart their filter when found
again, so a keypoint that comes back elsewhere is not dragged across the
frame. Times are monotonic seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SmoothingConfig
from .core import Poses

__all__ = ["OneEuro", "Smoother"]

#: A track unseen for longer than this starts its filters afresh.
MAX_GAP_S = 1.0
#: Filter state of tracks unseen this long is forgotten.
FORGET_AFTER_S = 5.0


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuro:
    """The filter on an array of values (any shape), one step per call."""

    min_cutoff_hz: float
    beta: float
    d_cutoff_hz: float
    x: np.ndarray | None = None
    dx: np.ndarray | None = None
    t: float | None = None

    def __call__(self, value: np.ndarray, t: float, reset: np.ndarray | None = None) -> np.ndarray:
        """Filtered `value` at time `t`; `reset` (bool, same shape) restarts those elements."""
        value = np.asarray(value, np.float64)
        if self.x is None or self.t is None or t - self.t > MAX_GAP_S or t <= self.t:
            if self.x is not None and self.t is not None and t <= self.t:
                return self.x.copy()  # same time again (or backwards): nothing new to filter
            self.x, self.dx, self.t = value.copy(), np.zeros_like(value), t
            return value.copy()
        dt = t - self.t
        dx = (value - self.x) / dt
        dx_hat = self.dx + _alpha(self.d_cutoff_hz, dt) * (dx - self.dx)
        cutoff = self.min_cutoff_hz + self.beta * np.abs(dx_hat)
        x_hat = self.x + _alpha(cutoff, dt) * (value - self.x)
        if reset is not None and reset.any():
            x_hat = np.where(reset, value, x_hat)
            dx_hat = np.where(reset, 0.0, dx_hat)
        self.x, self.dx, self.t = x_hat, dx_hat, t
        return x_hat.copy()


class Smoother:
    """Smooths tracked poses: ``process(poses, now, width, height)`` -> Poses (same order).

    Poses without track ids pass through unchanged (there is no one to follow).
    """

    def __init__(self, config: SmoothingConfig | None = None, min_part_score: float = 0.3):
        self.config = config or SmoothingConfig()
        self.min_part_score = min_part_score
        self._filters: dict[int, OneEuro] = {}
        self._ok: dict[int, np.ndarray] = {}  # (17,) keypoints confident last time

    def process(self, poses: Poses, now: float, width: int, height: int) -> Poses:
        if not self.config.enabled or poses.track_ids is None or len(poses) == 0:
            self._forget(now)
            return poses
        size = np.array([width, height], np.float64)
        out = np.asarray(poses.xy, np.float64) / size
        ok_all = np.asarray(poses.scores) >= self.min_part_score
        for i, tid in enumerate(int(t) for t in poses.track_ids):
            f = self._filters.get(tid)
            if f is None:
                f = self._filters[tid] = OneEuro(
                    self.config.min_cutoff_hz, self.config.beta, self.config.d_cutoff_hz
                )
            ok = ok_all[i]
            came_back = ok & ~self._ok.get(tid, ok)
            smoothed = f(out[i], now, reset=np.repeat(came_back[:, None], 2, axis=1))
            out[i] = np.where(ok[:, None], smoothed, out[i])
            self._ok[tid] = ok
        self._forget(now)
        return poses.replace(xy=(out * size).astype(np.float32))

    def _forget(self, now: float) -> None:
        for tid in [t for t, f in self._filters.items() if f.t is not None and now - f.t > FORGET_AFTER_S]:
            del self._filters[tid]
            self._ok.pop(tid, None)
