"""A private Mosquitto on a loopback port, for `bench --e2e`, the integration tests and the soak tool.

Anonymous, persistence off (a restart forgets retained messages, as a real
broker without persistence would) unless `extra_conf` says otherwise; its log
goes to ``<workdir>/mosquitto.log``. Port 0 picks a free port at the first
start (a free port can be taken before mosquitto binds it: three tries); a
restart keeps the port, so clients reconnect to the same address.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EdgePoseError, ExitCode

#: The broker must listen within this.
START_TIMEOUT_S = 10.0
#: A terminated broker that has not exited after this is killed.
STOP_TIMEOUT_S = 5.0
#: Starts on a new free port before giving up, when the port is picked here.
PORT_TRIES = 3


class BrokerError(EdgePoseError):
    """The broker could not be started."""

    exit_code = ExitCode.FAILURE


def find_binary(name: str) -> str | None:
    """`name` (mosquitto, mosquitto_passwd) on PATH or in the sbin folders Debian uses."""
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name) if p.is_file()), None)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """One mosquitto process: start, stop, restart (same port), and the faults tests need."""

    workdir: Path
    port: int = 0
    extra_conf: Sequence[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """HOST:PORT, as --broker takes it."""
        return f"{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_conf(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            *([] if any(line.startswith("persistence ") for line in self.extra_conf) else ["persistence false"]),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            *self.extra_conf,
        ]
        if not any(line.startswith("allow_anonymous") for line in self.extra_conf):
            lines.append("allow_anonymous true")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, mosquitto would switch to user "mosquitto" and lose access
            # to the files in our private folder (or fail: the user may not exist).
            lines.append("user root")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start it and wait until it listens; BrokerError (with its log) when it does not."""
        if self.alive:
            return
        binary = find_binary("mosquitto")
        if binary is None:
            raise BrokerError("mosquitto not found on PATH or in /usr/sbin: install it (apt-get install mosquitto)")
        pick = self.port == 0
        for _ in range(PORT_TRIES if pick else 1):
            if pick:
                self.port = free_port()
            problem = self._launch(binary)
            if problem is None:
                return
            self.stop()
        raise BrokerError(f"{problem}:\n{self.log_text()}")

    def _launch(self, binary: str) -> str | None:
        """One start on `port`; None once it listens, else what went wrong."""
        self.write_conf()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not accepts(self.host, self.port):
            if self.proc.poll() is not None:
                return f"mosquitto exited ({self.proc.returncode})"
            if time.monotonic() > deadline:
                return f"mosquitto did not listen on {self.port} in {START_TIMEOUT_S} s"
            time.sleep(0.02)  # polling the port, not synchronising on time
        return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- faults: a frozen broker (half-open links), a crashed one --------------------------

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts TCP for it, nothing answers (a half-open link)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing saved; `start` brings it back on the same port."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a frozen process dies too, but be explicit
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 10) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no output)"
