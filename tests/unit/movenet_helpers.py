"""The committed MoveNet files, opened through edgepose.runtime.tflite (the estimators' only
way to the runtime)."""

from __future__ import annotations

from pathlib import Path

from edgepose.estimators import models_dir
from edgepose.runtime.tflite import TfliteModel, open_tflite


def model_path(stem: str, precision: str) -> Path:
    return models_dir() / f"movenet_{stem}_{precision}.tflite"


def open_model(stem: str, precision: str, threads: int = 1) -> TfliteModel:
    """A bundled MoveNet file ready to invoke (MultiPose at 256x192 until resized)."""
    return open_tflite(model_path(stem, precision), threads=threads,
                       default_input_size=(256, 192) if stem == "multipose" else None)
