"""`edgepose eval`: COCO keypoint AP/AR over a folder of images

Run the model on the images a COCO person_keypoints file names and score the poses with COCO's
keypoint AP and AR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..errors import ExitCode, UsageError
from .common import add_model_options, open_flags_estimator, read_or_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="COCO person_keypoints JSON")
    parser.add_argument("--images", required=True, help="folder with the images it names")
    parser.add_argument("--results", metavar="OUT", help="write COCO keypoint results here")
    parser.add_argument("--json-summary", action="store_true", help="print one JSON line")
    add_model_options(parser)


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


def main(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_keypoints, results_from_poses

    gt = _read_ground_truth(args.gt)
    _, estimator = open_flags_estimator(args)
    info = estimator.info
    results: list[dict] = []
    times: list[float] = []
    failures = 0
    for image in gt["images"]:
        path = Path(args.images) / image["file_name"]
        rgb = read_or_report(path)
        if rgb is None:
            failures += 1
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
