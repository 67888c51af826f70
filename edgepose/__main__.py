"""Command line: `edgepose detect | eval | bench | run | check`.

The only module that exits: library code raises EdgePoseError subclasses,
which carry the sysexits code this module returns (78 for a bad config, so
systemd does not restart into the same mistake).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .constants import (
    DEFAULT_MAX_POSES,
    DEFAULT_MIN_PART_SCORE,
    DEFAULT_MIN_POSE_SCORE,
    DEFAULT_INPUT_SIZE,
    DEFAULT_MODEL,
    DEFAULT_QUANTIZED,
    DEFAULT_NMS_RADIUS,
    DEFAULT_THREADS,
    OUTPUT_STRIDES,
    PART_NAMES,
)
from .core import Poses
from .errors import EdgePoseError, ExitCode, UsageError

log = logging.getLogger("edgepose")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# --- argument helpers ----------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (w, h)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH like 353x257, not {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, not {text!r}")
    return width, height


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and decoding")
    group.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or .tflite path (default {DEFAULT_MODEL})")
    group.add_argument("--stride", type=int, choices=OUTPUT_STRIDES, default=16, help="output stride (default 16)")
    group.add_argument("--input-size", type=parse_size, default=None, metavar="WxH",
                       help="model input size; (W-1) and (H-1) multiples of the stride (default "
                            f"{DEFAULT_INPUT_SIZE[0]}x{DEFAULT_INPUT_SIZE[1]}, or a fixed-size model's own)")
    group.add_argument("--quantized", action=argparse.BooleanOptionalAction, default=DEFAULT_QUANTIZED,
                       help="int8 (--quantized) or float32 (--no-quantized) build of a named model "
                            f"(default {'int8' if DEFAULT_QUANTIZED else 'float32'})")
    group.add_argument("--accelerator", choices=("cpu", "edgetpu", "auto"), default="cpu")
    group.add_argument("--device", default="", help="Edge TPU device: usb, usb:0, pci:0 (default: first found)")
    group.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    group.add_argument("--max-poses", type=int, default=DEFAULT_MAX_POSES)
    group.add_argument("--min-pose-score", type=float, default=DEFAULT_MIN_POSE_SCORE)
    group.add_argument("--min-part-score", type=float, default=DEFAULT_MIN_PART_SCORE)
    group.add_argument("--nms-radius", type=float, default=DEFAULT_NMS_RADIUS, help="model-input pixels")
    group.add_argument("--min-keypoints", type=int, default=0,
                       help="drop poses with fewer keypoints scoring >= --min-part-score")
    group.add_argument("--cleanup", choices=("none", "seed", "seed-single"), default="none",
                       help="seed: per pose, keep keypoints >= 0.5, best point per part, no duplicates; "
                            "seed-single: the same merged into one person")


def _open_detector(args: argparse.Namespace):
    from .backend import load_model
    from .detector import PoseDetector

    model = load_model(
        args.model,
        stride=args.stride,
        input_size=args.input_size,
        accelerator=args.accelerator,
        device=args.device,
        threads=args.threads,
        quantized=args.quantized,
    )
    try:
        detector = PoseDetector(
            model,
            max_poses=args.max_poses,
            min_pose_score=args.min_pose_score,
            min_part_score=args.min_part_score,
            nms_radius=args.nms_radius,
            cleanup=args.cleanup,
            min_keypoints=args.min_keypoints,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return model, detector


def read_rgb(path: Path) -> np.ndarray:
    """Pixels as stored (no EXIF rotation), like COCO's annotations and the TF.js reference."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def poses_to_json(poses: Poses) -> list[dict[str, Any]]:
    return [
        {
            "score": round(float(poses.pose_scores[i]), 4),
            "keypoints": [
                {
                    "part": part,
                    "x": round(float(poses.xy[i, k, 0]), 2),
                    "y": round(float(poses.xy[i, k, 1]), 2),
                    "score": round(float(poses.scores[i, k]), 4),
                }
                for k, part in enumerate(PART_NAMES)
            ],
        }
        for i in range(len(poses))
    ]


def _expand_images(items: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(path)
    return paths


# --- detect --------------------------------------------------------------------


def cmd_detect(args: argparse.Namespace) -> int:
    from .overlay import encode_jpeg, render_overlay

    _, detector = _open_detector(args)
    if args.overlay:
        Path(args.overlay).mkdir(parents=True, exist_ok=True)
    results, failures = [], 0
    for path in _expand_images(args.images):
        try:
            rgb = read_rgb(path)
        except (OSError, ValueError) as exc:
            failures += 1
            print(f"edgepose: {path}: cannot read image: {exc}", file=sys.stderr)
            continue
        poses = detector.detect(rgb)
        results.append({"image": path.name, "width": rgb.shape[1], "height": rgb.shape[0],
                        "poses": poses_to_json(poses)})
        if args.overlay:
            image = render_overlay(rgb, poses, labels=not args.no_labels, min_score=args.min_part_score)
            (Path(args.overlay) / f"{path.stem}_overlay.jpg").write_bytes(encode_jpeg(image, 90))
    text = json.dumps(results if len(results) != 1 or args.json else results[0], indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    return ExitCode.FAILURE if failures else ExitCode.OK


# --- eval ----------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_keypoints, results_from_poses

    gt = json.loads(Path(args.gt).read_text())
    model, detector = _open_detector(args)
    results: list[dict] = []
    times: list[float] = []
    failures = 0
    for image in gt["images"]:
        path = Path(args.images) / image["file_name"]
        try:
            rgb = read_rgb(path)
        except (OSError, ValueError) as exc:
            failures += 1
            print(f"edgepose: {path}: cannot read image: {exc}", file=sys.stderr)
            continue
        start = time.perf_counter()
        poses = detector.detect(rgb)
        times.append((time.perf_counter() - start) * 1000.0)
        results.extend(results_from_poses(image["id"], poses))
    stats = evaluate_keypoints(gt, results)
    if args.results:
        Path(args.results).write_text(json.dumps(results))
    summary = {
        "model": model.name,
        "input_size": "%dx%d" % model.input_size,
        "stride": model.output_stride,
        "images": len(times),
        "poses": len(results),
        **{k: round(float(v), 4) for k, v in stats.items()},
        "ms_per_image_median": round(float(np.median(times)), 1) if times else None,
    }
    if args.json_summary:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
    return ExitCode.FAILURE if failures else ExitCode.OK


# --- bench ---------------------------------------------------------------------


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    arr = np.asarray(samples)
    return float(np.median(arr)), float(np.percentile(arr, 95)), float(arr.min())


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_bench(args: argparse.Namespace) -> int:
    model, detector = _open_detector(args)
    rows = []
    if args.model_only:
        view = model.input_view()
        view[...] = model.input_lut[np.random.default_rng(0).integers(0, 256, view.shape)]
        del view
        for _ in range(args.warmup):
            model.invoke()
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            model.invoke()
            samples.append((time.perf_counter() - start) * 1000.0)
        p50, p95, best = _percentiles(samples)
        rows.append({"stage": "invoke", "p50_ms": p50, "p95_ms": p95, "min_ms": best})
    else:
        frames = [read_rgb(p) for p in _expand_images(args.images)] if args.images else _demo_frames()
        if not frames:
            raise EdgePoseError("no images to benchmark with")
        for i in range(args.warmup):
            detector.detect(frames[i % len(frames)])
        timing: dict[str, list[float]] = {}
        totals = []
        for i in range(args.runs):
            start = time.perf_counter()
            detector.detect(frames[i % len(frames)])
            totals.append((time.perf_counter() - start) * 1000.0)
            for stage, ms in detector.last_timing.items():
                timing.setdefault(stage, []).append(ms)
        for stage, samples in [*timing.items(), ("total", totals)]:
            p50, p95, best = _percentiles(samples)
            rows.append({"stage": stage, "p50_ms": p50, "p95_ms": p95, "min_ms": best})
    report = {
        "model": model.name,
        "runtime": model.runtime,
        "accelerator": model.accelerator,
        "input_size": "%dx%d" % model.input_size,
        "stride": model.output_stride,
        "threads": args.threads,
        "runs": args.runs,
        "stages": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if args.json_summary:
        print(json.dumps(report))
    else:
        print(f"{report['model']} on {report['accelerator']} ({report['runtime']}), input {report['input_size']}, "
              f"stride {report['stride']}, {args.threads} threads, {args.runs} runs")
        for row in report["stages"]:
            print(f"  {row['stage']:>12}: p50 {row['p50_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms   "
                  f"min {row['min_ms']:8.2f} ms")
        print(f"  peak RSS {report['peak_rss_mb']} MB")
    return ExitCode.OK


def _demo_frames() -> list[np.ndarray]:
    demo = Path(__file__).resolve().parent / "demo"
    return [read_rgb(p) for p in sorted(demo.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


# --- run / check ---------------------------------------------------------------


def _config_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if getattr(args, "source", None):
        overrides["source.uri"] = args.source
    if getattr(args, "broker", None):
        host, _, port = args.broker.rpartition(":") if ":" in args.broker else (args.broker, "", "")
        overrides["mqtt.host"] = host or args.broker
        if port:
            try:
                overrides["mqtt.port"] = int(port)
            except ValueError:
                overrides["mqtt.port"] = port  # let validation name it
    if getattr(args, "node_id", None):
        overrides["node.id"] = args.node_id
    if getattr(args, "snapshot_dir", None):
        overrides["snapshots.dir"] = args.snapshot_dir
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon import run_daemon

    config = load_config(args.config, _config_overrides(args))
    _setup_logging(args.log_level or config.logging.level)
    return run_daemon(config, duration_s=args.duration)


def cmd_check(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon import check_installation

    try:
        config = load_config(args.config, _config_overrides(args))
    except EdgePoseError as exc:
        print("config: FAIL")
        for problem in getattr(exc, "problems", [str(exc)]):
            print(f"  {problem}")
        return exc.exit_code
    print(f"config: ok ({args.config or 'defaults'})")
    ok = check_installation(config, report=print)
    return ExitCode.OK if ok else ExitCode.FAILURE


# --- main ----------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepose", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    parser.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    sub = parser.add_subparsers(dest="command", required=True)

    detect = sub.add_parser("detect", help="poses in image files, as JSON (and overlays)")
    detect.add_argument("images", nargs="+", help="image files or folders")
    _model_options(detect)
    detect.add_argument("--json", metavar="OUT", help="write JSON here instead of stdout")
    detect.add_argument("--overlay", metavar="DIR", help="write one annotated JPEG per image here")
    detect.add_argument("--no-labels", action="store_true", help="overlay without part names")
    detect.set_defaults(func=cmd_detect)

    evaluate = sub.add_parser("eval", help="COCO keypoint AP/AR over a folder of images")
    evaluate.add_argument("--gt", required=True, help="COCO person_keypoints JSON")
    evaluate.add_argument("--images", required=True, help="folder with the images it names")
    evaluate.add_argument("--results", metavar="OUT", help="write COCO keypoint results here")
    evaluate.add_argument("--json-summary", action="store_true", help="print one JSON line")
    _model_options(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    bench = sub.add_parser("bench", help="time the model alone or the whole detect pipeline")
    bench.add_argument("--model-only", action="store_true", help="time interpreter invoke only")
    bench.add_argument("--images", nargs="*", help="images or folders for the pipeline (default: demo photos)")
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--json-summary", action="store_true", help="print one JSON line")
    _model_options(bench)
    bench.set_defaults(func=cmd_bench)

    for name, func, text in (("run", cmd_run, "the daemon: camera -> poses -> MQTT and snapshots"),
                             ("check", cmd_check, "validate config, open model, probe camera and broker")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", default=None, help="TOML config (default: built-in defaults)")
        p.add_argument("--source", help="override source.uri")
        p.add_argument("--broker", metavar="HOST[:PORT]", help="override mqtt.host / mqtt.port")
        p.add_argument("--node-id", help="override node.id")
        p.add_argument("--snapshot-dir", help="override snapshots.dir")
        if name == "run":
            p.add_argument("--duration", type=float, default=None, metavar="S",
                           help="stop by itself after S seconds (demo, tests)")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        _setup_logging(args.log_level or "warning")
    try:
        return int(args.func(args))
    except EdgePoseError as exc:
        print(f"edgepose: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)
    except Exception:  # noqa: BLE001 - last resort: log the traceback, exit EX_SOFTWARE
        log.exception("unexpected error")
        return int(ExitCode.SOFTWARE)


if __name__ == "__main__":
    sys.exit(main())
