"""Runtimes: what runs a model file, and on which accelerator.

A model family never imports a runtime library. It opens its files with
`open_model(path, accelerator=..., **options)` and gets a `RuntimeModel`: write
the input view, invoke, read float32 outputs. `ACCELERATORS` says which runtime
serves each ``model.accelerator`` value, and the config takes exactly those
names. Today all of them are TF Lite's (`tflite.py`: the CPU, or a Coral Edge
TPU through its delegate); `defaults.py` picks precision and threads where the
config leaves them to us.

Another runtime (a Hailo-8L on the Raspberry Pi AI HAT+, the IMX500 of the AI
Camera) is a module here whose opener returns a `RuntimeModel`, and a line in
`ACCELERATORS` for each accelerator it serves.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError

_TFLITE = "tflite:open_tflite"

#: ``model.accelerator`` value -> "module:opener" in this package. "auto" runs a file
#: compiled for the Edge TPU there and any other file on the CPU.
ACCELERATORS: dict[str, str] = {"cpu": _TFLITE, "edgetpu": _TFLITE, "auto": _TFLITE}


class RuntimeModel(Protocol):
    """One loaded model file, as an estimator drives it. Not thread-safe."""

    path: Path
    accelerator: str  # where it runs once opened: "cpu", "edgetpu"
    runtime: str  # the library that runs it, e.g. "ai-edge-litert"
    input_size: tuple[int, int]  # (w, h)
    input_dtype: type
    input_quantization: tuple[float, int]  # (scale, zero point); scale 0.0: not quantised
    output_details: list[dict]  # per output: name, shape, dtype, quantization

    def input_view(self) -> np.ndarray:
        """(h, w, 3) writable view of the input; do not keep it across `invoke`."""
        ...

    def resize(self, width: int, height: int) -> None:
        """Set the input size of a file whose input is resizable."""
        ...

    def invoke(self) -> list[np.ndarray]:
        """Run once: every output as float32, batch axis dropped, in output order."""
        ...

    def time_invoke(self, runs: int, warmup: int) -> list[float]:
        """Milliseconds of each of `runs` invokes after `warmup` untimed ones."""
        ...

    def close(self) -> None: ...


def open_model(path: Path, *, accelerator: str = "cpu", **options: Any) -> RuntimeModel:
    """`path` opened by the runtime that serves `accelerator`. `options` are that
    runtime's own (for TF Lite: `tflite.open_tflite`'s keyword arguments)."""
    opener = ACCELERATORS.get(accelerator)
    if opener is None:
        raise ModelError(f"accelerator must be one of {', '.join(ACCELERATORS)}, not {accelerator!r}")
    module, _, function = opener.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)(path, accelerator=accelerator, **options)


__all__ = ["ACCELERATORS", "RuntimeModel", "open_model"]
