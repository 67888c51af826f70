"""A minimal stand-in for edgepose.tflite's model API over ai_edge_litert's
Interpreter, for the MoveNet tests until the estimators are wired to
edgepose.tflite (same attributes and methods as its documented API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


class LitertModel:
    """input_size (w, h), input_dtype, input_quantization, input_view(),
    resize(w, h), invoke() -> dequantised outputs without the batch axis, close()."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            pytest.skip("ai_edge_litert is not importable")
        if not path.is_file():
            pytest.skip(f"{path} is absent")
        self.path = path
        self._interp = Interpreter(model_path=str(path), num_threads=threads)
        self._in = self._interp.get_input_details()[0]
        self.input_dtype = self._in["dtype"]
        self.input_quantization = tuple(self._in["quantization"])
        shape = self._in["shape"]
        if shape[1] <= 1 or shape[2] <= 1 or -1 in list(self._in["shape_signature"][1:3]):
            self.input_size = (0, 0)  # resizable: the estimator resizes before its first invoke
        else:
            self._interp.allocate_tensors()
            self.input_size = (int(shape[2]), int(shape[1]))

    def resize(self, width: int, height: int) -> None:
        self._interp.resize_tensor_input(self._in["index"], [1, height, width, 3])
        self._interp.allocate_tensors()
        self.input_size = (width, height)

    def input_view(self) -> np.ndarray:
        return self._interp.tensor(self._in["index"])()[0]

    def invoke(self) -> list[np.ndarray]:
        self._interp.invoke()
        outs = []
        for d in self._interp.get_output_details():
            v = self._interp.get_tensor(d["index"])[0]
            scale, zero = d["quantization"]
            outs.append((v.astype(np.float32) - zero) * scale if scale else v.astype(np.float32))
        return outs

    def close(self) -> None:
        self._interp = None


def model_path(stem: str, precision: str) -> Path:
    return MODELS_DIR / f"movenet_{stem}_{precision}.tflite"
