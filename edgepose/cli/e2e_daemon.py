"""The daemon under `bench --e2e`: its config, the subscriber that times it, and watching
its process (CPU and memory from /proc, a stop when it publishes nothing in time)."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..devtools.broker import Broker
from ..devtools.procstat import ProcSample, read_proc
from ..errors import ConfigError, EdgePoseError, ExitCode

#: How often /proc is sampled while the daemon runs (in this process, not the daemon's).
SAMPLE_S = 0.1
#: The daemon must publish its first poses message within this (model load, first frame).
FIRST_MESSAGE_TIMEOUT_S = 60.0
#: ... and then never go this long without one.
STALL_TIMEOUT_S = 30.0
#: A SIGTERM'd daemon that has not exited after this is killed.
STOP_TIMEOUT_S = 10.0
#: Seconds between stats messages asked of the daemon: its counters are read from the last one.
STATS_INTERVAL_S = 1.0


class E2eError(EdgePoseError):
    """The daemon (or the broker) failed during the bench: nothing to report."""

    exit_code = ExitCode.FAILURE


# --- the daemon's config ---------------------------------------------------------------------


def bench_overrides(source: str, *, node_id: str, broker: dict[str, object], max_fps: float,
                    outbox_path: Path) -> dict[str, object]:
    """What bench sets in the daemon's config, over the user's file and model flags:
    its own node (and client) id, every frame run (no motion gate: a still stretch
    with people would run twice a second) and published, stats often enough to read
    the counters at the end, no snapshots or Home Assistant discovery, files
    processed once to their end, the outbox in bench's own folder."""
    return {
        "source.uri": source,
        "source.loop": False,
        "source.max_fps": max_fps,
        "node.id": node_id,
        "mqtt.enabled": True,
        "mqtt.client_id": "",
        "motion.enabled": False,
        "mqtt.poses_mode": "every_frame",
        "mqtt.stats_interval_s": STATS_INTERVAL_S,
        "mqtt.home_assistant": False,
        "mqtt.publish_snapshot": False,
        "snapshots.enabled": False,
        "outbox.path": str(outbox_path),
        **broker,
    }


def daemon_config_text(config_path: str | None, overrides: dict[str, object]) -> str:
    """The user's TOML (if any) with `overrides` (dotted keys) laid over it, as TOML
    text for ``edgepose run --config``. Call after load_config accepted the same
    file and overrides, so the file reads and every value is valid."""
    raw: dict[str, Any] = {}
    if config_path is not None:
        raw = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        table = raw
        for name in tables:
            table = table.setdefault(name, {})
        table[key] = value
    text = dump_toml(raw)
    if tomllib.loads(text) != raw:  # never hand the daemon a config other than the one checked
        raise ConfigError("bench --e2e: the config could not be written back as TOML unchanged")
    return text


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"bench --e2e: cannot pass a {type(value).__name__} value on to the daemon")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dump_toml(doc: dict[str, Any]) -> str:
    """Enough TOML for a parsed config: tables, arrays of tables ([[zones]]), scalars, arrays."""
    lines: list[str] = []

    def table(body: dict[str, Any], path: list[str], header: str | None) -> None:
        if header is not None:
            lines.append(header)
        for key, value in body.items():
            if not isinstance(value, dict) and not _is_table_array(value):
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in body.items():
            sub = [*path, _toml_key(key)]
            if isinstance(value, dict):
                table(value, sub, f"[{'.'.join(sub)}]")
            elif _is_table_array(value):
                for item in value:
                    table(item, sub, f"[[{'.'.join(sub)}]]")

    table(doc, [], None)
    return "\n".join(lines) + "\n"



# --- the subscriber ------------------------------------------------------------------------


class Collector:
    """Subscribes to the bench node's poses, stats and availability; stamps each
    poses message on arrival (monotonic for durations, wall for the ts comparison)
    and keeps its payload to read after the run. Nothing is parsed on paho's thread."""

    def __init__(self, mqtt_cfg, prefix: str):
        from ..mqtt import new_client

        self.poses_topic = f"{prefix}/poses"
        self.stats_topic = f"{prefix}/stats"
        self.availability_topic = f"{prefix}/availability"
        self.arrivals: list[tuple[float, float, bytes]] = []  # (monotonic, wall, payload)
        self.last_stats: bytes | None = None
        self.offline = threading.Event()
        self._subscribed = threading.Event()
        self._client = new_client(mqtt_cfg, f"edgepose-bench-{secrets.token_hex(4)}")
        self._client.max_queued_messages_set(0)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._host, self._port = mqtt_cfg.host, mqtt_cfg.port
        self._keepalive = mqtt_cfg.keepalive_s

    def start(self, timeout: float = 10.0) -> None:
        try:
            self._client.connect(self._host, self._port, keepalive=self._keepalive)
        except OSError as exc:
            raise E2eError(f"cannot reach the broker {self._host}:{self._port}: {exc}") from exc
        self._client.loop_start()
        # QoS 0 all round: the broker forwards in the order it received, so the
        # daemon's final "offline" arrives after its last poses message.
        self._client.subscribe([(t, 0) for t in (self.poses_topic, self.stats_topic, self.availability_topic)])
        if not self._subscribed.wait(timeout):
            self.stop()
            raise E2eError(f"the broker {self._host}:{self._port} did not confirm the subscription "
                           f"within {timeout:g} s")

    def _on_message(self, client, userdata, msg) -> None:
        mono, wall = time.monotonic(), time.time()
        if msg.topic == self.poses_topic:
            self.arrivals.append((mono, wall, msg.payload))
        elif msg.topic == self.stats_topic:
            self.last_stats = msg.payload
        elif msg.topic == self.availability_topic and msg.payload == b"offline":
            self.offline.set()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()



# --- the daemon process ----------------------------------------------------------------------


@dataclass
class DaemonRun:
    """What watching the daemon gave: process figures and the collected messages."""

    spawned_at: float
    exited_at: float = 0.0
    exit_code: int | None = None
    rusage: Any = None
    samples: list[ProcSample] = field(default_factory=list)
    failure: str | None = None


def _child_env() -> dict[str, str]:
    """The daemon's environment: this edgepose first on the path; nothing of systemd's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY")}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def watch_daemon(command: list[str], log_path: Path, collector: Collector, *,
                 broker: Broker | None, hard_limit_s: float | None) -> DaemonRun:
    """Spawn the daemon and watch it until it exits: /proc samples every SAMPLE_S,
    and a stop (SIGTERM, then SIGKILL) when it publishes nothing in time."""
    with open(log_path, "wb") as log:
        spawned_at = time.monotonic()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_child_env())
    run = DaemonRun(spawned_at)
    exited = threading.Event()

    def reap() -> None:  # wait4 gives the child's own CPU time, to the end
        _, status, usage = os.wait4(proc.pid, 0)
        run.exited_at = time.monotonic()
        run.exit_code = os.waitstatus_to_exitcode(status)
        run.rusage = usage
        proc.returncode = run.exit_code  # reaped here: Popen must not wait for it again
        exited.set()

    threading.Thread(target=reap, name="edgepose-bench-reap", daemon=True).start()
    seen, last_progress, stop_sent = 0, spawned_at, None
    try:
        while not exited.wait(SAMPLE_S):
            sample = read_proc(proc.pid)
            if sample is not None:
                run.samples.append(sample)
            now = time.monotonic()
            if len(collector.arrivals) != seen:
                seen, last_progress = len(collector.arrivals), now
            if stop_sent is not None:
                if now - stop_sent > STOP_TIMEOUT_S:
                    proc.kill()
                continue
            if seen == 0 and now - spawned_at > FIRST_MESSAGE_TIMEOUT_S:
                run.failure = f"no poses message within {FIRST_MESSAGE_TIMEOUT_S:g} s of starting"
            elif seen and now - last_progress > STALL_TIMEOUT_S:
                run.failure = f"no poses message for {STALL_TIMEOUT_S:g} s after {seen}"
            elif hard_limit_s is not None and now - spawned_at > hard_limit_s:
                run.failure = f"still running {hard_limit_s:g} s after starting"
            elif broker is not None and not broker.alive:
                run.failure = f"the broker bench started has exited: {broker.log_tail()}"
            if run.failure is not None:
                proc.send_signal(signal.SIGTERM)
                stop_sent = now
    except BaseException:  # Ctrl-C, or a bug here: never leave the daemon running
        if not exited.is_set():
            proc.kill()
            exited.wait(STOP_TIMEOUT_S)
        raise
    return run


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (no output)"

