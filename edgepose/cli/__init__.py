"""Command line: `edgepose detect | eval | eval-falls | bench | models | replay | run | check | forget`.

The only package that exits: library code raises EdgePoseError subclasses,
which carry the sysexits code `main` returns (78 for a bad config, so
systemd does not restart into the same mistake). One module per command, each
with a `register(sub)` that adds its sub-command; common.py holds what they share.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import EdgePoseError, ExitCode
from . import bench, check, detect, eval, eval_falls, forget, models, replay, run
from .common import setup_logging

log = logging.getLogger("edgepose")

#: In the order `edgepose --help` lists them.
COMMANDS = (detect, eval, bench, eval_falls, replay, models, run, check, forget)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepose", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    parser.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                        help="log level (default: logging.level of the config for run, else warning)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        setup_logging(args.log_level or "warning")
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
