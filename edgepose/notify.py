"""systemd notifications (READY, WATCHDOG, STOPPING, STATUS) without libsystemd.

The protocol is one datagram of newline-separated ``KEY=value`` lines sent to the
AF_UNIX socket named by $NOTIFY_SOCKET (a path, or ``@name`` for the abstract
namespace). Outside systemd the variable is unset and every call is a no-op.
A notification that cannot be delivered must never stop the pipeline, so
failures are logged once and swallowed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: systemd's cap on one notification datagram is far above this; STATUS text
#: is cut here so a runaway message cannot fail the send.
MAX_STATUS_CHARS = 1024


def _socket_address(value: str) -> str | None:
    """$NOTIFY_SOCKET as a Python AF_UNIX address, or None when unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace
    return None  # e.g. vsock: addresses (systemd >= 254 in VMs): not for a camera node


class Notifier:
    """Sends sd_notify messages to one socket; harmless when there is none."""

    def __init__(self, address: str | None):
        self._address = address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # the watchdog may be fed from another thread
        self._failed_once = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for $NOTIFY_SOCKET, disabled when it is unset or unusable."""
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        address = _socket_address(value)
        if address is None:
            log.warning("NOTIFY_SOCKET=%r is not a path or @name: notifications disabled", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """Start-up finished (model and source open): systemd stops the start timeout."""
        return self._send_with_status("READY=1", status)

    def watchdog(self) -> bool:
        """One more frame completed: resets WatchdogSec=."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Clean shutdown has begun: TimeoutStopSec= now applies."""
        return self._send_with_status("STOPPING=1", status)

    def status(self, text: str) -> bool:
        """Free text shown by `systemctl status`."""
        return self.send(_status_field(text))

    def _send_with_status(self, state: str, status: str | None) -> bool:
        return self.send(state) if status is None else self.send(state, _status_field(status))

    def send(self, *fields: str) -> bool:
        """Send KEY=value fields in one datagram; True when it was delivered."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(fields).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                self._close_locked()
                if not self._failed_once:
                    self._failed_once = True
                    log.warning(
                        "cannot notify systemd at %r (%s); further failures are not logged",
                        self._address.replace("\0", "@"),
                        exc,
                    )
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _status_field(text: str) -> str:
    """STATUS=text on one line: a newline would start another assignment."""
    one_line = " ".join(str(text).split())
    return "STATUS=" + one_line[:MAX_STATUS_CHARS]


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """WatchdogSec= in seconds when it applies to this process, else None.

    For information (logging, a sanity check against the frame period): the
    watchdog is fed after each completed frame, never from a timer.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    try:
        interval = int(usec)
        if pid and int(pid) != os.getpid():
            return None  # meant for a parent process
    except ValueError:
        return None
    if interval <= 0:
        return None
    return interval / 1_000_000
