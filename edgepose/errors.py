"""Exception tree and process exit codes. Library code raises; only the CLI exits."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """sysexits.h codes, so systemd can tell a bad config from a crash."""

    OK = 0
    FAILURE = 1  # e.g. some images in a batch could not be read
    USAGE = 2  # argparse
    DATA = 65  # an input file that is not what it claims (a recording that is not poses JSON Lines)
    UNAVAILABLE = 69  # camera or Edge TPU absent, or lost after retries
    SOFTWARE = 70  # unexpected exception
    CONFIG = 78  # config invalid, model file missing


class EdgePoseError(Exception):
    """Base of every error edgepose raises on purpose."""

    exit_code = ExitCode.SOFTWARE


class UsageError(EdgePoseError):
    """A command-line value that argparse could not check by itself."""

    exit_code = ExitCode.USAGE


class ConfigError(EdgePoseError):
    """One or more config problems, each naming its dotted key path."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ModelError(EdgePoseError):
    """A model file is missing, unreadable, or not a PoseNet we can run here."""

    exit_code = ExitCode.CONFIG


class AcceleratorError(EdgePoseError):
    """The Edge TPU (or its library) was asked for and is not there."""

    exit_code = ExitCode.UNAVAILABLE


class EdgeTpuUnanswered(AcceleratorError):
    """libedgetpu loaded, but no Edge TPU answered: none is attached, or another
    process (the running service) has it open."""


class SourceError(EdgePoseError):
    """A frame source could not be opened or stopped delivering frames."""

    exit_code = ExitCode.UNAVAILABLE


class SourceUnavailable(SourceError):
    """The source can never work on this machine as configured (its library is
    not installed, or the video file it names does not exist): retrying is
    pointless, the daemon stops with a clear message."""


class FrameError(EdgePoseError):
    """One frame could not be decoded; it is counted and skipped."""


class RecordingError(EdgePoseError):
    """A recording of poses messages (``edgepose replay``) has a line that is not one."""

    exit_code = ExitCode.DATA
