"""`edgepose run`: the daemon (daemon.py), until SIGTERM, the end of a file or --duration."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_node_options, config_overrides, seconds, setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="the daemon: camera -> poses -> MQTT and snapshots",
        description="Run the daemon: frames from source.uri through the model, tracking and events to MQTT and "
                    "snapshots, until SIGTERM/Ctrl-C, the end of a file (source.loop = false) or --duration.")
    add_node_options(p)
    p.add_argument("--duration", type=seconds, default=None, metavar="S",
                   help="stop by itself after S seconds (demo, tests)")
    p.add_argument("--record", metavar="FILE",
                   help="also append every poses message to FILE (JSON Lines; `edgepose replay` reads it)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..daemon import run_daemon
    from ..devtools import faults

    config = load_config(args.config, config_overrides(args))
    setup_logging(args.log_level or config.logging.level)
    return run_daemon(config, duration_s=args.duration, record=Path(args.record) if args.record else None,
                      faults=faults.from_env())  # None unless a test set EDGEPOSE_FAULT
