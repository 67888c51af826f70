"""The TF Lite runtime: the only module that imports a TF Lite library.

It serves the accelerators "cpu", "edgetpu" and "auto" (`edgepose.runtime`'s
table) and knows nothing about any model family. It hides:

* which runtime is installed (`ai_edge_litert`, else `tflite_runtime`);
* where the model runs: the CPU, or the Edge TPU through ``libedgetpu.so.1``.
  Whether a file runs on the Edge TPU is a fact of the *file* (compiled by
  ``edgetpu_compiler``, it holds ``edgetpu-custom-op``), not of a setting: a
  compiled file needs the delegate and keeps its compiled input size; a CPU
  file is never handed to the delegate, and may be resized;
* quantisation: outputs come back as float32, whatever the file stores;
* the runtime's error texts, translated into what to install or use instead.

Model families add what is theirs (input scaling, output layouts, custom-op
libraries such as Coral's PoseNet decoder) around a `TfliteModel`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AcceleratorError, EdgePoseError, EdgeTpuUnanswered, ExitCode, ModelError

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
#: The accelerators this runtime serves (edgepose.runtime.ACCELERATORS sends them here).
SERVES = ("cpu", "edgetpu", "auto")
_TFLITE_MAGIC = b"TFL3"


class RuntimeUnavailable(EdgePoseError):
    """No TF Lite runtime is installed."""

    exit_code = ExitCode.UNAVAILABLE


def import_runtime() -> tuple[Any, Callable[..., Any], str]:
    """(Interpreter class, load_delegate, runtime name) of the first runtime found."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "tflite-runtime"
    except ImportError as exc:
        raise RuntimeUnavailable(
            "no TF Lite runtime found: pip install ai-edge-litert "
            "(Coral setups: see install.sh --coral)"
        ) from exc


# --- the runtime's own output -------------------------------------------------------

#: Lines the runtimes' C++ code writes to stderr while an interpreter is set up that tell
#: a user nothing: TF Lite logs them at INFO and offers no switch (TF_CPP_MIN_LOG_LEVEL
#: does not reach its minimal logger).
RUNTIME_CHATTER = frozenset({b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."})
_STDERR_LOCK = threading.Lock()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


@contextlib.contextmanager
def runtime_chatter_filtered() -> Iterator[None]:
    """File descriptor 2 through a pipe while inside: RUNTIME_CHATTER lines are dropped,
    every other line (a real error, a log line of another thread) goes on to stderr as
    it comes. Only around interpreter set-up: the banner is printed there, once."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield
            return
        read_fd, write_fd = os.pipe()

        def pump() -> None:
            with os.fdopen(read_fd, "rb") as pipe:
                for line in pipe:
                    if line.rstrip(b"\r\n") not in RUNTIME_CHATTER:
                        with contextlib.suppress(OSError):
                            _write_all(saved, line)

        thread = threading.Thread(target=pump, name="edgepose-stderr", daemon=True)
        thread.start()
        sys.stderr.flush()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)  # the pipe's last writer gone: the pump reads to the end and stops
            thread.join(timeout=2.0)
            if not thread.is_alive():  # else a child started meanwhile still writes through it
                os.close(saved)


# --- the file ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelFileInfo:
    """What the bytes of a .tflite file tell before any interpreter sees it."""

    path: Path
    edgetpu_compiled: bool  # holds edgetpu-custom-op: needs the Edge TPU delegate
    custom_ops: frozenset[str]  # which of the names asked about the file mentions


def inspect_model_file(path: Path, custom_ops: Sequence[str] = ()) -> ModelFileInfo:
    """Check the flatbuffer header and look for custom op names in the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read: {exc.strerror or exc}") from exc
    if len(data) < 8 or data[4:8] != _TFLITE_MAGIC:
        raise ModelError(f"model file {path} is not a TF Lite model (no TFL3 flatbuffer header)")
    return ModelFileInfo(
        path=path,
        edgetpu_compiled=EDGETPU_CUSTOM_OP.encode() in data or path.name.endswith("_edgetpu.tflite"),
        custom_ops=frozenset(op for op in custom_ops if op.encode() in data),
    )


# --- delegates -----------------------------------------------------------------


def check_library(name: str) -> None:
    """dlopen `name` first: the runtimes' own failure path prints noise on stderr."""
    ctypes.CDLL(name)


def load_edgetpu_delegate(load_delegate: Callable[..., Any], device: str = "") -> Any:
    """The Edge TPU delegate, or an AcceleratorError saying what is missing."""
    options = {"device": device} if device else {}
    try:
        check_library(EDGETPU_LIBRARY)
        return load_delegate(EDGETPU_LIBRARY, options)
    except OSError as exc:  # dlopen failed: the library is not installed
        raise AcceleratorError(
            f"{EDGETPU_LIBRARY} not found ({exc}): install libedgetpu (sudo ./install.sh --coral)"
        ) from exc
    except (ValueError, RuntimeError) as exc:  # library there, no device answered
        where = f"device '{device}'" if device else "any USB or PCIe device"
        raise EdgeTpuUnanswered(
            f"no Edge TPU found at {where} ({exc}): check it is plugged in (USB Coral: "
            "1a6e:089a / 18d1:9302 in lsusb; PCIe: /dev/apex_0), that the udev rules are "
            "installed and that the service user is in the plugdev (USB) or apex (PCIe) group"
        ) from exc


def needs_edgetpu_error(path: Path, cpu_hint: str = "") -> ModelError:
    """The one message for an Edge TPU file that cannot run where it was asked to."""
    instead = f", or use a CPU model ({cpu_hint})" if cpu_hint else ", or use a CPU model"
    return ModelError(
        f"{path.name} is compiled for the Edge TPU and cannot run on the CPU: set "
        "model.accelerator = \"edgetpu\" (with libedgetpu installed and a Coral attached)"
        f"{instead}"
    )


def _translate_error(
    exc: Exception, info: ModelFileInfo, accelerator: str, custom_op_hints: Mapping[str, str]
) -> EdgePoseError:
    text = str(exc)
    if EDGETPU_CUSTOM_OP in text:
        return needs_edgetpu_error(info.path)
    for op, hint in custom_op_hints.items():
        if op in text:
            return ModelError(f"{info.path.name} carries the custom op {op}, which is not loaded: {hint}")
    if "Unsupported data type in custom op handler" in text:
        return AcceleratorError(
            "the TF Lite runtime and libedgetpu were not built from the same TensorFlow "
            "version: install the pair install.sh --coral pins"
        )
    return ModelError(f"{info.path.name} could not be prepared on {accelerator}: {text}")


# --- the model -----------------------------------------------------------------


def _dequantizer(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or not scale:
        return lambda a: np.asarray(a, np.float32)
    scale = np.float32(scale)
    zero_point = np.float32(zero_point)
    return lambda a: (a.astype(np.float32) - zero_point) * scale


class TfliteModel:
    """One loaded interpreter: write the input view, invoke, read float32 outputs.

    Don't keep the array from `input_view()` across `invoke()`: the runtime
    refuses to run while Python holds views into its buffers.
    """

    def __init__(self, interpreter: Any, *, info: ModelFileInfo, accelerator: str, runtime: str,
                 custom_op_hints: Mapping[str, str]):
        self._interpreter = interpreter
        self._info = info
        self._hints = custom_op_hints
        self.path = info.path
        self.edgetpu_compiled = info.edgetpu_compiled
        self.accelerator = accelerator
        self.runtime = runtime
        self._input = interpreter.get_input_details()[0]
        signature = self._input.get("shape_signature", self._input["shape"])
        #: True when the file leaves height and width open (-1): any size can be set.
        self.resizable = bool(-1 in [int(v) for v in signature[1:3]])
        self.input_dtype = np.dtype(self._input["dtype"]).type
        scale, zero_point = self._input["quantization"]
        self.input_quantization = (float(scale), int(zero_point))
        self._refresh()

    def _refresh(self) -> None:
        self._input = self._interpreter.get_input_details()[0]
        height, width = (int(v) for v in self._input["shape"][1:3])
        self.input_size = (width, height)
        self.output_details = self._interpreter.get_output_details()
        self._outputs = [(d["index"], _dequantizer(d)) for d in self.output_details]

    def resize(self, width: int, height: int) -> None:
        """Set the input size of a resizable CPU model (and re-allocate)."""
        if (width, height) == self.input_size:
            return
        if self.edgetpu_compiled:
            raise ModelError(
                f"{self.path.name} is compiled for the Edge TPU at {self.input_size[0]}x"
                f"{self.input_size[1]}; it cannot run at {width}x{height}"
            )
        if not self.resizable:
            raise ModelError(
                f"{self.path.name} has a fixed {self.input_size[0]}x{self.input_size[1]} input; "
                f"it cannot run at {width}x{height}"
            )
        self._interpreter.resize_tensor_input(self._input["index"], [1, height, width, 3], strict=False)
        self.allocate()

    def allocate(self) -> None:
        try:
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise _translate_error(exc, self._info, self.accelerator, self._hints) from exc
        self._refresh()

    def input_view(self) -> np.ndarray:
        """(h, w, 3) writable view of the input tensor."""
        return self._interpreter.tensor(self._input["index"])()[0]

    def invoke(self) -> list[np.ndarray]:
        """Run once; every output as float32, batch dimension dropped, in output order."""
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        out = []
        for index, dequantize in self._outputs:
            value = get(index)
            out.append(dequantize(value[0] if value.ndim else value))
        return out

    def time_invoke(self, runs: int, warmup: int) -> list[float]:
        """Milliseconds of each of `runs` invokes after `warmup` untimed ones, on random
        pixels (`edgepose bench --model-only`; XNNPACK's time does not depend on them)."""
        view = self.input_view()
        pixels = np.random.default_rng(0).integers(0, 256, view.shape)
        view[...] = pixels.astype(view.dtype) if view.dtype != np.float32 else pixels / 127.5 - 1.0
        del view  # the runtime refuses to invoke while a view is held
        for _ in range(warmup):
            self.invoke()
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            self.invoke()
            samples.append((time.perf_counter() - start) * 1000.0)
        return samples

    def close(self) -> None:
        self._interpreter = None


def open_tflite(
    path: Path,
    *,
    accelerator: str = "cpu",
    device: str = "",
    threads: int = 1,
    input_size: tuple[int, int] | None = None,
    default_input_size: tuple[int, int] | None = None,
    custom_ops: Mapping[str, tuple[Callable[[Callable[..., Any]], Any], str]] | None = None,
    cpu_hint: str = "",
) -> TfliteModel:
    """Open `path` ready to invoke.

    accelerator "cpu" runs on the CPU and refuses an Edge TPU file; "edgetpu"
    needs an Edge TPU file and a Coral; "auto" uses the Edge TPU for an Edge
    TPU file and the CPU otherwise. `input_size` (w, h) resizes a resizable CPU
    file; an Edge TPU file or a fixed-size one must already have it. None keeps
    a fixed file's own size and gives a resizable one `default_input_size`.
    `custom_ops` maps a custom op name a family knows to (loader of its delegate
    given load_delegate, hint shown when it cannot be loaded).
    """
    if accelerator not in SERVES:
        raise ModelError(f"accelerator must be one of {', '.join(SERVES)}, not {accelerator!r}")
    custom_ops = dict(custom_ops or {})
    info = inspect_model_file(path, tuple(custom_ops))
    Interpreter, load_delegate, runtime = import_runtime()
    hints = {op: hint for op, (_, hint) in custom_ops.items()}

    delegates = []
    if info.edgetpu_compiled:
        if accelerator == "cpu":
            raise needs_edgetpu_error(path, cpu_hint)
        delegates.append(load_edgetpu_delegate(load_delegate, device))
        used = "edgetpu"
    else:
        if accelerator == "edgetpu":
            raise ModelError(
                f"{path.name} is a CPU model: the Edge TPU runs only files compiled with "
                "edgetpu_compiler (*_edgetpu.tflite); compile the int8 build (docs/coral.md) or "
                "set model.accelerator = \"cpu\""
            )
        if accelerator == "auto":
            log.info("%s is not compiled for the Edge TPU: running it on the CPU", path.name)
        used = "cpu"
    for op in sorted(info.custom_ops):
        loader, _ = custom_ops[op]
        delegates.append(loader(load_delegate))

    with runtime_chatter_filtered():  # the XNNPACK banner comes with the first allocation
        try:
            interpreter = Interpreter(
                model_path=str(path), experimental_delegates=delegates or None, num_threads=threads
            )
        except ValueError as exc:
            raise _translate_error(exc, info, used, hints) from exc
        model = TfliteModel(interpreter, info=info, accelerator=used, runtime=runtime, custom_op_hints=hints)
        wanted = input_size or (default_input_size if model.resizable else None)
        if model.resizable and not info.edgetpu_compiled:
            if wanted is None:
                raise ModelError(f"{path.name} has a resizable input: an input size must be given")
            width, height = wanted
            interpreter.resize_tensor_input(model._input["index"], [1, height, width, 3], strict=False)
        model.allocate()
    if input_size is not None and tuple(input_size) != model.input_size:
        raise ModelError(
            f"{path.name} runs at its {'compiled' if info.edgetpu_compiled else 'fixed'} input size "
            f"{model.input_size[0]}x{model.input_size[1]}, not {input_size[0]}x{input_size[1]}: "
            "set model.input_size to that size"
        )
    return model
