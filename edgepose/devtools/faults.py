"""Fault injection for the reliability tests, and only for them.

A test sets ``EDGEPOSE_FAULT`` on the ``edgepose run`` it starts (unset in every
real deployment, where `from_env` gives None and nothing is wrapped); the run
command hands the `Faults` to the daemon, which applies them:

- ``stall-inference-after=N``: after N frames the estimator never returns, as
  a hung accelerator would; the watchdog pings must stop.
- ``crash-capture``: the capture thread dies of an exception the first time
  it waits to reopen a source; the daemon must exit 70, not run on half alive.

Anything else is refused at start, so a typo cannot pass for a test of nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

ENV = "EDGEPOSE_FAULT"
FAULTS = ("stall-inference-after", "crash-capture")


@dataclass(frozen=True)
class Faults:
    """One fault a test asked for (`ENV`)."""

    name: str
    value: str = ""

    def wrap_estimator(self, estimator: Any) -> Any:
        if self.name == "stall-inference-after":
            return _StallingEstimator(estimator, int(self.value or 0))
        return estimator

    def capture_options(self) -> dict[str, Any]:
        """Extra CaptureLoop arguments for the capture fault."""
        if self.name != "crash-capture":
            return {}

        def sleeper(seconds: float) -> bool:
            raise OverflowError("timeout value is too large (injected: crash-capture)")

        return {"sleeper": sleeper}


def from_env(environ: Mapping[str, str] = os.environ) -> Faults | None:
    """The fault `ENV` names; None when it is unset. ConfigError for an unknown one."""
    name, _, value = environ.get(ENV, "").partition("=")
    if not name:
        return None
    if name not in FAULTS:
        raise ConfigError(f"{ENV}: unknown fault {name!r} (a test switch; unset it)")
    return Faults(name, value)


class _StallingEstimator:
    """Passes through `after` frames, then blocks forever in estimate(); anything else
    goes to the estimator it wraps."""

    def __init__(self, inner: Any, after: int):
        self._inner = inner
        self._left = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def estimate(self, rgb: Any, *args: Any) -> Any:
        if self._left <= 0:
            threading.Event().wait()  # the hung accelerator
        self._left -= 1
        return self._inner.estimate(rgb, *args)
