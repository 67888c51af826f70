"""The committed models: checksums listed in models/SOURCES.md, and that each
one loads (and resizes, where it can) and yields the expected output shapes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
SOURCES = MODELS_DIR / "SOURCES.md"

OUTPUTS = (("heatmaps", 17), ("offsets", 34), ("displacement_fwd", 32), ("displacement_bwd", 32))
MODEL_RE = re.compile(r"^posenet_mnv1_075_stride(8|16|32)_(float32|int8)\.tflite$")
MOVENET_RE = re.compile(r"^movenet_(lightning|thunder|multipose)_(float16|int8)\.tflite$")
#: Single-pose MoveNet: static square input side.
MOVENET_SIDE = {"lightning": 192, "thunder": 256}
ROW_RE = re.compile(r"^\|\s*`?([^|`\s]+)`?\s*\|\s*`?([0-9a-f]{64})`?\s*\|\s*$")


def sha256_table() -> dict[str, str]:
    """{file: sha256} from the `| file | sha256 |` table of SOURCES.md."""
    table: dict[str, str] = {}
    in_table = False
    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`").lower() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[:2] == ["file", "sha256"]:
            in_table = True
            continue
        if in_table:
            if not line.lstrip().startswith("|"):
                break
            match = ROW_RE.match(line.strip())
            if match:
                table[match.group(1)] = match.group(2)
            elif not set(line.replace("|", "").strip()) <= set("-: "):
                raise AssertionError(f"unparsable row in the sha256 table: {line!r}")
    return table


def tflite_files(prefix: str = "") -> list[Path]:
    return sorted(MODELS_DIR.glob(f"{prefix}*.tflite"))


def test_sources_table_lists_files() -> None:
    table = sha256_table()
    assert table, "SOURCES.md has no | file | sha256 | table"
    for name in table:
        assert (MODELS_DIR / name).is_file(), f"{name} is listed in SOURCES.md but absent"


def test_every_model_is_listed() -> None:
    table = sha256_table()
    missing = [p.name for p in tflite_files() if p.name not in table]
    assert not missing, f"models absent from the SOURCES.md sha256 table: {missing}"
    assert "posenet_mnv1_075_stride16_float32.tflite" in table
    for name in ("lightning", "thunder", "multipose"):
        for precision in ("float16", "int8"):
            assert f"movenet_{name}_{precision}.tflite" in table


def test_every_model_file_is_known() -> None:
    unknown = [p.name for p in tflite_files() if not (MODEL_RE.match(p.name) or MOVENET_RE.match(p.name))]
    assert not unknown, f"unexpected model file names: {unknown}"


@pytest.mark.parametrize("name", sorted(sha256_table()) if SOURCES.exists() else [])
def test_sha256(name: str) -> None:
    digest = hashlib.sha256((MODELS_DIR / name).read_bytes()).hexdigest()
    assert digest == sha256_table()[name], f"{name}: sha256 {digest} differs from SOURCES.md"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            pytest.skip("neither ai_edge_litert nor tflite_runtime is importable")
    return Interpreter


@pytest.mark.parametrize("path", tflite_files("posenet_"), ids=lambda p: p.name)
@pytest.mark.parametrize("height,width", [(257, 353), (385, 385)])
def test_model_resizes_and_outputs(path: Path, height: int, width: int) -> None:
    match = MODEL_RE.match(path.name)
    assert match, f"unexpected model file name {path.name}"
    stride, kind = int(match.group(1)), match.group(2)
    if (height - 1) % stride or (width - 1) % stride:
        pytest.skip(f"{height}x{width} does not suit stride {stride}")
    interp = _interpreter_class()(model_path=str(path), num_threads=1)
    (inp,) = interp.get_input_details()
    assert inp["name"] == "image"
    assert list(inp["shape_signature"]) == [1, -1, -1, 3]
    expected_dtype = np.uint8 if kind == "int8" else np.float32
    assert inp["dtype"] == expected_dtype
    if kind == "int8":
        scale, zero = inp["quantization"]
        # uint8 pixel p means about p / 127.5 - 1
        assert abs(scale - 1 / 127.5) < 1e-6 and zero in (127, 128)

    interp.resize_tensor_input(inp["index"], [1, height, width, 3])
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    if kind == "int8":
        x = rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)
    else:
        x = rng.uniform(-1, 1, size=(1, height, width, 3)).astype(np.float32)
    interp.set_tensor(inp["index"], x)
    interp.invoke()

    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    details = interp.get_output_details()
    assert [d["name"] for d in details] == [name for name, _ in OUTPUTS]
    for d, (name, channels) in zip(details, OUTPUTS):
        value = interp.get_tensor(d["index"])
        assert value.shape == (1, out_h, out_w, channels), name
        assert value.dtype == expected_dtype, name
        if kind == "int8":
            assert d["quantization"][0] > 0, f"{name} lacks a quantization scale"
        else:
            assert np.isfinite(value).all(), name


@pytest.mark.parametrize("path", tflite_files("movenet_"), ids=lambda p: p.name)
def test_movenet_input_and_output(path: Path) -> None:
    """uint8 pixel input (int8 builds: read as p / 127.5 - 1 through scale 1/127.5
    and zero point 128, so raw pixels), float32
    output; single-pose static [1, S, S, 3] -> [1, 1, 17, 3]; MultiPose resizable
    [1, -1, -1, 3] -> [1, 6, 56] at any multiple of 32."""
    match = MOVENET_RE.match(path.name)
    assert match, f"unexpected model file name {path.name}"
    name, kind = match.groups()
    interp = _interpreter_class()(model_path=str(path), num_threads=1)
    (inp,) = interp.get_input_details()
    assert inp["name"] == "image" and inp["dtype"] == np.uint8
    scale, zero = inp["quantization"]
    if kind == "int8":
        assert abs(scale - 1 / 127.5) < 1e-6 and zero == 128
    else:
        assert (scale, zero) == (0.0, 0)
    if name == "multipose":
        assert list(inp["shape_signature"]) == [1, -1, -1, 3]
        sizes = [(256, 256), (192, 256), (320, 224)]
    else:
        side = MOVENET_SIDE[name]
        assert list(inp["shape_signature"]) == [1, side, side, 3]
        sizes = [(side, side)]
    rng = np.random.default_rng(0)
    for height, width in sizes:
        if name == "multipose":
            interp.resize_tensor_input(inp["index"], [1, height, width, 3])
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8))
        interp.invoke()
        (out,) = interp.get_output_details()
        value = interp.get_tensor(out["index"])
        expected = (1, 6, 56) if name == "multipose" else (1, 1, 17, 3)
        assert value.shape == expected and value.dtype == np.float32
        assert out["name"] == ("poses" if name == "multipose" else "keypoints")
        assert np.isfinite(value).all()
