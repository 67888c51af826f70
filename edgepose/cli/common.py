"""What the commands share: argument types, the model flags, loading a config from flags, logging."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FrameError, UsageError


def int_at_least(minimum: int):
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


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def float_above(minimum: float, *, inclusive: bool):
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


positive_float, non_negative_float = float_above(0.0, inclusive=False), float_above(0.0, inclusive=True)


def seconds(text: str) -> float:
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


def add_model_options(parser: argparse.ArgumentParser) -> None:
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


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {
        key: getattr(args, flag[2:].replace("-", "_")) for flag, key in MODEL_FLAGS.items()
    }
    if args.model:
        overrides[model_key(args.model)] = args.model
    return overrides


def model_key(value: str) -> str:
    """The key `--model VALUE` sets: a known name, an existing file, or a value that
    looks like a path (a directory part or a .tflite suffix) is what it says; anything
    else is judged as a mistyped name, so the config's "did you mean" answers it."""
    from ..estimators import MODELS

    if value in MODELS:
        return "model.name"
    if Path(value).expanduser().exists() or "/" in value or value.lower().endswith(".tflite"):
        return "model.path"
    return "model.name"


def load_flags_config(args: argparse.Namespace):
    """The config file (if any) with the model flags laid over it. A bad flag value
    is a usage error (exit 2) named by flag and key; a bad file stays exit 78."""
    from ..config import load_config

    overrides = {**getattr(args, "config_overrides", {}), **flag_overrides(args)}
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




def open_flags_estimator(args: argparse.Namespace):
    from ..estimators import open_estimator

    config = load_flags_config(args)
    return config, open_estimator(config.model, config.decode)



def set_overrides(items: list[str]) -> dict[str, object]:
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



def config_overrides(args: argparse.Namespace) -> dict[str, object]:
    from ..config import broker_overrides

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



def add_node_options(p: argparse.ArgumentParser, *, source: bool = True) -> None:
    """--config and the overrides a running node's commands share (run, check, forget)."""
    p.add_argument("--config", default=None, help="TOML config (default: built-in defaults)")
    if source:
        p.add_argument("--source", help="override source.uri")
    p.add_argument("--broker", metavar="HOST[:PORT]|URL",
                   help="override mqtt.host / mqtt.port: HOST[:PORT], mqtt://HOST[:PORT] or "
                        "mqtts://HOST[:PORT] (TLS on)")
    p.add_argument("--node-id", help="override node.id")
    if source:
        p.add_argument("--snapshot-dir", help="override snapshots.dir")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def read_or_report(path: Path) -> np.ndarray | None:
    """An image as RGB; None when it cannot be read, said on stderr (the command exits 1 at the end)."""
    from ..images import read_rgb

    try:
        return read_rgb(path)
    except FrameError as exc:
        print(f"edgepose: {exc}", file=sys.stderr)
        return None
