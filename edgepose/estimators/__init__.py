"""Pose estimators: one interface for every model family, and the registry of named models.

A model family (PoseNet, MoveNet, ...) lives in a folder of its own with its
constants, pure pre/post-processing and an estimator class; it reaches a runtime
only through `edgepose.runtime`. Its __init__.py declares its named models
(`ModelSpec`) and the config keys only they take (`ModelOption`, with a check
across them on the spec). The rest of edgepose sees only `Estimator`: an RGB
frame in, `Poses` in frame pixels out. To add a family, write its folder and add
it to `FAMILIES` below; nothing in the config changes.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core import Poses
from ..errors import ModelError
from .spec import ModelOption, ModelSpec

log = logging.getLogger(__name__)

#: Environment variable naming the folder that holds the .tflite files.
MODELS_DIR_ENV = "EDGEPOSE_MODELS_DIR"


@dataclass(frozen=True, slots=True)
class EstimatorInfo:
    """What an estimator runs, for logs, messages, stats and `edgepose check`."""

    name: str  # registry name, e.g. "posenet-mnv1-075"
    family: str  # "posenet", "movenet"
    input_size: tuple[int, int]  # (w, h) the model runs at
    precision: str  # "float32", "float16", "int8"
    accelerator: str  # "cpu", "edgetpu"
    runtime: str  # "ai-edge-litert", "tflite-runtime"
    path: Path  # the model file
    threads: int = 1
    #: True: the model looks at people at the full frame's detail (it crops them), so
    #: picamera2 gives it the main stream, not a small "lores" copy.
    full_frame: bool = False
    #: The model that finds the people this one places keypoints for (top-down), by file
    #: stem: named in the label, so logs and stats say everything that runs.
    finder: str = ""

    @property
    def lores_size(self) -> tuple[int, int] | None:
        """The box picamera2's small inference stream is fitted into; None: no lores stream."""
        return None if self.full_frame else self.input_size

    @property
    def label(self) -> str:
        """Short text for messages: file stem and input size (after the finder's, if any)."""
        own = f"{self.path.stem} {self.input_size[0]}x{self.input_size[1]}"
        return f"{self.finder} + {own}" if self.finder else own


@dataclass(frozen=True, slots=True)
class PreparedInput:
    """A frame's model input, made ahead of inference by an estimator's `prepare`.

    Families whose pre-processing needs no earlier frame (PoseNet's letterbox)
    offer `prepare(rgb) -> PreparedInput`; the daemon's capture thread calls it
    while the model runs on the frame before, and the inference thread passes
    it to `estimate(rgb, prepared)`, which then only copies it into the
    interpreter. Families that carry state from frame to frame (single-pose
    MoveNet's crop) have no `prepare`.
    """

    made_by: Any  # the estimator that made it: only that one can use it
    tensor: np.ndarray  # the input tensor's contents, (h, w, 3) in its dtype
    transform: Any  # the family's mapping from model input back to the frame
    frame_shape: tuple[int, ...]  # the rgb it was made from, (H, W, 3)
    preprocess_ms: float  # what making it took (on the capture thread)


class Estimator(Protocol):
    """What every model family implements. Not thread-safe: one caller at a time
    (`prepare`, where a family has it, is the exception: it touches no state).
    `estimate` takes an optional `prepared` input from that family's `prepare`."""

    info: EstimatorInfo
    #: Milliseconds of the last estimate(): "preprocess", "invoke", "decode".
    last_timing: dict[str, float]

    def estimate(self, rgb: np.ndarray) -> Poses:
        """(H, W, 3) uint8 RGB -> every person found, in frame pixels."""
        ...

    def estimate_still(self, rgb: np.ndarray) -> Poses:
        """An unrelated still image (`detect`, `eval`, `bench`): reset, then as many
        passes as the family documents (PoseNet: one; single-pose MoveNet:
        model.still_passes, each on the crop the previous one found).
        `last_timing` then sums the passes."""
        ...

    def reset(self) -> None:
        """Forget state carried between frames (a crop that follows a person):
        call it between unrelated images."""
        ...

    def time_invoke(self, runs: int, warmup: int) -> list[float]:
        """Milliseconds of each of `runs` model invokes alone, after `warmup` untimed
        ones (`edgepose bench --model-only`). A family that runs two models times
        the one that runs on every person (top-down MoveNet: the refiner)."""
        ...

    def close(self) -> None: ...


#: The model families, each a folder here whose __init__.py declares SPECS (its named
#: models) and OPTIONS (the config keys only its models take). A new family is its
#: folder and its name here; the config learns its models and keys from this registry.
FAMILIES = tuple(importlib.import_module(f"{__name__}.{family}") for family in ("posenet", "movenet"))

MODELS: dict[str, ModelSpec] = {spec.name: spec for family in FAMILIES for spec in family.SPECS}


def _options() -> dict[str, ModelOption]:
    """Every family's options by key; a key declared twice, or a model taking a key no
    family declares, is a mistake in the registry."""
    options: dict[str, ModelOption] = {}
    for family in FAMILIES:
        for option in family.OPTIONS:
            if option.key in options:
                raise ValueError(f"{option.key} is declared by two model families")
            options[option.key] = option
    for spec in MODELS.values():
        if undeclared := spec.options - options.keys():
            raise ValueError(f"{spec.name} takes {sorted(undeclared)}, which no family declares")
    return options


#: Keys only some models take, by key (ModelOption.refused says why the others refuse them).
OPTIONS: dict[str, ModelOption] = _options()
#: The model a config without [model] runs: the one that sees the people a fall sensor
#: watches, lying down included (docs/falls.md, "The default model").
DEFAULT_MODEL = "movenet-topdown-thunder"
#: The model a model.path written without a model.name is: files of one's own (Coral's
#: PoseNet, an Edge TPU build) were PoseNet files before the default model changed.
PATH_MODEL = "posenet-mnv1-075"


def models_dir() -> Path:
    """Where the bundled .tflite files are.

    $EDGEPOSE_MODELS_DIR when set; else the checkout's models/ (a clone or an
    editable install); else <prefix>/share/edgepose/models, where a regular
    `pip install .` puts them.
    """
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root / "models"
    return Path(sysconfig.get_path("data")) / "share" / "edgepose" / "models"


def model_file(name: str) -> Path:
    """The bundled file `name`, or a ModelError that says where it was looked for."""
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(
            f"model file {path} is missing: see models/SOURCES.md, or point "
            f"{MODELS_DIR_ENV} at the folder that holds it"
        )
    return path


def resolve_auto(model: Any) -> Any:
    """The [model] section with `model.quantized = "auto"` and `model.threads = 0` decided
    for the TF Lite runtime installed, the cores this process may use and the
    accelerator (runtime/defaults.py)."""
    if model.quantized is not None and model.threads:
        return model
    from ..runtime.defaults import choose_defaults
    from ..runtime.tflite import import_runtime

    runtime = import_runtime()[2]
    compiled = Path(model.path).name.endswith("_edgetpu.tflite") if model.path else False
    accelerator = "edgetpu" if compiled or model.accelerator == "edgetpu" else "cpu"
    spec = MODELS.get(model.name)
    defaults = choose_defaults(runtime, len(os.sched_getaffinity(0)), accelerator,
                               int8_on_cpu=spec is None or spec.int8_on_cpu)
    log.info("model defaults: %s, %d thread(s) (%s)", defaults.precision, defaults.threads, defaults.reason)
    return dataclasses.replace(
        model,
        quantized=defaults.precision == "int8" if model.quantized is None else model.quantized,
        threads=model.threads or defaults.threads,
    )


def open_estimator(model: Any, decode: Any) -> Estimator:
    """The estimator `model.name` names, loaded and ready, from the config's [model] and
    [decode] sections. Each family's opener decides the "auto" settings first (`resolve_auto`)."""
    spec = MODELS.get(model.name)
    if spec is None:
        raise ModelError(f"unknown model {model.name!r} (known: {', '.join(MODELS)})")
    module_name, _, function = spec.opener.partition(":")
    opener: Callable[..., Estimator] = getattr(importlib.import_module(module_name), function)
    return opener(model, decode)


__all__ = ["DEFAULT_MODEL", "FAMILIES", "MODELS", "OPTIONS", "PATH_MODEL", "Estimator", "EstimatorInfo",
           "ModelOption", "ModelSpec", "PreparedInput", "model_file", "models_dir", "open_estimator"]
