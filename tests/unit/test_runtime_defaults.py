"""edgepose.runtime.defaults: the measured rule, case by case."""

from __future__ import annotations

import re

import pytest

from edgepose.runtime import defaults as runtime_defaults
from edgepose.runtime.defaults import RuntimeDefaults, choose_defaults, default_threads


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
def test_ai_edge_litert_on_the_cpu_runs_int8(cores):
    assert choose_defaults("ai-edge-litert", cores, "cpu").precision == "int8"


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
def test_tflite_runtime_on_the_cpu_runs_float32(cores):
    """Its int8 kernels are about ten times slower than float32 (the measured table)."""
    assert choose_defaults("tflite-runtime", cores, "cpu").precision == "float32"


def test_an_unknown_runtime_gets_float32_never_the_slow_case():
    assert choose_defaults("some-future-runtime", 4, "cpu").precision == "float32"


@pytest.mark.parametrize("runtime", ["ai-edge-litert", "tflite-runtime"])
def test_the_edge_tpu_gets_int8_and_one_thread(runtime):
    chosen = choose_defaults(runtime, 4, "edgetpu")
    assert (chosen.precision, chosen.threads) == ("int8", 1)
    assert isinstance(chosen, RuntimeDefaults)


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (0, 1), (1, 1), (2, 1), (3, 2), (4, 3), (5, 4), (64, 4)])
def test_threads_leave_one_core_for_the_rest_of_the_pipeline(cores, threads):
    assert default_threads(cores) == threads
    assert choose_defaults("ai-edge-litert", cores, "cpu").threads == threads


def test_auto_must_be_resolved_first():
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        choose_defaults("ai-edge-litert", 4, "auto")


def test_every_choice_says_why():
    for runtime in ("ai-edge-litert", "tflite-runtime", "x"):
        for accelerator in ("cpu", "edgetpu"):
            assert choose_defaults(runtime, 4, accelerator).reason


def test_the_docstring_carries_the_measured_table():
    """The choice is documented by figures, not by placeholders."""
    doc = runtime_defaults.__doc__
    assert "{" not in doc
    rows = [line for line in doc.splitlines() if re.match(r"(ai-edge-litert|tflite-runtime)\s+(float32|int8)\s", line)]
    assert len(rows) == 4
    for row in rows:
        assert len(re.findall(r"\d+\.\d", row)) == 2


@pytest.mark.parametrize("runtime", ["ai-edge-litert", "tflite-runtime", "x"])
def test_a_model_whose_int8_build_loses_accuracy_gets_its_float_build_on_every_cpu(runtime):
    chosen = choose_defaults(runtime, 4, "cpu", int8_on_cpu=False)
    assert chosen.precision == "float32" and "int8 build scores below the reference" in chosen.reason
    assert choose_defaults(runtime, 4, "edgetpu", int8_on_cpu=False).precision == "int8"


def test_movenet_lightning_opens_its_float16_build_by_default():
    """Lightning int8 at 3 passes scored 0.160 on the dev photos, below TF.js's 0.163
    (two passes); its float16 build 0.171 (docs/benchmarks.md): the registry says so, auto obeys."""
    from edgepose.config import load_config
    from edgepose.estimators import MODELS, open_estimator

    assert not MODELS["movenet-lightning"].int8_on_cpu
    assert MODELS["movenet-thunder"].int8_on_cpu and MODELS["movenet-multipose"].int8_on_cpu
    config = load_config(None, {"model.name": "movenet-lightning", "model.accelerator": "cpu"})
    estimator = open_estimator(config.model, config.decode)
    try:
        assert estimator.info.precision == "float16"
    finally:
        estimator.close()
