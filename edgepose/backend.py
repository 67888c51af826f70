"""Run a PoseNet TF Lite model on the CPU or a Coral Edge TPU.

The only module that imports a TF Lite runtime. It hides three things the rest
of edgepose should not care about:

* which runtime is installed (`ai_edge_litert`, else `tflite_runtime`);
* where the model runs (CPU, or the Edge TPU through `libedgetpu.so.1`);
* how the model lays out its outputs: our own models (heatmaps, offsets,
  forward and backward displacements), Coral's raw-output models (the two
  displacement tensors fused into 64 "mid offsets"), and Coral's models with
  the PosenetDecoderOp appended (poses already decoded).

Runtime failures that users meet often are translated into messages that say
what to install or which model to use instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .constants import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_MODEL,
    DEFAULT_STRIDE,
    DISPLACEMENT_CHANNELS,
    HEATMAP_CHANNELS,
    INPUT_SCALE,
    INPUT_SHIFT,
    MID_OFFSET_CHANNELS,
    NUM_PARTS,
    OFFSET_CHANNELS,
    OUTPUT_STRIDES,
)
from .core import PoseNetOutputs, Poses
from .errors import AcceleratorError, EdgePoseError, ExitCode, ModelError

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
#: Coral's PoseNet decoder op lives in its own shared library (project-posenet).
POSENET_DECODER_LIBRARY = "posenet_decoder.so"
ACCELERATORS = ("cpu", "edgetpu", "auto")
#: Our converted models, by name: file pattern filled with stride and precision.
MODEL_FILES = {DEFAULT_MODEL: "posenet_mnv1_075_stride{stride}_{precision}.tflite"}
CORAL_RAW_MODEL_HINT = "posenet_mobilenet_v1_075_481_641_quant.tflite"
_TFLITE_MAGIC = b"TFL3"


class RuntimeUnavailable(EdgePoseError):
    """No TF Lite runtime is installed."""

    exit_code = ExitCode.UNAVAILABLE


# --- runtime -------------------------------------------------------------------


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
            "(or tflite-runtime==2.14.0 with numpy<2 for Coral setups; see install.sh --coral)"
        ) from exc


# --- model files ---------------------------------------------------------------


def models_dir() -> Path:
    """$EDGEPOSE_MODELS_DIR, else the checkout's models/ folder."""
    env = os.environ.get("EDGEPOSE_MODELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "models"


def resolve_model_path(name_or_path: str, *, stride: int = DEFAULT_STRIDE, quantized: bool = False) -> Path:
    """A model name (see MODEL_FILES) or a path to a .tflite file -> an existing path."""
    if name_or_path in MODEL_FILES:
        if stride not in OUTPUT_STRIDES:
            raise ModelError(f"stride {stride} is not one of {list(OUTPUT_STRIDES)}")
        file_name = MODEL_FILES[name_or_path].format(
            stride=stride, precision="int8" if quantized else "float32"
        )
        path = models_dir() / file_name
        if not path.is_file():
            raise ModelError(
                f"model file {path} is missing: expected the {name_or_path} model at output "
                f"stride {stride} ({'int8' if quantized else 'float32'}); "
                "see models/SOURCES.md, or set EDGEPOSE_MODELS_DIR"
            )
        return path
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(MODEL_FILES))
        raise ModelError(
            f"model file {path} does not exist: expected a PoseNet .tflite file or a known model name ({known})"
        )
    return path


@dataclass(frozen=True, slots=True)
class ModelFileInfo:
    """What the bytes of a .tflite file tell us before any interpreter sees it."""

    path: Path
    edgetpu_compiled: bool  # contains edgetpu-custom-op: needs the Edge TPU delegate
    has_posenet_decoder: bool  # contains Coral's PosenetDecoderOp


def inspect_model_file(path: Path) -> ModelFileInfo:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read: {exc.strerror or exc}") from exc
    if len(data) < 8 or data[4:8] != _TFLITE_MAGIC:
        raise ModelError(f"model file {path} is not a TF Lite model (no TFL3 flatbuffer header)")
    return ModelFileInfo(
        path=path,
        edgetpu_compiled=b"edgetpu-custom-op" in data or path.name.endswith("_edgetpu.tflite"),
        has_posenet_decoder=b"PosenetDecoderOp" in data,
    )


# --- delegates -----------------------------------------------------------------


def _check_library(name: str) -> None:
    """dlopen `name` first: the runtimes' own failure path prints noise on stderr."""
    ctypes.CDLL(name)


def load_edgetpu_delegate(load_delegate: Callable[..., Any], device: str = "") -> Any:
    """The Edge TPU delegate, or an AcceleratorError saying what is missing."""
    options = {"device": device} if device else {}
    try:
        _check_library(EDGETPU_LIBRARY)
        return load_delegate(EDGETPU_LIBRARY, options)
    except OSError as exc:  # dlopen failed: the library is not installed
        raise AcceleratorError(
            f"{EDGETPU_LIBRARY} not found ({exc}): install libedgetpu1-std from Coral's apt "
            "repository (sudo ./install.sh --coral)"
        ) from exc
    except (ValueError, RuntimeError) as exc:  # library there, no device answered
        where = f"device '{device}'" if device else "any USB or PCIe device"
        raise AcceleratorError(
            f"no Edge TPU found at {where} ({exc}): check it is plugged in (USB Coral: "
            "1a6e:089a / 18d1:9302 in lsusb; PCIe: /dev/apex_0), that the udev rules are "
            "installed and that the service user is in the plugdev (USB) or apex (PCIe) group"
        ) from exc


def load_posenet_decoder_delegate(load_delegate: Callable[..., Any]) -> Any:
    library = os.environ.get("EDGEPOSE_POSENET_DECODER", POSENET_DECODER_LIBRARY)
    try:
        _check_library(library)
        return load_delegate(library)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            "this is Coral's PoseNet with the PosenetDecoderOp appended; that op lives in "
            f"Coral's {POSENET_DECODER_LIBRARY} (project-posenet's posenet_lib/<arch>/), which "
            f"could not be loaded ({exc}). edgepose decodes PoseNet itself: use the raw-output "
            f"model {CORAL_RAW_MODEL_HINT} from the same Coral release, or edgepose's own "
            "models/ (model.path = \"posenet-mnv1-075\"); or point EDGEPOSE_POSENET_DECODER at "
            "the library"
        ) from exc


def _needs_edgetpu_error(path: Path) -> ModelError:
    return ModelError(
        f"{path.name} is compiled for the Edge TPU and cannot run on the CPU: set "
        "model.accelerator = \"edgetpu\" (with libedgetpu installed and a Coral attached), "
        "or use a CPU model such as edgepose's posenet-mnv1-075 or Coral's "
        f"{CORAL_RAW_MODEL_HINT}"
    )


def _translate_allocate_error(exc: Exception, info: ModelFileInfo, accelerator: str) -> EdgePoseError:
    text = str(exc)
    if "edgetpu-custom-op" in text:
        return _needs_edgetpu_error(info.path)
    if "PosenetDecoderOp" in text:
        return ModelError(
            f"{info.path.name} carries Coral's PosenetDecoderOp, whose library "
            f"({POSENET_DECODER_LIBRARY}) is not loaded: use the raw-output model "
            f"{CORAL_RAW_MODEL_HINT} instead, or edgepose's own models"
        )
    if "Unsupported data type in custom op handler" in text:
        return AcceleratorError(
            "the TF Lite runtime and libedgetpu versions do not match: pin the pair install.sh "
            "--coral installs (tflite-runtime 2.14.0 with numpy<2)"
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


def input_lut(detail: dict) -> np.ndarray:
    """Value to store in the input tensor for each 8-bit pixel value 0..255."""
    real = np.arange(256, dtype=np.float64) * INPUT_SCALE + INPUT_SHIFT
    dtype = detail["dtype"]
    if dtype == np.float32:
        return real.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(real / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(dtype)


@dataclass(frozen=True, slots=True)
class _OutputLayout:
    """Output tensor indices of a raw-output PoseNet, whatever their order."""

    heatmaps: int
    offsets: int
    fwd: int  # for Coral models: the 64-channel mid offsets
    bwd: int | None  # None when fwd and bwd share one mid-offset tensor


def identify_raw_outputs(details: list[dict]) -> _OutputLayout:
    """Find heatmaps/offsets/displacements by channel count (17/34/32/32 or 17/34/64)."""
    by_channels: dict[int, list[dict]] = {}
    for d in details:
        by_channels.setdefault(int(d["shape"][-1]), []).append(d)
    names = ", ".join(f"{d['name']}{list(d['shape'])}" for d in details)
    heat = by_channels.get(HEATMAP_CHANNELS, [])
    offs = by_channels.get(OFFSET_CHANNELS, [])
    if len(heat) != 1 or len(offs) != 1:
        raise ModelError(
            "not a raw-output PoseNet: expected one 17-channel heatmap and one 34-channel "
            f"offset output, got {names}"
        )
    mids = by_channels.get(MID_OFFSET_CHANNELS, [])
    disps = by_channels.get(DISPLACEMENT_CHANNELS, [])
    if len(mids) == 1 and not disps:
        return _OutputLayout(heat[0]["index"], offs[0]["index"], mids[0]["index"], None)
    if len(disps) == 2 and not mids:
        first, second = disps
        if "bwd" in first["name"] or "fwd" in second["name"]:
            first, second = second, first
        return _OutputLayout(heat[0]["index"], offs[0]["index"], first["index"], second["index"])
    raise ModelError(
        "not a raw-output PoseNet: expected two 32-channel displacement outputs (forward, "
        f"backward) or one 64-channel mid-offset output, got {names}"
    )


def is_decoded_outputs(details: list[dict]) -> bool:
    """Coral's PosenetDecoderOp outputs: keypoints (1,K,17,2), scores (1,K,17), (1,K), count."""
    return len(details) == 4 and any(
        len(d["shape"]) == 4 and list(d["shape"][-2:]) == [NUM_PARTS, 2] for d in details
    )


class PoseModel:
    """A loaded PoseNet: write the input view, invoke, get raw outputs or poses.

    Don't keep the array from `input_view()` across `invoke()`: the runtime
    refuses to run while Python holds views into its buffers.
    """

    def __init__(
        self,
        interpreter: Any,
        *,
        name: str,
        accelerator: str,
        runtime: str,
        path: Path,
        output_stride: int | None = None,
    ):
        self._interpreter = interpreter
        self.name = name
        self.accelerator = accelerator
        self.runtime = runtime
        self.path = path
        self._input = interpreter.get_input_details()[0]
        details = interpreter.get_output_details()
        self.decodes_itself = is_decoded_outputs(details)
        height, width = (int(v) for v in self._input["shape"][1:3])
        self.input_size = (width, height)
        self.input_lut = input_lut(self._input)
        self.quantized_input = self._input["dtype"] != np.float32
        if self.decodes_itself:
            self._decoded = _decoded_layout(details)
            self.output_stride = output_stride or DEFAULT_STRIDE
            return
        self._layout = identify_raw_outputs(details)
        by_index = {d["index"]: d for d in details}
        self._dequant = {i: _dequantizer(d) for i, d in by_index.items()}
        heat_h = int(by_index[self._layout.heatmaps]["shape"][1])
        self.output_size = (int(by_index[self._layout.heatmaps]["shape"][2]), heat_h)
        inferred = (height - 1) // (heat_h - 1) if heat_h > 1 else None
        if output_stride is not None and inferred is not None and inferred != output_stride:
            raise ModelError(
                f"{path.name}: output stride {output_stride} was asked for but the model's "
                f"{width}x{height} input gives a {self.output_size[0]}x{heat_h} heatmap "
                f"(stride {inferred})"
            )
        self.output_stride = output_stride or inferred or DEFAULT_STRIDE

    def input_view(self) -> np.ndarray:
        """(h, w, 3) writable view of the input tensor, dtype of `input_lut`."""
        return self._interpreter.tensor(self._input["index"])()[0]

    def invoke(self) -> PoseNetOutputs | Poses:
        """Run once. Raw-output models give PoseNetOutputs; decoder models give Poses
        in model-input pixels."""
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        if self.decodes_itself:
            return self._read_decoded()
        layout = self._layout
        heatmaps = self._dequant[layout.heatmaps](get(layout.heatmaps)[0])
        offsets = self._dequant[layout.offsets](get(layout.offsets)[0])
        fwd = self._dequant[layout.fwd](get(layout.fwd)[0])
        if layout.bwd is None:  # Coral: [fwd y, fwd x, bwd y, bwd x] x 16 edges
            fwd, bwd = fwd[..., :DISPLACEMENT_CHANNELS], fwd[..., DISPLACEMENT_CHANNELS:]
        else:
            bwd = self._dequant[layout.bwd](get(layout.bwd)[0])
        return PoseNetOutputs(heatmaps, offsets, fwd, bwd, self.output_stride)

    def _read_decoded(self) -> Poses:
        get = self._interpreter.get_tensor
        keypoints_idx, scores_idx, pose_scores_idx, count_idx = self._decoded
        count = int(np.asarray(get(count_idx)).reshape(-1)[0])
        yx = np.asarray(get(keypoints_idx), np.float32)[0, :count]
        return Poses(
            xy=np.ascontiguousarray(yx[..., ::-1]),
            scores=np.asarray(get(scores_idx), np.float32)[0, :count],
            pose_scores=np.asarray(get(pose_scores_idx), np.float32)[0, :count],
        )


def _decoded_layout(details: list[dict]) -> tuple[int, int, int, int]:
    by_rank: dict[int, list[dict]] = {}
    for d in details:
        by_rank.setdefault(len(d["shape"]), []).append(d)
    count = min(details, key=lambda d: len(d["shape"]))
    return (by_rank[4][0]["index"], by_rank[3][0]["index"], by_rank[2][0]["index"], count["index"])


def check_input_size(size: tuple[int, int], stride: int) -> None:
    width, height = size
    if width < stride + 1 or height < stride + 1 or (width - 1) % stride or (height - 1) % stride:
        raise ModelError(
            f"input size {width}x{height} does not fit output stride {stride}: "
            f"width - 1 and height - 1 must be multiples of {stride} (e.g. "
            f"{(width - 1) // stride * stride + 1}x{(height - 1) // stride * stride + 1})"
        )


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    stride: int | None = None,
    input_size: tuple[int, int] | None = None,
    accelerator: str = "cpu",
    device: str = "",
    threads: int = 2,
    quantized: bool = False,
) -> PoseModel:
    """Open a PoseNet model ready to invoke.

    `stride` picks the file of a named model; for a path it is checked against
    the model. `input_size` (w, h) resizes the input where the model allows it;
    None keeps a fixed-size model's size and gives a resizable one the default.
    """
    if accelerator not in ACCELERATORS:
        raise ModelError(f"accelerator must be one of {', '.join(ACCELERATORS)}, not {accelerator!r}")
    path = resolve_model_path(name_or_path, stride=stride or DEFAULT_STRIDE, quantized=quantized)
    info = inspect_model_file(path)
    Interpreter, load_delegate, runtime = import_runtime()

    delegates = []
    used = "cpu"
    if accelerator in ("edgetpu", "auto"):
        try:
            delegates.append(load_edgetpu_delegate(load_delegate, device))
            used = "edgetpu"
        except AcceleratorError as exc:
            if accelerator == "edgetpu":
                raise
            log.warning("Edge TPU unavailable, running on the CPU: %s", exc)
    if info.edgetpu_compiled and used != "edgetpu":
        raise _needs_edgetpu_error(path)
    if info.has_posenet_decoder:
        delegates.append(load_posenet_decoder_delegate(load_delegate))

    try:
        interpreter = Interpreter(
            model_path=str(path),
            experimental_delegates=delegates or None,
            num_threads=threads,
        )
    except ValueError as exc:
        raise _translate_allocate_error(exc, info, used) from exc

    detail = interpreter.get_input_details()[0]
    signature = [int(v) for v in detail.get("shape_signature", detail["shape"])]
    native = (int(detail["shape"][2]), int(detail["shape"][1]))
    resizable = -1 in signature[1:3]
    wanted = input_size or (DEFAULT_INPUT_SIZE if resizable else native)
    if wanted != native:
        if used == "edgetpu":
            log.warning(
                "the Edge TPU runs %s at its compiled size %dx%d, not %dx%d",
                path.name, native[0], native[1], wanted[0], wanted[1],
            )
        else:
            if stride:
                check_input_size(wanted, stride)
            interpreter.resize_tensor_input(detail["index"], [1, wanted[1], wanted[0], 3], strict=False)
    try:
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise _translate_allocate_error(exc, info, used) from exc

    model = PoseModel(
        interpreter,
        name=path.stem,
        accelerator=used,
        runtime=runtime,
        path=path,
        output_stride=stride,
    )
    log.info(
        "model %s on %s (%s): input %dx%d, output stride %d",
        model.name, used, runtime, model.input_size[0], model.input_size[1], model.output_stride,
    )
    return model
