"""`edgepose check`: validate config, open model, probe camera and broker

Check an installation, one line per part: the config, the model, the source (one frame), the
broker and the snapshot folder. Exit 0 when all pass, 1 when one fails, 78 for a bad config.

Where `edgepose run` is already running (the service), a camera or Edge TPU it
has open cannot be opened a second time: that is reported as held, not as broken,
only when the failure says the device is busy (or, for the Edge TPU, that none
answered) and the running process is seen holding that device in /proc/<pid>/fd.
Any other failure fails the check, whatever else runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgePoseError, EdgeTpuUnanswered, ExitCode
from ..text import count
from .common import add_node_options, config_overrides

if TYPE_CHECKING:
    from ..config import Config

Report = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_node_options(parser)


def main(args: argparse.Namespace) -> int:
    from ..config import load_config

    try:
        config = load_config(args.config, config_overrides(args))
    except EdgePoseError as exc:
        print("config: FAIL")
        for problem in getattr(exc, "problems", [str(exc)]):
            print(f"  {problem}")
        return exc.exit_code
    print(f"config: ok ({args.config or 'defaults'})")
    ok = check_installation(config, report=print)
    return ExitCode.OK if ok else ExitCode.FAILURE


# --- what the running service holds --------------------------------------------------------


def running_daemons(proc: Path = Path("/proc")) -> list[int]:
    """Pids of other `edgepose run` processes on this machine (the service, usually)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [Path(a.decode(errors="replace")).name for a in argv if a]
        if "run" in words and any(w == "edgepose" or w.startswith("edgepose.") for w in words):
            found.append(int(entry.name))
    return sorted(found)


def open_files(pid: int, proc: Path = Path("/proc")) -> list[str] | None:
    """Where the open file descriptors of `pid` point; None when they cannot be read
    (another user's process, unless root)."""
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except FileNotFoundError:  # it has exited meanwhile: it holds nothing
        return []
    except OSError:
        return None
    targets = []
    for fd in fds:
        try:
            targets.append(os.readlink(fd))
        except OSError:  # closed meanwhile
            continue
    return targets


#: Device nodes of an Edge TPU: the PCIe driver's, and USB devices (edgepose opens no
#: other USB device: cameras are /dev/video*).
EDGETPU_NODES = ("/dev/apex_", "/dev/bus/usb/")


class Holders:
    """What the running edgepose processes hold, read once per check."""

    def __init__(self, proc: Path = Path("/proc")):
        self.pids = running_daemons(proc)
        self._files = {pid: open_files(pid, proc) for pid in self.pids}

    def holding(self, wanted: Callable[[str], bool]) -> list[int]:
        """Pids with an open file `wanted` accepts."""
        return [pid for pid, files in self._files.items() if files and any(map(wanted, files))]

    @property
    def unreadable(self) -> list[int]:
        return [pid for pid, files in self._files.items() if files is None]

    def explain_unreadable(self) -> str:
        pids = ", ".join(map(str, self.unreadable))
        return (f"; the running edgepose (pid {pids}) may hold it, but its open files cannot be read "
                f"as this user: check as root or as the service user "
                f"(sudo -u edgepose edgepose check --config ...) to tell")


def _held(pids: list[int]) -> str:
    return f"held by the running edgepose (pid {', '.join(map(str, pids))}), not probed"


# --- the checks ------------------------------------------------------------------------------


def open_estimator(model, decode):
    """The model, opened as `edgepose run` opens it (imported when a check runs)."""
    from ..estimators import open_estimator as open_model

    return open_model(model, decode)


def check_installation(config: Config, report: Report, proc: Path = Path("/proc")) -> bool:
    """Open the model, probe the source and the broker; one line each. True if all pass."""
    holders = Holders(proc)
    model_ok, lores = _check_model(config, report, holders)
    checks = (_check_source(config, report, holders, lores), _check_broker(config, report),
              _check_snapshots(config, report))
    return model_ok and all(checks)


def _check_model(config: Config, report: Report, holders: Holders) -> tuple[bool, tuple[int, int] | None]:
    """Whether the model opens, and the frame size it wants from a camera (None: unknown)."""
    try:
        estimator = open_estimator(config.model, config.decode)
        info = estimator.info
        detector = getattr(estimator, "detector_info", None)  # a model that runs two (top-down)
        finder = "" if detector is None else (
            f"; people found by {detector.path} ({detector.precision}, input "
            f"{detector.input_size[0]}x{detector.input_size[1]})")
        report(f"model: ok ({info.name}: {info.path}, {info.precision}, {info.accelerator}, "
               f"{info.runtime}, input {info.input_size[0]}x{info.input_size[1]}, {count(info.threads, 'thread')}"
               f"{finder})")
        estimator.close()
        return True, info.lores_size
    except EdgeTpuUnanswered as exc:  # what a Coral the service has open looks like, too
        pids = holders.holding(lambda f: f.startswith(EDGETPU_NODES))
        if pids:
            report(f"model: ok (the Edge TPU is {_held(pids)}: {exc})")
            return True, None
        report(f"model: FAIL {exc}{holders.explain_unreadable() if holders.unreadable else ''}")
    except EdgePoseError as exc:
        report(f"model: FAIL {exc}")
    return False, None


def _check_source(config: Config, report: Report, holders: Holders, lores: tuple[int, int] | None) -> bool:
    from ..sources import holds_camera, probe_source

    uri = config.source.uri
    probe = probe_source(uri, width=config.source.width, height=config.source.height, lores_size=lores)
    pids = holders.holding(lambda f: holds_camera(uri, f)) if probe.busy else []
    if pids:
        report(f"source: ok (the camera is {_held(pids)}: {probe.detail})")
        return True
    why = ""
    if probe.busy:
        why = (holders.explain_unreadable() if holders.unreadable else
               "; another program has it open (not edgepose: see fuser -v on the device)")
    report(f"source: {'ok' if probe.ok else 'FAIL'} {probe.detail}{why}")
    return bool(probe.ok)


def _check_broker(config: Config, report: Report) -> bool:
    if not config.mqtt.enabled:
        report("broker: skipped (mqtt.enabled = false)")
        return True
    from ..mqtt import probe

    broker_ok, detail = probe(config.mqtt, timeout=5.0)
    report(f"broker: {'ok' if broker_ok else 'FAIL'} {detail}")
    return broker_ok


def _check_snapshots(config: Config, report: Report) -> bool:
    if not config.snapshots.enabled:
        return True
    directory = Path(config.snapshots.dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe_file = directory / ".edgepose-check"
        probe_file.write_bytes(b"")
        probe_file.unlink()
        report(f"snapshots: ok ({directory})")
        return True
    except OSError as exc:
        report(f"snapshots: FAIL cannot write to {directory}: {exc.strerror or exc}")
        return False
