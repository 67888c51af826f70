"""`edgepose detect`: poses in image files, as a JSON array (and overlays)

Find the poses in image files (each an unrelated still) and print them as a JSON array in the
images' own pixels; --overlay also draws them. Exit 1 when an image cannot be read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..constants import PART_NAMES
from ..core import Poses
from ..errors import ExitCode
from ..images import expand_images
from .common import add_model_options, open_flags_estimator, read_or_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files or folders")
    add_model_options(parser)
    parser.add_argument("--json", metavar="OUT", help="write JSON here instead of stdout")
    parser.add_argument("--overlay", metavar="DIR", help="write one annotated JPEG per image here")
    parser.add_argument("--no-labels", action="store_true", help="overlay without part names")


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


def main(args: argparse.Namespace) -> int:
    from ..overlay import encode_jpeg, render_overlay

    config, estimator = open_flags_estimator(args)
    if args.overlay:
        Path(args.overlay).mkdir(parents=True, exist_ok=True)
    results, failures = [], 0
    for path in expand_images(args.images):
        rgb = read_or_report(path)
        if rgb is None:
            failures += 1
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
