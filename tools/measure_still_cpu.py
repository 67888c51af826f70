#!/usr/bin/env python3
"""CPU of the daemon on a still scene (not a test): what motion gating saves.

Runs ``edgepose run`` on SOURCE (a folder holding one picture, looped, so the same
frame arrives at ``--fps``; or any source) with MQTT off and snapshots into a
temporary folder, waits ``--warmup`` seconds, then reads the process's user + system
CPU time from /proc over ``--window`` seconds: percent of one core. Extra config
lines (``--set motion.enabled=false``) go into the config file. Prints one JSON line
per run with the 1-minute load average at the start and the end (the machine may be
shared) and the frames the daemon ran the model on (its last log line).

    .venv/bin/python tools/measure_still_cpu.py /tmp/street [--runs 3] [--set motion.enabled=false]

A still street frame with people: one frame of OpenCV's sample clip ``vtest.avi``
(Debian's ``opencv-doc``); an empty room: the median of that clip's frames.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgepose.devtools.procstat import read_proc

REPO = Path(__file__).resolve().parents[1]
def config_text(source: str, fps: float, snapshots: Path, settings: list[str]) -> str:
    tables: dict[str, list[str]] = {
        "source": [f"uri = {json.dumps(source)}", f"max_fps = {fps}", "loop = true"],
        "mqtt": ["enabled = false"],
        "snapshots": [f"dir = {json.dumps(str(snapshots))}"],
    }
    for setting in settings:
        key, _, value = setting.partition("=")
        table, _, name = key.strip().rpartition(".")
        if not table or not value:
            raise SystemExit(f"--set {setting!r}: expected table.key=value (a TOML value)")
        tables.setdefault(table, []).append(f"{name} = {value.strip()}")
    return "".join(f"[{table}]\n" + "\n".join(lines) + "\n\n" for table, lines in tables.items())


def one_run(args: argparse.Namespace, work: Path, index: int) -> dict:
    config = work / f"edgepose-{index}.toml"
    config.write_text(config_text(args.source, args.fps, work / f"snapshots-{index}", args.set))
    log_path = work / f"daemon-{index}.log"
    load_start = os.getloadavg()[0]
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([args.python, "-m", "edgepose", "run", "--config", str(config)],
                                  cwd=work, env=dict(os.environ, PYTHONPATH=str(args.repo)),
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        time.sleep(args.warmup)
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.returncode}): {log_path.read_text()[-2000:]}")
        cpu0, t0 = read_proc(daemon.pid).cpu_s, time.monotonic()
        time.sleep(args.window)
        cpu1, t1 = read_proc(daemon.pid).cpu_s, time.monotonic()
    finally:
        daemon.terminate()
        daemon.wait(10)
    found = re.findall(r"stopped after (\d+) frames", log_path.read_text())
    return {
        "source": args.source, "fps": args.fps, "set": args.set,
        "cpu_pct": round(100.0 * (cpu1 - cpu0) / (t1 - t0), 1),
        "frames_run": int(found[-1]) if found else None,
        "seconds": round(args.warmup + args.window, 1),
        "loadavg_start": round(load_start, 2), "loadavg_end": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--repo", type=Path, default=REPO, help="the edgepose tree to run (PYTHONPATH)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgepose-cpu-") as tmp:
        for i in range(args.runs):
            print(json.dumps(one_run(args, Path(tmp), i)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
