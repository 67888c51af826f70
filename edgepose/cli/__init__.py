"""Command line: `edgepose detect | eval | eval-falls | bench | models | replay | run | check | forget`.

The only package that exits: library code raises EdgePoseError subclasses,
which carry the sysexits code `main` returns (78 for a bad config, so
systemd does not restart into the same mistake). One module per command, with
`add_arguments(parser)` and `main(args)` (the exit code); its docstring is its
help: the first line "`edgepose NAME`: what `edgepose --help` says of it", then
a paragraph for its own --help; what follows is for developers. common.py holds
what the commands share.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

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
        name, text, description = _help(command)
        p = sub.add_parser(name, help=text, description=description)
        command.add_arguments(p)
        p.set_defaults(func=command.main)
    return parser


def _help(command: ModuleType) -> tuple[str, str, str]:
    """A command's name, its line in `edgepose --help` and its description, from its
    module's docstring (argparse folds the line breaks)."""
    first, _, rest = command.__doc__.partition("\n\n")
    name, _, text = first.partition(": ")
    return name.strip("`").removeprefix("edgepose "), text, rest.split("\n\n")[0]


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
