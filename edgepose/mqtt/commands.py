"""Commands from the node's command topics (``<prefix>/<node>/cmd/<name>``).

Pure parsing (`parse_command`: which command a message asks for, or why it is
refused) and the `CommandGate` the MQTT client runs every incoming command
message through on paho's thread: retained commands are never acted on, a
command obeys a cooldown per name, and invalid or throttled ones are logged at
a bounded rate (`RateLimitedLog`). The handler it calls must only enqueue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..constants import TOPIC_CMD_ACK_FALL, TOPIC_CMD_SNAPSHOT

log = logging.getLogger(__name__)

#: Commands arrive on <prefix>/<node>/cmd/<name>.
CMD_SUFFIX = "cmd"
#: Longest command payload looked at; anything longer is refused unread.
MAX_COMMAND_BYTES = 256
#: Received payloads are logged only this far.
LOG_PAYLOAD_BYTES = 64
#: Invalid or throttled commands: at most this many log lines per window.
COMMAND_LOG_BURST = 5
COMMAND_LOG_WINDOW_S = 60.0

OnCommand = Callable[[str], None]

#: Snapshot command payloads (text compared after trimming, case-insensitive).
#: Empty also requests one, so ``mosquitto_pub -n`` and an HA button with no
#: payload both work. JSON ``{"snapshot": true|false}`` is accepted as well.
SNAPSHOT_YES = frozenset({"", "1", "true", "on", "yes", "snapshot", "press"})
SNAPSHOT_NO = frozenset({"0", "false", "off", "no"})

#: Command topic suffixes below ``cmd/`` and their command names.
COMMANDS: dict[str, str] = {TOPIC_CMD_SNAPSHOT: "snapshot", TOPIC_CMD_ACK_FALL: "ack_fall"}

#: Acknowledge-fall payloads: the snapshot words plus "ack"; JSON ``{"ack": true|false}``.
ACK_YES = SNAPSHOT_YES | {"ack", "acknowledge"}
ACK_NO = SNAPSHOT_NO


def parse_snapshot_command(payload: bytes) -> bool:
    """True: take a snapshot; False: a valid no-op (``0``, ``false``, ``{"snapshot": false}``).

    Raises ValueError naming the reason for anything else; the caller logs
    and ignores it.
    """
    return _parse_yes_no(payload, SNAPSHOT_YES, SNAPSHOT_NO, "snapshot")


def parse_ack_fall_command(payload: bytes) -> bool:
    """True: acknowledge every fall that is on (Home Assistant's button sends ``ack``);
    False: a valid no-op. Raises ValueError like `parse_snapshot_command`."""
    return _parse_yes_no(payload, ACK_YES, ACK_NO, "ack")


def _parse_yes_no(payload: bytes, yes: frozenset[str], no: frozenset[str], key: str) -> bool:
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"payload too long ({len(payload)} bytes, at most {MAX_COMMAND_BYTES})")
    try:
        text = bytes(payload).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError("payload is not UTF-8 text") from exc
    word = text.lower()
    if word in yes:
        return True
    if word in no:
        return False
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"payload is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or set(obj) != {key} or not isinstance(obj[key], bool):
            raise ValueError(f'JSON payload must be exactly {{"{key}": true}} or {{"{key}": false}}')
        return obj[key]
    raise ValueError(
        "expected empty, one of "
        + ", ".join(sorted(w for w in yes | no if w))
        + f' or {{"{key}": true}}'
    )


def parse_command(suffix: str, payload: bytes) -> str | None:
    """The command a message on ``<prefix>/<node>/<suffix>`` asks for, or None for a no-op.

    Raises ValueError for an unknown command topic or an invalid payload.
    """
    name = COMMANDS.get(suffix)
    if name is None:
        raise ValueError(f"unknown command topic {suffix!r} (known: {', '.join(COMMANDS)})")
    if name == "snapshot":
        return name if parse_snapshot_command(payload) else None
    if name == "ack_fall":
        return name if parse_ack_fall_command(payload) else None
    raise AssertionError(f"command {name} has no parser")  # pragma: no cover


# --- on paho's thread ------------------------------------------------------------------


def _preview(payload: bytes) -> str:
    """A payload for a log line: truncated, never trusted to be text."""
    head = bytes(payload[:LOG_PAYLOAD_BYTES])
    more = f"... ({len(payload)} bytes)" if len(payload) > LOG_PAYLOAD_BYTES else ""
    return f"{head!r}{more}"


class RateLimitedLog:
    """At most `burst` lines per `window_s`; then one line saying how many were held back."""

    def __init__(self, logger: logging.Logger, burst: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._burst, self._window_s, self._clock = logger, burst, window_s, clock
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._count = 0
        self.suppressed = 0  # total, for stats

    def log(self, level: int, msg: str, *args: Any) -> bool:
        now = self._clock()
        with self._lock:
            held = 0
            if now - self._window_start >= self._window_s:
                held = self._count - self._burst if self._count > self._burst else 0
                self._window_start, self._count = now, 0
            self._count += 1
            allowed = self._count <= self._burst
            if not allowed:
                self.suppressed += 1
        if held:
            self._log.log(level, "MQTT: %d similar messages not logged in the last %.0f s", held, self._window_s)
        if allowed:
            self._log.log(level, msg, *args)
        return allowed



class CommandGate:
    """What reaches `on_command` of the messages on ``<node_prefix>cmd/...``.

    `cooldown_s`: a command of the same name is acted on at most once per this
    many seconds (the daemon passes ``snapshots.cooldown_s``); `cooldowns` sets it
    per command name instead. `count(name)` is told of every command taken
    (``commands``), refused (``commands_invalid``) or throttled
    (``commands_throttled``). `log` is the rate-limited log the client shares for
    other unwanted input.
    """

    def __init__(self, node_prefix: str, on_command: OnCommand | None, *, cooldown_s: float = 0.0,
                 cooldowns: dict[str, float] | None = None, count: Callable[[str], None]) -> None:
        self._node_prefix = node_prefix
        self.prefix = f"{node_prefix}{CMD_SUFFIX}/"
        self._on_command = on_command
        self._cooldown_s = cooldown_s
        self._cooldowns = dict(cooldowns or {})
        self._count = count
        self._last_at: dict[str, float] = {}
        self.log = RateLimitedLog(log, COMMAND_LOG_BURST, COMMAND_LOG_WINDOW_S)

    def handle(self, topic: str, payload: bytes, retain: bool) -> None:
        """One message on a topic the client subscribed to that is not one of its own."""
        if not topic.startswith(self.prefix):
            self.log.log(logging.WARNING, "MQTT: ignoring message on unexpected topic %s", topic)
            return
        if retain:
            self.log.log(
                logging.WARNING,
                "MQTT: ignoring retained command on %s (clear it with an empty retained message)", topic,
            )
            return
        suffix = topic[len(self._node_prefix) :]
        try:
            command = parse_command(suffix, payload)
        except ValueError as exc:
            self._count("commands_invalid")
            self.log.log(logging.WARNING, "MQTT: ignoring %s %s: %s", topic, _preview(payload), exc)
            return
        if command is None or self._on_command is None:
            return
        now = time.monotonic()
        last = self._last_at.get(command)
        cooldown = self._cooldowns.get(command, self._cooldown_s)
        if last is not None and now - last < cooldown:
            self._count("commands_throttled")
            self.log.log(
                logging.INFO, "MQTT: ignoring %s command: %.1f s cooldown (last one %.1f s ago)",
                command, cooldown, now - last,
            )
            return
        self._last_at[command] = now
        self._count("commands")
        try:
            self._on_command(command)
        except Exception:  # a bad handler must not kill paho's thread
            log.exception("MQTT: command handler failed for %s", command)
