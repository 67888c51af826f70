"""Fault injection for the reliability tests, and only for them.

``EDGEPOSE_FAULT`` (unset in every real deployment) names one fault:

- ``stall-inference-after=N``: after N frames the estimator never returns, as
  a hung accelerator would; the watchdog pings must stop.
- ``crash-capture``: the capture thread dies of an exception the first time
  it waits to reopen a source; the daemon must exit 70, not run on half alive.

Anything else is refused at start, so a typo cannot pass for a test of nothing.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .errors import ConfigError

ENV = "EDGEPOSE_FAULT"


def _fault() -> tuple[str, str]:
    name, _, value = os.environ.get(ENV, "").partition("=")
    if name not in ("", "stall-inference-after", "crash-capture"):
        raise ConfigError(f"{ENV}: unknown fault {name!r} (a test switch; unset it)")
    return name, value


class _StallingEstimator:
    """Passes through `after` frames, then blocks forever in estimate()."""

    def __init__(self, inner: Any, after: int):
        self._inner = inner
        self._left = after
        self.info, self.model = inner.info, getattr(inner, "model", None)

    @property
    def last_timing(self) -> dict[str, float]:
        return self._inner.last_timing

    def estimate(self, rgb):
        if self._left <= 0:
            threading.Event().wait()  # the hung accelerator
        self._left -= 1
        return self._inner.estimate(rgb)

    def reset(self) -> None:
        self._inner.reset()

    def close(self) -> None:
        self._inner.close()


def wrap_estimator(estimator: Any) -> Any:
    name, value = _fault()
    if name == "stall-inference-after":
        return _StallingEstimator(estimator, int(value or 0))
    return estimator


def capture_options() -> dict[str, Any]:
    """Extra CaptureLoop arguments for the capture fault."""
    name, _ = _fault()
    if name != "crash-capture":
        return {}

    def sleeper(seconds: float) -> bool:
        raise OverflowError("timeout value is too large (injected: crash-capture)")

    return {"sleeper": sleeper}
