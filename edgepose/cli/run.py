"""`edgepose run`: the daemon: camera -> poses -> MQTT and snapshots

Run the daemon: frames from source.uri through the model, tracking and events to MQTT and
snapshots, until SIGTERM/Ctrl-C, the end of a file (source.loop = false) or --duration.

The daemon is daemon.py; faults a test asks for (EDGEPOSE_FAULT, devtools/faults.py) are handed
to it here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_node_options, config_overrides, seconds, setup_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_node_options(parser)
    parser.add_argument("--duration", type=seconds, default=None, metavar="S",
                        help="stop by itself after S seconds (demo, tests)")
    parser.add_argument("--record", metavar="FILE",
                        help="also append every poses message to FILE (JSON Lines; `edgepose replay` reads it)")


def main(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..daemon import run_daemon
    from ..devtools import faults

    config = load_config(args.config, config_overrides(args))
    setup_logging(args.log_level or config.logging.level)
    return run_daemon(config, duration_s=args.duration, record=Path(args.record) if args.record else None,
                      faults=faults.from_env())  # None unless a test set EDGEPOSE_FAULT
