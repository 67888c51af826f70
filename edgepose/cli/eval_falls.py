"""`edgepose eval-falls`: fall detection on labelled clips: falls raised, false alarms, time to alert

Run labelled clips (videos through the daemon's pipeline, paced like a camera; poses recordings
through replay) and report falls raised, missed, false alarms and the time from the fall to
fall_detected. A set is a folder with a clips.json, or with videos / .jsonl recordings under
fall/ and adl/ sub-folders.

The work is fall_eval.py's; this is its command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ExitCode
from .common import add_model_options, load_flags_config, non_negative_float, positive_int, set_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sets", nargs="+", metavar="SET", help="a set folder (or its clips.json)")
    parser.add_argument("--fps", type=non_negative_float, default=None,
                        help="camera rate the clips are taken at (default: source.max_fps of the config, "
                             "10); 0: every frame or message, at its own time")
    parser.add_argument("--hold", type=non_negative_float, default=5.0, metavar="S",
                        help="hold each clip's last frame for S seconds more (default 5: staged clips "
                             "stop just after the fall)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="clips run in this many processes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (TOML value), e.g. --set falls.confirm_s=3")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N clips")
    parser.add_argument("--record", metavar="DIR",
                        help="keep the model's poses of every video clip in DIR as recordings, with a "
                             "clips.json: later runs replay them without the model (--fps 0 --hold 0)")
    parser.add_argument("--json", metavar="OUT", help="write every clip's result and the totals here")
    parser.add_argument("--json-summary", action="store_true", help="print the totals as one JSON line")
    parser.add_argument("--totals-only", action="store_true", help="no per-clip table")
    parser.add_argument("--progress", action="store_true", help="one line per clip on stderr as it ends")
    add_model_options(parser)


def main(args: argparse.Namespace) -> int:
    from ..fall_eval import load_set, run_clips, summarise, write_recorded_set

    if args.set:
        args.config_overrides = set_overrides(args.set)
    config = load_flags_config(args)
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


def format_report(results: list, summary: dict[str, Any], *, per_clip: bool = True) -> str:
    """A per-clip table and the totals, for people."""
    lines = []
    if per_clip:
        lines.append(f"{'clip':<40} {'label':<5} {'raised':<6} {'first s':>7} {'delay s':>7} "
                     f"{'conf':>5}  {'count ok':>8}  note")
        for r in results:
            count = ""
            frames = r.count_right + r.count_under + r.count_over
            if frames:
                count = f"{100 * r.count_right / frames:.0f}%"
            first = "" if r.first_fall_s is None else f"{r.first_fall_s:.1f}"
            delay = "" if r.delay_s is None else f"{r.delay_s:+.1f}"
            conf = "" if r.confidence is None else f"{r.confidence:.2f}"
            mark = "yes" if r.raised else "no"
            if (r.clip.label == "fall") != r.raised:
                mark += " !"
            lines.append(f"{str(r.clip.path.name if len(str(r.clip.path)) > 40 else r.clip.path)[-40:]:<40} "
                         f"{r.clip.label:<5} {mark:<6} {first:>7} {delay:>7} {conf:>5}  {count:>8}  "
                         f"{r.clip.note[:60]}")
        lines.append("")
    s = summary

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    lines.append(f"falls raised:  {s['falls_raised']} of {s['fall_clips']} ({pct(s['fall_recall'])}), "
                 f"missed {s['falls_missed']}")
    lines.append(f"false alarms:  {s['false_alarms']} of {s['adl_clips']} daily-activity clips "
                 f"({pct(s['false_alarm_rate'])})")
    d = s["delay_from_labelled_fall_s"]
    if d["clips"]:
        lines.append(f"time from the labelled fall to fall_detected ({d['clips']} clips): median "
                     f"{d['median']} s, p90 {d['p90']} s, max {d['max']} s")
    e = s["after_clip_end_s"]
    if e["clips"]:
        lines.append(f"time from the clip's last frame to fall_detected ({e['clips']} clips without a "
                     f"labelled time): median {e['median']} s, p90 {e['p90']} s, max {e['max']} s")
    for key, title in (("person_count_single", "person count, single-person clips"),
                       ("person_count", "person count, all clips with a known count")):
        c = s.get(key)
        if c:
            lines.append(f"{title}: exactly right on {pct(c['exact'])} of {c['frames']} model frames "
                         f"(fewer {pct(c['under'])}, more {pct(c['over'])}); the debounced count went "
                         f"above the clip's in {c['clips_debounced_over']} of {c['clips']} clips")
    return "\n".join(lines)
