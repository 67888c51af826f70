"""`edgepose bench`: time the model alone or the whole estimate step

Time the model's invoke alone (--model-only), the whole estimate step on still images, or the
daemon end to end against a broker (--e2e SOURCE).

--e2e is e2e.py (and e2e_daemon.py).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..errors import ExitCode, UsageError
from ..images import expand_images, read_rgb
from ..text import count
from . import e2e
from .common import (
    add_model_options,
    flag_overrides,
    load_flags_config,
    non_negative_int,
    open_flags_estimator,
    positive_int,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-only", action="store_true", help="time interpreter invoke only")
    parser.add_argument("--images", nargs="*", help="images or folders for the pipeline (default: demo photos)")
    parser.add_argument("--runs", type=positive_int, default=50, metavar="N",
                        help="timed runs (invokes, or images through the whole estimate step); default 50")
    parser.add_argument("--warmup", type=non_negative_int, default=5, metavar="N",
                        help="untimed runs first, so start-up costs are not counted; default 5")
    parser.add_argument("--json-summary", action="store_true", help="print one JSON line")
    add_model_options(parser)
    e2e.add_arguments(parser)


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    arr = np.asarray(samples)
    return float(np.median(arr)), float(np.percentile(arr, 95)), float(arr.min())


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _demo_frames() -> list[np.ndarray]:
    from ..sources import demo_dir

    return [read_rgb(p) for p in expand_images([demo_dir()])]


def main(args: argparse.Namespace) -> int:
    if args.e2e:  # the real daemon end to end
        return e2e.cmd_bench_e2e(args, load_flags_config(args), flag_overrides(args))
    _, estimator = open_flags_estimator(args)
    info = estimator.info
    rows = []
    if args.model_only:
        p50, p95, best = _percentiles(estimator.time_invoke(args.runs, args.warmup))
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
