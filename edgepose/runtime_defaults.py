"""Model precision and interpreter threads to use when the config leaves them to us
(``model.quantized = "auto"``, ``model.threads = 0``), from the TF Lite runtime, the
CPU core count and the accelerator actually in use. Pure: no probing, no I/O.

Why it depends on the runtime (PoseNet MobileNetV1 0.75, stride 16, 481x353,
``edgepose bench --model-only``, invoke p50 ms, the lowest of 16 interleaved runs of
30 invokes each, on the 2-core x86-64 development machine while other jobs shared it
(load average 1.4 to 6.4): best cases under load, not quiet figures; the ratios are
what the choice rests on. tflite-runtime 2.14.0 with numpy 1.26; ai-edge-litert 2.3.0):

================  =========  ========  =========
runtime           precision  1 thread  2 threads
================  =========  ========  =========
ai-edge-litert    float32    22.4      24.6
ai-edge-litert    int8       11.0      12.1
tflite-runtime    float32    25.6      26.2
tflite-runtime    int8       184.8     325.8
================  =========  ========  =========

- ``tflite-runtime`` (2.14, the last PyPI release) runs the int8 model about seven
  times slower than float32 (184.8 against 25.6 ms; issue 9 measured 201.6 against
  42.3). The same file runs fast on ai-edge-litert, so it is the runtime's int8
  kernels, not the model (not investigated further). On it, float32 is the default.
  ``ai-edge-litert`` runs int8 twice as fast as float32 (11.0 against 22.4 ms):
  int8 there. A runtime we do not know gets float32, which is never the
  pathological case. (tflite_runtime 2.17.1, the Coral pair, was not measured on
  the CPU: it gets the tflite-runtime rule until someone does.)
- Threads: the interpreter is not alone on the CPU (capture and colour conversion,
  decoding, MQTT). A second thread made every case slower above on 2 busy cores,
  and end to end the daemon kept up better with 1 thread than with 2 on 2 cores
  (issue 9: 0.76 against 0.45 of the model-only rate). So one core is left to the
  rest of the pipeline: ``cores - 1``, at least 1, at most 4 (not measured past 2
  cores; a cap so a big machine does not spin up many threads for small layers).
- Edge TPU: only int8 models compile for it, and the CPU only runs the few ops the
  compiler left out: int8 and 1 thread.
- A model whose int8 build scores below TF.js's own result on the same weights,
  where its float build does not, says so in the registry
  (``ModelSpec.int8_on_cpu = False``): it gets its float build on the CPU whatever
  the runtime. MoveNet Lightning: int8 scores an OKS AP of 0.160 on the dev photos
  at its 3 passes, below TF.js's 0.163 (two passes), float16 0.171. The cost: a
  192x192 invoke takes 8.0-9.6 ms in float16 against 4.8-4.9 ms in int8 on this
  machine, PoseNet's default 11.6 ms (README, "MoveNet beside PoseNet").
"""

from __future__ import annotations

from dataclasses import dataclass

#: Runtimes whose int8 kernels are the fast ones (measured, see the module docstring).
FAST_INT8_RUNTIMES = frozenset({"ai-edge-litert"})

MAX_THREADS = 4

ACCELERATORS = ("cpu", "edgetpu")


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
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {ACCELERATORS} (resolve 'auto' first), not {accelerator!r}")
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
