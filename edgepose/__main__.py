"""Command line: `edgepose detect | eval | eval-falls | bench | models | replay | run | check | forget`.

The only module that exits: library code raises EdgePoseError subclasses,
which carry the sysexits code this module returns (78 for a bad config, so
systemd does not restart into the same mistake).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .constants import PART_NAMES
from .core import Poses
from .errors import ConfigError, EdgePoseError, ExitCode, FrameError, UsageError
from .images import expand_images, read_rgb
from .text import count

log = logging.getLogger("edgepose")


# --- argument helpers ----------------------------------------------------------


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


_positive_int, _count = _int_at_least(1), _int_at_least(0)


def _float_above(minimum: float, *, inclusive: bool):
    """An argparse type: a finite number above (or at) `minimum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not (value == value and abs(value) != float("inf")) or value < minimum or (
                value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be {'at least' if inclusive else 'more than'} {minimum:g}, not {text}")
        return value

    return parse


_positive_float, _non_negative_float = _float_above(0.0, inclusive=False), _float_above(0.0, inclusive=True)


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


#: Model and decoding flags and the config keys they override. Defaults, bounds
#: and messages all come from config.py: a flag left out keeps the config's value.
MODEL_FLAGS: dict[str, str] = {
    "--stride": "model.stride",
    "--input-size": "model.input_size",
    "--quantized": "model.quantized",
    "--accelerator": "model.accelerator",
    "--device": "model.edgetpu_device",
    "--threads": "model.threads",
    "--multipose-long-side": "model.multipose_long_side",
    "--still-passes": "model.still_passes",
    "--first-crop": "model.first_crop",
    "--max-poses": "decode.max_poses",
    "--min-pose-score": "decode.min_pose_score",
    "--min-part-score": "decode.min_part_score",
    "--nms-radius": "decode.nms_radius",
    "--min-keypoints": "decode.min_keypoints",
    "--cleanup": "decode.cleanup",
}


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and decoding (override the config; defaults: `edgepose models`, config/edgepose.toml)")
    group.add_argument("--config", default=None, help="TOML config to start from (default: built-in defaults)")
    group.add_argument("--model", help="model name (see `edgepose models`) or a .tflite file")
    group.add_argument("--stride", type=int, help="PoseNet only: output stride, 8, 16 or 32")
    group.add_argument("--input-size", metavar="WxH", help="PoseNet only: model input size, or auto")
    group.add_argument("--multipose-long-side", type=int, metavar="PX",
                       help="movenet-multipose only: the frame's long side in the model input (multiple of 32)")
    group.add_argument("--still-passes", type=int, metavar="N",
                       help="single-pose MoveNet only: passes over each still image")
    group.add_argument("--first-crop", help="single-pose MoveNet only: centre or letterbox")
    group.add_argument("--quantized", action=argparse.BooleanOptionalAction, default=None,
                       help="int8 (--quantized) or float (--no-quantized) build of a named model")
    group.add_argument("--accelerator", help="cpu, edgetpu or auto")
    group.add_argument("--device", help="Edge TPU device: usb, usb:0, pci:0 (default: first found)")
    group.add_argument("--threads", type=int, metavar="N",
                       help="interpreter threads; 0: cores - 1, 1 to 4 (the default)")
    group.add_argument("--max-poses", type=int, help="PoseNet and movenet-multipose")
    group.add_argument("--min-pose-score", type=float, help="a pose (MultiPose: an instance) needs this score")
    group.add_argument("--min-part-score", type=float, metavar="F",
                       help="a keypoint counts as found at this score (0-1)")
    group.add_argument("--nms-radius", type=float, help="PoseNet only: model-input pixels")
    group.add_argument("--min-keypoints", type=int,
                       help="drop poses with fewer keypoints scoring >= --min-part-score")
    group.add_argument("--cleanup", help="none; seed: per pose, keep keypoints >= 0.5, best point per "
                                         "part, no duplicates; seed-single: the same merged into one person")


def _flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {
        key: getattr(args, flag[2:].replace("-", "_")) for flag, key in MODEL_FLAGS.items()
    }
    if args.model:
        overrides[_model_key(args.model)] = args.model
    return overrides


def _model_key(value: str) -> str:
    """The key `--model VALUE` sets: a known name, an existing file, or a value that
    looks like a path (a directory part or a .tflite suffix) is what it says; anything
    else is judged as a mistyped name, so the config's "did you mean" answers it."""
    from .estimators import MODELS

    if value in MODELS:
        return "model.name"
    if Path(value).expanduser().exists() or "/" in value or value.lower().endswith(".tflite"):
        return "model.path"
    return "model.name"


def _load_flags_config(args: argparse.Namespace):
    """The config file (if any) with the model flags laid over it. A bad flag value
    is a usage error (exit 2) named by flag and key; a bad file stays exit 78."""
    from .config import load_config

    overrides = {**getattr(args, "config_overrides", {}), **_flag_overrides(args)}
    path = overrides.get("model.path")
    if path is not None and not Path(str(path)).expanduser().exists():
        raise UsageError(f"--model: model.path: {path} does not exist (a model name from `edgepose models` "
                         "or a .tflite file)")
    try:
        return load_config(args.config, overrides)
    except ConfigError as exc:
        keys = ({key: flag for flag, key in MODEL_FLAGS.items()} | {"model.name": "--model", "model.path": "--model"}
                | {key: f"--set {key}" for key in getattr(args, "config_overrides", {})})
        given = {key for key, value in overrides.items() if value is not None}
        problems, all_flags = [], True
        for problem in exc.problems:
            key = problem.split(":", 1)[0]
            if key in given:
                problems.append(f"{keys[key]}: {problem}")
            else:
                all_flags = False
                problems.append(problem)
        if all_flags:
            raise UsageError("; ".join(problems)) from None
        raise ConfigError(problems) from None


def _open_estimator(args: argparse.Namespace):
    from .estimators import open_estimator

    config = _load_flags_config(args)
    return config, open_estimator(config.model, config.decode)


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


# --- detect ---------------------------------------------------------------------


def cmd_detect(args: argparse.Namespace) -> int:
    from .overlay import encode_jpeg, render_overlay

    config, estimator = _open_estimator(args)
    if args.overlay:
        Path(args.overlay).mkdir(parents=True, exist_ok=True)
    results, failures = [], 0
    for path in expand_images(args.images):
        try:
            rgb = read_rgb(path)
        except FrameError as exc:
            failures += 1
            print(f"edgepose: {exc}", file=sys.stderr)
            continue
        poses = estimator.estimate_still(rgb)  # unrelated images: reset, the family's passes
        results.append({"image": path.name, "width": rgb.shape[1], "height": rgb.shape[0],
                        "poses": poses_to_json(poses)})
        if args.overlay:
            image = render_overlay(rgb, poses, labels=not args.no_labels, min_score=config.decode.min_part_score)
            (Path(args.overlay) / f"{path.stem}_overlay.jpg").write_bytes(encode_jpeg(image, 90))
    text = json.dumps(results, indent=2)  # always an array, one entry per readable image
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    return ExitCode.FAILURE if failures else ExitCode.OK


# --- eval -----------------------------------------------------------------------


def _read_ground_truth(path: str) -> dict:
    """COCO person-keypoint annotations, or a usage error naming --gt and the problem."""
    try:
        gt = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--gt {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise UsageError(f"--gt {path}: not a JSON file ({exc})") from None
    if not (isinstance(gt, dict) and isinstance(gt.get("images"), list)
            and all(isinstance(i, dict) and isinstance(i.get("file_name"), str) and "id" in i
                    for i in gt["images"])
            and isinstance(gt.get("annotations"), list) and isinstance(gt.get("categories"), list)):
        raise UsageError(f"--gt {path}: not COCO keypoint annotations (expected 'images' with "
                         "'id' and 'file_name', 'annotations' and 'categories')")
    return gt


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_keypoints, results_from_poses

    gt = _read_ground_truth(args.gt)
    _, estimator = _open_estimator(args)
    info = estimator.info
    results: list[dict] = []
    times: list[float] = []
    failures = 0
    for image in gt["images"]:
        path = Path(args.images) / image["file_name"]
        try:
            rgb = read_rgb(path)
        except FrameError as exc:
            failures += 1
            print(f"edgepose: {exc}", file=sys.stderr)
            continue
        start = time.perf_counter()
        poses = estimator.estimate_still(rgb)
        times.append((time.perf_counter() - start) * 1000.0)
        results.extend(results_from_poses(image["id"], poses))
    try:
        stats = evaluate_keypoints(gt, results)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"--gt {args.gt}: malformed annotations ({type(exc).__name__}: {exc})") from None
    if args.results:
        Path(args.results).write_text(json.dumps(results))
    summary = {
        "model": info.name,
        "file": info.path.name,
        "precision": info.precision,
        "input_size": "%dx%d" % info.input_size,
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


# --- eval-falls -------------------------------------------------------------------


def _set_overrides(items: list[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs, each value read as TOML (a bare word stays a string)."""
    import tomllib

    overrides: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. falls.confirm_s=3")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        overrides[key.strip()] = value
    return overrides


def cmd_eval_falls(args: argparse.Namespace) -> int:
    from .fall_eval import format_report, load_set, run_clips, summarise, write_recorded_set

    if args.set:
        args.config_overrides = _set_overrides(args.set)
    config = _load_flags_config(args)
    fps = (config.source.max_fps or 10.0) if args.fps is None else args.fps
    clips = [clip for folder in args.sets for clip in load_set(Path(folder))]
    if args.limit:
        clips = clips[: args.limit]
    progress = None
    if args.progress:
        done = [0]

        def progress(result) -> None:
            done[0] += 1
            print(f"  {done[0]}/{len(clips)} {result.clip.path.name}: "
                  f"{'raised' if result.raised else 'not raised'}", file=sys.stderr, flush=True)

    record_dir = Path(args.record) if args.record else None
    results = run_clips(clips, config, fps=fps, hold_s=args.hold, jobs=args.jobs, record_dir=record_dir,
                        progress=progress)
    if record_dir is not None:
        write_recorded_set(record_dir, results, fps=fps, hold_s=args.hold, model=config.model.name)
    summary = summarise(results)
    summary.update({"sets": [str(s) for s in args.sets], "fps": fps, "hold_s": args.hold,
                    "model": config.model.name})
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "clips": [r.as_dict() for r in results]},
                                              indent=1) + "\n")
    if args.json_summary:
        print(json.dumps(summary))
    else:
        print(format_report(results, summary, per_clip=not args.totals_only))
    return ExitCode.OK


# --- bench ----------------------------------------------------------------------


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    arr = np.asarray(samples)
    return float(np.median(arr)), float(np.percentile(arr, 95)), float(arr.min())


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time_invoke(model, runs: int, warmup: int) -> list[float]:
    """Model-only: invoke on random pixels (XNNPACK's time does not depend on them)."""
    view = model.input_view()
    pixels = np.random.default_rng(0).integers(0, 256, view.shape)
    view[...] = pixels.astype(view.dtype) if view.dtype != np.float32 else pixels / 127.5 - 1.0
    del view
    for _ in range(warmup):
        model.invoke()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        model.invoke()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def _demo_frames() -> list[np.ndarray]:
    from .sources import demo_dir

    return [read_rgb(p) for p in expand_images([demo_dir()])]


def cmd_bench(args: argparse.Namespace) -> int:
    if args.e2e:  # the real daemon end to end: edgepose/e2e.py
        from .e2e import cmd_bench_e2e

        return cmd_bench_e2e(args, _load_flags_config(args), _flag_overrides(args))
    _, estimator = _open_estimator(args)
    info = estimator.info
    rows = []
    if args.model_only:
        p50, p95, best = _percentiles(_time_invoke(estimator.model, args.runs, args.warmup))
        rows.append({"stage": "invoke", "p50_ms": p50, "p95_ms": p95, "min_ms": best})
    else:
        frames = [read_rgb(p) for p in expand_images(args.images)] if args.images else _demo_frames()
        if not frames:
            raise UsageError("no images to benchmark with")
        # photos are unrelated stills: each gets what detect and eval give it
        for i in range(args.warmup):
            estimator.estimate_still(frames[i % len(frames)])
        timing: dict[str, list[float]] = {}
        totals = []
        for i in range(args.runs):
            start = time.perf_counter()
            estimator.estimate_still(frames[i % len(frames)])
            totals.append((time.perf_counter() - start) * 1000.0)
            for stage, ms in estimator.last_timing.items():
                timing.setdefault(stage, []).append(ms)
        for stage, samples in [*timing.items(), ("total", totals)]:
            p50, p95, best = _percentiles(samples)
            rows.append({"stage": stage, "p50_ms": p50, "p95_ms": p95, "min_ms": best})
    report = {
        "model": info.name,
        "file": info.path.name,
        "precision": info.precision,
        "runtime": info.runtime,
        "accelerator": info.accelerator,
        "input_size": "%dx%d" % info.input_size,
        "threads": info.threads,
        "runs": args.runs,
        "stages": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if args.json_summary:
        print(json.dumps(report))
    else:
        print(f"{report['file']} ({report['precision']}) on {report['accelerator']} ({report['runtime']}), "
              f"input {report['input_size']}, {count(report['threads'], 'thread')}, {count(args.runs, 'run')}")
        for row in report["stages"]:
            print(f"  {row['stage']:>12}: p50 {row['p50_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms   "
                  f"min {row['min_ms']:8.2f} ms")
        print(f"  peak RSS {report['peak_rss_mb']} MB")
    return ExitCode.OK


# --- models ---------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .estimators import DEFAULT_MODEL, MODELS, models_dir

    folder = models_dir()
    rows = []
    for spec in MODELS.values():
        present = [name for name in spec.files if (folder / name).is_file()]
        rows.append({
            "name": spec.name, "family": spec.family, "summary": spec.summary,
            "precisions": list(spec.precisions), "input": spec.input_rule, "edgetpu": spec.edgetpu,
            "licence": spec.licence, "files": spec.files, "files_present": present,
            "default": spec.name == DEFAULT_MODEL,
            "cpu_default": ("int8 where the runtime runs int8 fast (ai-edge-litert), else the float build"
                            if spec.int8_on_cpu else
                            "the float build on every runtime (its int8 build scores below the reference)"),
        })
    if args.json:
        print(json.dumps({"models_dir": str(folder), "models": rows}, indent=2))
        return ExitCode.OK
    print(f"models in {folder}:")
    for row in rows:
        default = "  [default]" if row["default"] else ""
        print(f"\n{row['name']}  ({row['family']}) {row['summary']}{default}")
        print(f"  precisions: {', '.join(row['precisions'])}; on a CPU by default: {row['cpu_default']}")
        print(f"  input:      {row['input']}")
        print(f"  Edge TPU:   {row['edgetpu']}")
        print(f"  licence:    {row['licence']} (weights; see models/LICENSE-weights.md)")
        for name in row["files"]:
            print(f"  file:       {name}{'' if name in row['files_present'] else '  (missing)'}")
    return ExitCode.OK


# --- run / check ----------------------------------------------------------------


def _config_overrides(args: argparse.Namespace) -> dict[str, object]:
    from .config import broker_overrides

    overrides: dict[str, object] = {}
    if getattr(args, "source", None):
        overrides["source.uri"] = args.source
    if getattr(args, "broker", None):
        overrides.update(broker_overrides(args.broker))
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
    return run_daemon(config, duration_s=args.duration, record=Path(args.record) if args.record else None)


def cmd_forget(args: argparse.Namespace) -> int:
    """Uninstall: the node's retained topics and its Home Assistant device, gone from the broker."""
    from .config import load_config
    from .constants import (TOPIC_AVAILABILITY, TOPIC_PERSON_COUNT, TOPIC_SNAPSHOT, TOPIC_STATE,
                            TOPIC_STATS)
    from .core import Message
    from .mqtt import forget
    from .mqtt.discovery import discovery_removal_message
    from .mqtt.topics import node_topic

    config = load_config(args.config, _config_overrides(args))
    prefix, node = config.mqtt.topic_prefix, config.node.id
    cleared = [Message(node_topic(prefix, node, t), b"", qos=1, retain=True)
               for t in (TOPIC_AVAILABILITY, TOPIC_PERSON_COUNT, TOPIC_STATE, TOPIC_STATS, TOPIC_SNAPSHOT)]
    ok, detail = forget(config.mqtt, [discovery_removal_message(node, config.mqtt.discovery_prefix), *cleared])
    print(f"forget: {'ok' if ok else 'FAIL'} {detail}")
    return ExitCode.OK if ok else ExitCode.FAILURE


def cmd_replay(args: argparse.Namespace) -> int:
    from .config import load_config
    from .replay import replay_file

    config = load_config(args.config)
    events = replay_file(args.recording, config, sys.stdout)
    print(f"edgepose: {count(events, 'event')}", file=sys.stderr)
    return ExitCode.OK


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
    parser.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                        help="log level (default: logging.level of the config for run, else warning)")
    sub = parser.add_subparsers(dest="command", required=True)

    detect = sub.add_parser("detect", help="poses in image files, as a JSON array (and overlays)",
                            description="Find the poses in image files (each an unrelated still) and "
                                        "print them as a JSON array in the images' own pixels; "
                                        "--overlay also draws them. Exit 1 when an image cannot be read.")
    detect.add_argument("images", nargs="+", help="image files or folders")
    _model_options(detect)
    detect.add_argument("--json", metavar="OUT", help="write JSON here instead of stdout")
    detect.add_argument("--overlay", metavar="DIR", help="write one annotated JPEG per image here")
    detect.add_argument("--no-labels", action="store_true", help="overlay without part names")
    detect.set_defaults(func=cmd_detect)

    evaluate = sub.add_parser("eval", help="COCO keypoint AP/AR over a folder of images",
                              description="Run the model on the images a COCO person_keypoints file "
                                          "names and score the poses with COCO's keypoint AP and AR.")
    evaluate.add_argument("--gt", required=True, help="COCO person_keypoints JSON")
    evaluate.add_argument("--images", required=True, help="folder with the images it names")
    evaluate.add_argument("--results", metavar="OUT", help="write COCO keypoint results here")
    evaluate.add_argument("--json-summary", action="store_true", help="print one JSON line")
    _model_options(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    bench = sub.add_parser("bench", help="time the model alone or the whole estimate step",
                           description="Time the model's invoke alone (--model-only), the whole "
                                       "estimate step on still images, or the daemon end to end "
                                       "against a broker (--e2e SOURCE).")
    bench.add_argument("--model-only", action="store_true", help="time interpreter invoke only")
    bench.add_argument("--images", nargs="*", help="images or folders for the pipeline (default: demo photos)")
    bench.add_argument("--runs", type=_positive_int, default=50, metavar="N",
                       help="timed runs (invokes, or images through the whole estimate step); default 50")
    bench.add_argument("--warmup", type=_count, default=5, metavar="N",
                       help="untimed runs first, so start-up costs are not counted; default 5")
    bench.add_argument("--json-summary", action="store_true", help="print one JSON line")
    _model_options(bench)
    from .e2e import add_arguments as add_e2e_arguments

    add_e2e_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    falls = sub.add_parser(
        "eval-falls", help="fall detection on labelled clips: falls raised, false alarms, time to alert",
        description="Run labelled clips (videos through the daemon's pipeline, paced like a camera; "
                    "poses recordings through replay) and report falls raised, missed, false alarms and "
                    "the time from the fall to fall_detected. A set is a folder with a clips.json, or "
                    "with videos / .jsonl recordings under fall/ and adl/ sub-folders.")
    falls.add_argument("sets", nargs="+", metavar="SET", help="a set folder (or its clips.json)")
    falls.add_argument("--fps", type=_non_negative_float, default=None,
                       help="camera rate the clips are taken at (default: source.max_fps of the config, "
                            "10); 0: every frame or message, at its own time")
    falls.add_argument("--hold", type=_non_negative_float, default=5.0, metavar="S",
                       help="hold each clip's last frame for S seconds more (default 5: staged clips "
                            "stop just after the fall)")
    falls.add_argument("--jobs", type=_positive_int, default=1, help="clips run in this many processes")
    falls.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key (TOML value), e.g. --set falls.confirm_s=3")
    falls.add_argument("--limit", type=_positive_int, default=None, help="only the first N clips")
    falls.add_argument("--record", metavar="DIR",
                       help="keep the model's poses of every video clip in DIR as recordings, with a "
                            "clips.json: later runs replay them without the model (--fps 0 --hold 0)")
    falls.add_argument("--json", metavar="OUT", help="write every clip's result and the totals here")
    falls.add_argument("--json-summary", action="store_true", help="print the totals as one JSON line")
    falls.add_argument("--totals-only", action="store_true", help="no per-clip table")
    falls.add_argument("--progress", action="store_true", help="one line per clip on stderr as it ends")
    _model_options(falls)
    falls.set_defaults(func=cmd_eval_falls)

    replay = sub.add_parser("replay", help="the events a config would raise on a recording of poses messages",
                            description="Run a config's zones, presence and fall detection over a "
                                        "recording of poses messages (run --record, or mosquitto_sub) "
                                        "and print the events it would raise, one JSON line each.")
    replay.add_argument("recording", help="JSON Lines of poses messages (run --record, or mosquitto_sub), - for stdin")
    replay.add_argument("--config", default=None, help="TOML config whose zones, presence and falls to use")
    replay.set_defaults(func=cmd_replay)

    models = sub.add_parser("models", help="list the models edgepose can load",
                            description="List every model edgepose can load: family, precisions, "
                                        "input sizes, Edge TPU status, files and licence, and the "
                                        "folder the files are found in.")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)

    for name, func, text, description in (
        ("run", cmd_run, "the daemon: camera -> poses -> MQTT and snapshots",
         "Run the daemon: frames from source.uri through the model, tracking and events to MQTT and "
         "snapshots, until SIGTERM/Ctrl-C, the end of a file (source.loop = false) or --duration."),
        ("check", cmd_check, "validate config, open model, probe camera and broker",
         "Check an installation, one line per part: the config, the model, the source (one frame), "
         "the broker and the snapshot folder. Exit 0 when all pass, 1 when one fails, 78 for a bad config."),
        ("forget", cmd_forget, "uninstall: clear this node's retained topics and remove its Home Assistant device",
         "Remove this node from the broker (install.sh --uninstall runs it once the service has "
         "stopped): clears its retained topics (availability, person_count, state, stats, snapshot) "
         "and removes its Home Assistant device. Exit 0 when the broker took it, 1 when it could not "
         "be reached."),
    ):
        p = sub.add_parser(name, help=text, description=description)
        p.add_argument("--config", default=None, help="TOML config (default: built-in defaults)")
        if name != "forget":  # forget needs only the broker and the node's topics
            p.add_argument("--source", help="override source.uri")
        p.add_argument("--broker", metavar="HOST[:PORT]|URL",
                       help="override mqtt.host / mqtt.port: HOST[:PORT], mqtt://HOST[:PORT] or "
                            "mqtts://HOST[:PORT] (TLS on)")
        p.add_argument("--node-id", help="override node.id")
        if name != "forget":
            p.add_argument("--snapshot-dir", help="override snapshots.dir")
        if name == "run":
            p.add_argument("--duration", type=_seconds, default=None, metavar="S",
                           help="stop by itself after S seconds (demo, tests)")
            p.add_argument("--record", metavar="FILE",
                           help="also append every poses message to FILE (JSON Lines; `edgepose replay` reads it)")
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
    except BrokenPipeError:  # `edgepose detect ... | head`: the reader had enough
        sys.stderr.close()
        return int(ExitCode.OK)
    except Exception:  # noqa: BLE001 - last resort: log the traceback, exit EX_SOFTWARE
        log.exception("unexpected error")
        return int(ExitCode.SOFTWARE)


if __name__ == "__main__":
    sys.exit(main())
