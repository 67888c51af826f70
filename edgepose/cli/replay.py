"""`edgepose replay`: the events a config would raise on a recording of poses messages

Run a config's zones, presence and fall detection over a recording of poses messages (run
--record, or mosquitto_sub) and print the events it would raise, one JSON line each.

The work is replay.py's; this is its command line.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ExitCode
from ..text import count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", help="JSON Lines of poses messages (run --record, or mosquitto_sub), - for stdin")
    parser.add_argument("--config", default=None, help="TOML config whose zones, presence and falls to use")


def main(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..replay import replay_file

    config = load_config(args.config)
    events = replay_file(args.recording, config, sys.stdout)
    print(f"edgepose: {count(events, 'event')}", file=sys.stderr)
    return ExitCode.OK
