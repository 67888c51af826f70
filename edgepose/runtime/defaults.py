"""Model precision and interpreter threads to use when the config leaves them to us
(``model.quantized = "auto"``, ``model.threads = 0``), from the TF Lite runtime, the
CPU core count and the accelerator actually in use. Pure: no probing, no I/O.

The rule rests on this table (PoseNet MobileNetV1 0.75, stride 16, 481x353,
``edgepose bench --model-only``, invoke p50 ms, on the 2-core x86-64 development
machine with tflite-runtime 2.14.0 and ai-edge-litert 2.3.0; the ratios are what
the choice rests on; the runs: docs/benchmarks.md):

================  =========  ========  =========
runtime           precision  1 thread  2 threads
================  =========  ========  =========
ai-edge-litert    float32    22.4      24.6
ai-edge-litert    int8       11.0      12.1
tflite-runtime    float32    25.6      26.2
tflite-runtime    int8       184.8     325.8
================  =========  ========  =========

- ``tflite-runtime`` runs int8 about seven times slower than float32 (its int8
  kernels: the same file is fast on ai-edge-litert): float32 there.
  ``ai-edge-litert`` runs int8 about twice as fast as float32: int8 there. A
  runtime we do not know gets float32, never the pathological case (the Coral
  pair's tflite_runtime 2.17.1 gets the tflite-runtime rule until measured).
- Threads: the interpreter shares the CPU with capture, decoding and MQTT, and on
  2 busy cores a second thread made every case slower, model-only and end to end.
  So one core is left to the rest of the pipeline: ``cores - 1``, at least 1, at
  most 4 (a cap, so a big machine does not spin up many threads for small layers).
- Edge TPU: only int8 models compile for it, and the CPU only runs the few ops the
  compiler left out: int8 and 1 thread.
- A model whose int8 build scores below the reference (TF.js on the same weights)
  where its float build does not says so in the registry
  (``ModelSpec.int8_on_cpu = False``): its float build on every CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Runtimes whose int8 kernels are the fast ones (measured, see the module docstring).
FAST_INT8_RUNTIMES = frozenset({"ai-edge-litert"})

MAX_THREADS = 4

#: Where a model runs once "auto" is resolved.
RESOLVED_ACCELERATORS = ("cpu", "edgetpu")


@dataclass(frozen=True)
class RuntimeDefaults:
    """What to use, and a short reason for ``check`` and the stats message."""

    precision: str   # "int8" | "float32"
    threads: int
    reason: str


def default_threads(cores: int | None) -> int:
    """Interpreter threads for ``cores`` CPU cores: one core is left for the rest of
    the pipeline (``cores - 1``), at least 1, at most ``MAX_THREADS``."""
    if cores is None or cores < 1:
        return 1
    return max(1, min(MAX_THREADS, cores - 1))


def choose_defaults(runtime: str, cores: int | None, accelerator: str, *,
                    int8_on_cpu: bool = True) -> RuntimeDefaults:
    """Precision and threads for ``runtime`` ("ai-edge-litert", "tflite-runtime", ...)
    on ``cores`` CPU cores (``os.cpu_count()``, or the cores this process may use)
    with ``accelerator`` in use ("cpu" or "edgetpu"; resolve "auto" first).
    ``int8_on_cpu=False``: the model's int8 build scores below the reference (its
    registry entry says so), so the CPU gets the float build on any runtime. "float32" stands for
    the model's float build (MoveNet's is float16)."""
    if accelerator not in RESOLVED_ACCELERATORS:
        raise ValueError(f"accelerator must be one of {RESOLVED_ACCELERATORS} (resolve 'auto' first), not {accelerator!r}")
    if accelerator == "edgetpu":
        return RuntimeDefaults("int8", 1, "Edge TPU: int8 model, the CPU only runs the ops left out")
    threads = default_threads(cores)
    core_text = f"{cores} cores" if cores and cores > 0 else "core count unknown"
    if not int8_on_cpu:
        return RuntimeDefaults("float32", threads,
                               f"this model's int8 build scores below the reference, its float build does not; {core_text}")
    if runtime in FAST_INT8_RUNTIMES:
        return RuntimeDefaults("int8", threads, f"{runtime}: int8 runs about 2x faster than float32; {core_text}")
    if runtime == "tflite-runtime":
        return RuntimeDefaults("float32", threads,
                               f"{runtime}: int8 runs about 7x slower than float32 on it; {core_text}")
    return RuntimeDefaults("float32", threads, f"unmeasured runtime {runtime!r}: float32 is the safe choice; {core_text}")
