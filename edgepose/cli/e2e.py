"""`edgepose bench --e2e SOURCE`: the real daemon, end to end, next to the model alone.

`edgepose bench` times `estimate` in a loop; a node is more than that: capture
and decode, the capture thread and the one-frame slot, the stages after the
model, JSON, paho and the broker. This runs the real thing -- ``python -m
edgepose run`` as a child process, publishing to a real Mosquitto on loopback
(the one given, or one started here) -- and times it from the outside:

- a subscriber in this process stamps every ``poses`` message on arrival:
  frames per second (steady state: from the first message to the last),
  capture-to-publish latency (arrival wall time minus the payload's ``ts``, the
  capture wall time; same host, same clock; ``ts`` has millisecond resolution,
  truncated, so the capture lies in the millisecond after it: TS_CENTRE_S is
  added, leaving each latency within 0.5 ms, unbiased), startup to the first message
  (from spawning the process);
- /proc gives the child's CPU time (user + system, in % of one core, over the
  steady state) and its peak RSS (VmHWM, sampled every SAMPLE_S);
- the last retained ``stats`` gives the daemon's own counters (dropped frames...).

Then, in the same run, the same estimator with the same settings times
`estimate` alone over the same frames of the same source (decoded first, a
chunk at a time, untimed): the ratio of the two rates says what the rest of the
pipeline costs. Durations use time.monotonic / perf_counter; wall time only for
the ``ts`` comparison. Nothing in the measured path sleeps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, EdgePoseError, ExitCode, FrameError, SourceError, UsageError
from ..text import count

#: How often /proc is sampled while the daemon runs (in this process, not the daemon's).
SAMPLE_S = 0.1
#: The daemon must publish its first poses message within this (model load, first frame).
FIRST_MESSAGE_TIMEOUT_S = 60.0
#: ... and then never go this long without one.
STALL_TIMEOUT_S = 30.0
#: After the daemon exits, its ``offline`` (sent after every poses message) must arrive within this.
DRAIN_TIMEOUT_S = 5.0
#: A SIGTERM'd daemon that has not exited after this is killed.
STOP_TIMEOUT_S = 10.0
#: The broker started here must listen within this.
BROKER_START_TIMEOUT_S = 10.0
#: Seconds between stats messages asked of the daemon: its counters are read from the last one.
STATS_INTERVAL_S = 1.0
#: Frames decoded at a time for the pipeline-only pass (768x576 RGB: 1.3 MB each).
CHUNK_FRAMES = 32
#: Most frames read for a pipeline-only pass: the one before the daemon, and for
#: live sources (cameras, streams) the one after it too.
LIVE_PIPELINE_FRAMES = 300
#: Pipeline-only passes before and after the daemon that differ by more than this
#: (relative p50) make the report say the ratios are uncertain.
DRIFT_WARNING = 0.15
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Most runs one --repeat may ask for.
MAX_REPEAT = 100
#: The figures --repeat summarises (median, min, max over the runs), in report order.
SERIES_FIGURES = (
    "fps", "pipeline_fps", "fps_ratio", "latency_ms_p50", "latency_ms_p95", "pipeline_ms_p50",
    "latency_ratio", "pipeline_ms_p50_before", "pipeline_ms_p50_after", "pipeline_drift",
    "cpu_pct", "peak_rss_mb", "first_message_s", "frames_missing", "dropped_frames",
)
#: A payload's ``ts`` is the capture time truncated to the millisecond: the capture
#: happened on average half a millisecond later (uniform within the millisecond).
TS_CENTRE_S = 0.0005


class E2eError(EdgePoseError):
    """The daemon (or the broker) failed during the bench: nothing to report."""

    exit_code = ExitCode.FAILURE


# --- command line ----------------------------------------------------------------------


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """`bench`'s end-to-end options (the model options are bench's own)."""
    group = bench.add_argument_group(
        "end to end (--e2e): the real daemon publishing to a real Mosquitto, timed at a subscriber")
    group.add_argument("--e2e", metavar="SOURCE",
                       help="run `edgepose run` on SOURCE (a video file, folder, camera or stream URI)")
    group.add_argument("--broker", metavar="HOST[:PORT]|URL",
                       help="broker to publish to (default: a mosquitto started on a free 127.0.0.1 port)")
    group.add_argument("--duration", type=float, metavar="S",
                       help="stop the daemon after S seconds (default: files to their end, live sources 30 s)")
    group.add_argument("--max-fps", type=float, metavar="FPS", default=0.0,
                       help="source.max_fps for the daemon (default 0: as fast as it goes)")
    group.add_argument("--repeat", type=int, metavar="N", default=1,
                       help="run the whole bench N times in a row and report each run, then the "
                            "median and range of each figure (a shared or warming machine moves "
                            "single runs; default 1)")


#: Live sources without --duration run this long.
LIVE_DEFAULT_DURATION_S = 30.0


def cmd_bench_e2e(args: argparse.Namespace, flags_config, flag_overrides: dict[str, object]) -> int:
    """`edgepose bench --e2e`: `flags_config` is bench's config with the model flags
    (already validated, so a bad flag is exit 2), `flag_overrides` those flags as keys."""
    if args.model_only or args.images:
        raise UsageError("--e2e runs the whole daemon: leave out --model-only and --images")
    if args.duration is not None and not (0 < args.duration < 1e6):
        raise UsageError(f"--duration: must be > 0 seconds, not {args.duration:g}")
    if not (0 <= args.max_fps <= 1000):
        raise UsageError(f"--max-fps: must be 0-1000, not {args.max_fps:g}")
    if not (1 <= args.repeat <= MAX_REPEAT):
        raise UsageError(f"--repeat: must be 1-{MAX_REPEAT}, not {args.repeat}")
    reports = []
    for run in range(args.repeat):
        report = run_e2e(
            args.e2e,
            config_path=args.config,
            flag_overrides=flag_overrides,
            broker=args.broker,
            duration_s=args.duration,
            max_fps=args.max_fps,
            log_level=args.log_level,
        )
        reports.append(report)
        if not args.json_summary:  # each run as it ends: a long series shows its progress
            heading = f"run {run + 1} of {args.repeat}\n" if args.repeat > 1 else ""
            print(heading + format_report(report), flush=True)
    if args.repeat == 1:
        if args.json_summary:
            print(json.dumps(reports[0]))
        return ExitCode.OK
    series = summarise_runs(reports)
    print(json.dumps(series) if args.json_summary else format_series(series))
    return ExitCode.OK


def summarise_runs(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """--repeat's summary: every run's report, and for each of SERIES_FIGURES its
    median, min and max over the runs that have it (None where none has)."""
    median: dict[str, float | None] = {}
    low: dict[str, float | None] = {}
    high: dict[str, float | None] = {}
    for key in SERIES_FIGURES:
        values = [r[key] for r in reports if r.get(key) is not None]
        median[key] = _round(float(np.median(values)), 3) if values else None
        low[key] = min(values) if values else None
        high[key] = max(values) if values else None
    return {"runs": len(reports), "median": median, "min": low, "max": high, "each": reports}


def format_series(series: dict[str, Any]) -> str:
    """--repeat's summary as a table: median and range of each figure."""
    lines = [f"over {series['runs']} runs: median (min - max)"]
    for key in SERIES_FIGURES:
        lines.append(f"  {key:24}{_show(series['median'][key]):>10}   "
                     f"({_show(series['min'][key])} - {_show(series['max'][key])})")
    return "\n".join(lines)


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


# --- the broker ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (str(p) for p in (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto")) if p.is_file()), None)
    if found is None:
        raise E2eError("bench --e2e needs mosquitto to start a broker and none is on PATH: install it "
                       "(apt-get install mosquitto; `systemctl disable --now mosquitto` keeps the system "
                       "broker off) or pass --broker HOST:PORT")
    return found


@dataclass
class LocalBroker:
    """A private mosquitto on a free 127.0.0.1 port: anonymous, no persistence."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = mosquitto_binary()
        for _ in range(3):  # a free port can be taken before mosquitto binds it
            self.port = _free_port()
            conf = self.workdir / "mosquitto.conf"
            lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                     "log_dest stderr"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                lines.append("user root")  # else it switches to a "mosquitto" user that may not exist
            conf.write_text("\n".join(lines) + "\n")
            with open(self.workdir / "mosquitto.log", "ab") as log:
                self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + BROKER_START_TIMEOUT_S
            while self.proc.poll() is None and time.monotonic() < deadline:
                if _accepts(self.port):
                    return
                time.sleep(0.02)  # polling a port before anything is measured
            self.stop()
        raise E2eError(f"mosquitto did not start: {self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 10) -> str:
        path = self.workdir / "mosquitto.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


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
class ProcSample:
    mono: float
    cpu_s: float  # user + system
    rss_mb: float | None
    hwm_mb: float | None


def read_proc(pid: int) -> ProcSample | None:
    """CPU seconds and memory of a running process; None once it is gone."""
    mono = time.monotonic()
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def kb(name: str) -> float | None:
        found = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
        return int(found[1]) / 1024.0 if found else None  # a zombie has no memory lines

    return ProcSample(mono, cpu, kb("VmRSS"), kb("VmHWM"))


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
                 broker: LocalBroker | None, hard_limit_s: float | None) -> DaemonRun:
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


def _log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (no output)"


# --- the pipeline-only pass ------------------------------------------------------------------


def pipeline_only(config, frames: int) -> tuple[list[float], dict[str, list[float]]]:
    """ms per `estimate` (and per stage of it: the estimator's `last_timing`) for the first `frames` frames of the config's source, with the
    config's model and settings, in this process. Frames are decoded CHUNK_FRAMES at
    a time before any is timed (decoding is not part of the figure; chunks bound
    the memory a long clip would take)."""
    from ..estimators import open_estimator
    from ..sources import open_source

    estimator = open_estimator(config.model, config.decode)
    source = open_source(config.source.uri, width=config.source.width, height=config.source.height,
                         loop=False, lores_size=estimator.info.input_size)
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    try:
        source.open()
        ended = False
        while not ended and len(times) < frames:
            chunk: list[np.ndarray] = []
            while len(chunk) < min(CHUNK_FRAMES, frames - len(times)):
                try:
                    rgb = source.read()
                except FrameError:
                    continue  # the daemon skips these too
                if rgb is None:
                    ended = True
                    break
                lores = getattr(source, "last_lores", None)  # picamera2: what the daemon estimates on
                chunk.append(rgb if lores is None else lores)
            for rgb in chunk:
                start = time.perf_counter()
                estimator.estimate(rgb)
                times.append((time.perf_counter() - start) * 1000.0)
                for stage, ms in estimator.last_timing.items():
                    stages.setdefault(stage, []).append(ms)
    finally:
        source.close()
        estimator.close()
    return times, stages


# --- the whole bench -------------------------------------------------------------------------


def _ts_seconds(text: str) -> float:
    """The payload's ``ts`` ("2024-05-01T12:00:00.123Z") as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def latency_ms(arrival_wall: float, ts: str) -> float:
    """Capture to arrival: the truncated ``ts`` centred in its millisecond (TS_CENTRE_S)."""
    return (arrival_wall - _ts_seconds(ts) - TS_CENTRE_S) * 1000.0


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _cpu_pct(samples: list[ProcSample], start: float, end: float) -> float | None:
    """% of one core between the first sample at or after `start` and the last at or before `end`."""
    inside = [s for s in samples if start <= s.mono <= end]
    if len(inside) < 2 or inside[-1].mono - inside[0].mono < 0.5:
        return None
    return 100.0 * (inside[-1].cpu_s - inside[0].cpu_s) / (inside[-1].mono - inside[0].mono)


def _is_live(uri: str) -> bool:
    from ..sources import open_source

    try:
        return bool(getattr(open_source(uri, width=640, height=480, loop=False), "live", False))
    except ConfigError:
        return False


def run_e2e(source: str, *, config_path: str | None, flag_overrides: dict[str, object],
            broker: str | None, duration_s: float | None, max_fps: float,
            log_level: str | None = None) -> dict[str, Any]:
    """Run the bench; the summary as a dict (every key always present, None where
    a figure could not be had). Raises E2eError when the daemon fails."""
    from ..config import broker_overrides, load_config
    from ..sources import probe_source

    node_id = f"bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="edgepose-bench-") as tmp:
        work = Path(tmp)
        broker_keys = broker_overrides(broker) if broker else {}
        local = None
        if not broker:
            # Placeholder port, replaced once the broker is up; the config is checked first.
            broker_keys = {"mqtt.host": "127.0.0.1", "mqtt.port": 1883, "mqtt.tls.enabled": False,
                           "mqtt.username": "", "mqtt.password_file": "", "mqtt.password_env": ""}
        overrides = {**flag_overrides, **bench_overrides(source, node_id=node_id, broker=broker_keys,
                                                          max_fps=max_fps, outbox_path=work / "outbox.sqlite3")}
        config = load_config(config_path, overrides)  # exit 78 before anything starts
        probe = probe_source(config.source.uri, width=config.source.width, height=config.source.height)
        if not probe.ok:
            raise SourceError(f"--e2e: {probe.detail}")
        live = _is_live(source)
        if duration_s is None and live:
            duration_s = LIVE_DEFAULT_DURATION_S
        # Pipeline only, first pass (the second follows the daemon): the opening frames.
        before_ms, before_stages = pipeline_only(config, frames=LIVE_PIPELINE_FRAMES)
        try:
            if not broker:
                local = LocalBroker(work)
                local.start()
                overrides["mqtt.port"] = local.port
                config = load_config(config_path, overrides)
            config_file = work / "daemon.toml"
            config_file.write_text(daemon_config_text(config_path, overrides))
            prefix = f"{config.mqtt.topic_prefix}/{node_id}"
            collector = Collector(config.mqtt, prefix)
            collector.start()
            try:
                command = [sys.executable, "-m", "edgepose"]
                if log_level:
                    command += ["--log-level", log_level]
                command += ["run", "--config", str(config_file)]
                if duration_s is not None:
                    command += ["--duration", f"{duration_s:g}"]
                load_start = os.getloadavg()[0]
                run = watch_daemon(command, work / "daemon.log", collector, broker=local,
                                   hard_limit_s=None if duration_s is None else duration_s + FIRST_MESSAGE_TIMEOUT_S)
                load_end = os.getloadavg()[0]
                if run.exit_code == 0:
                    collector.offline.wait(DRAIN_TIMEOUT_S)  # every poses message is in before it
            finally:
                collector.stop()
        finally:
            if local is not None:
                local.stop()
        if run.failure or run.exit_code != 0 or not collector.arrivals:
            why = run.failure or (f"exited with code {run.exit_code}" if run.exit_code != 0
                                  else "exited without publishing a poses message")
            raise E2eError(f"bench --e2e: the daemon {why}; the end of its log:\n{_log_tail(work / 'daemon.log')}")
        arrivals = list(collector.arrivals)
        last_stats = json.loads(collector.last_stats) if collector.last_stats else {}

    # Everything below reads what was collected; the daemon and the broker are gone.
    bodies = [json.loads(payload) for _, _, payload in arrivals]
    mono = np.array([a[0] for a in arrivals])
    latencies = np.array([latency_ms(wall, b["ts"]) for (_, wall, _), b in zip(arrivals, bodies)])
    seqs = [int(b["frame"]) for b in bodies]
    frames = len(arrivals)
    fps = (frames - 1) / (mono[-1] - mono[0]) if frames >= 2 and mono[-1] > mono[0] else None
    usage = run.rusage
    # VmHWM only: wait4's ru_maxrss also counts the parent's pages the child ran on
    # between fork and exec (measured: a 300 MB parent makes `python -c pass` 311 MB).
    hwm = [s.hwm_mb for s in run.samples if s.hwm_mb is not None]
    peak_rss = max(hwm) if hwm else None
    lifetime = run.exited_at - run.spawned_at
    cpu_life = 100.0 * (usage.ru_utime + usage.ru_stime) / lifetime if usage is not None and lifetime > 0 else None

    pipeline_ms, stage_ms = pipeline_only(config, frames=max(seqs) + 1 if not live else min(frames, LIVE_PIPELINE_FRAMES))
    # The first estimate of each pass sets up the interpreter's caches. The ratios use
    # both passes, before and after the daemon: a machine whose speed drifts (a shared
    # VM, a Pi warming up) then moves both sides of a ratio alike, and the drift is reported.
    after = pipeline_ms[1:] or pipeline_ms
    before = before_ms[1:] or before_ms
    steady = before + after
    for stage, ms in before_stages.items():
        stage_ms.setdefault(stage, []).extend(ms[1:] or ms)
    pipeline_fps = 1000.0 / float(np.mean(steady)) if steady else None
    pipeline_p50 = float(np.median(steady)) if steady else None
    p50_before = float(np.median(before)) if before else None
    p50_after = float(np.median(after)) if after else None
    drift = (abs(p50_after - p50_before) / min(p50_after, p50_before)
             if p50_before and p50_after else None)
    latency_p50 = float(np.median(latencies))

    return {
        "source": source,
        "model": last_stats.get("model"),
        "runtime": last_stats.get("runtime"),
        "precision": last_stats.get("precision"),
        "threads": last_stats.get("threads"),
        "accelerator": last_stats.get("accelerator"),
        "max_fps": max_fps,
        "broker": f"{config.mqtt.host}:{config.mqtt.port}",
        "broker_started": local is not None,
        "daemon_exit_code": run.exit_code,
        "frames": frames,
        "frames_missing": max(seqs) + 1 - frames,
        "persons_mean": _round(np.mean([len(b["poses"]) for b in bodies]), 2),
        "fps": _round(fps, 2),
        "latency_ms_p50": _round(latency_p50, 1),
        "latency_ms_p95": _round(np.percentile(latencies, 95), 1),
        "latency_ms_max": _round(latencies.max(), 1),
        "first_message_s": _round(mono[0] - run.spawned_at, 3),
        "cpu_pct": _round(_cpu_pct(run.samples, mono[0], mono[-1]), 1),
        "cpu_pct_lifetime": _round(cpu_life, 1),
        "peak_rss_mb": _round(peak_rss, 1),
        "dropped_frames": last_stats.get("dropped_frames"),
        "skipped_frames": last_stats.get("skipped_frames"),
        "corrupt_frames": last_stats.get("corrupt_frames"),
        "mqtt_dropped": last_stats.get("mqtt_dropped"),
        "stats_frames": last_stats.get("frames"),
        "daemon_inference_ms_p50": last_stats.get("inference_ms_p50"),
        "daemon_inference_ms_p95": last_stats.get("inference_ms_p95"),
        "pipeline_frames": len(pipeline_ms),
        "pipeline_fps": _round(pipeline_fps, 2),
        "pipeline_ms_p50": _round(pipeline_p50, 2),
        "pipeline_ms_p95": _round(np.percentile(steady, 95) if steady else None, 2),
        "pipeline_stages_ms_p50": {stage: _round(np.median(ms[1:] or ms), 2) for stage, ms in stage_ms.items()},
        "pipeline_frames_before": len(before_ms),
        "pipeline_ms_p50_before": _round(p50_before, 2),
        "pipeline_ms_p50_after": _round(p50_after, 2),
        "pipeline_drift": _round(drift, 3),
        "fps_ratio": _round(fps / pipeline_fps if fps and pipeline_fps else None, 3),
        "latency_ratio": _round(latency_p50 / pipeline_p50 if pipeline_p50 else None, 2),
        "load_1m_start": round(load_start, 2),
        "load_1m_end": round(load_end, 2),
        "cores": os.cpu_count(),
    }


def _show(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def format_report(r: dict[str, Any]) -> str:
    """The summary as a short table for a terminal."""
    lines = [
        f"edgepose bench --e2e {r['source']}",
        f"  {r['model']} ({r['precision']}) on {r['accelerator']} ({r['runtime']}), {count(r['threads'], 'thread')}, "
        f"max_fps {r['max_fps'] or 'off'}; broker {r['broker']}{' (started by bench)' if r['broker_started'] else ''}",
        f"  {'':24}{'end to end':>14}{'pipeline only':>16}{'ratio':>10}",
        f"  {'frames':24}{r['frames']:>14}{r['pipeline_frames']:>16}",
        f"  {'frames per second':24}{_show(r['fps']):>14}{_show(r['pipeline_fps']):>16}{_show(r['fps_ratio']):>10}",
        f"  {'latency p50 / ms':24}{_show(r['latency_ms_p50']):>14}{_show(r['pipeline_ms_p50']):>16}"
        f"{_show(r['latency_ratio'], 'x'):>10}",
        f"  {'latency p95 / ms':24}{_show(r['latency_ms_p95']):>14}{_show(r['pipeline_ms_p95']):>16}",
        f"  (end to end: capture to arrival at a subscriber; pipeline only: `estimate` per frame: "
        + ", ".join(f"{k} {v} ms" for k, v in r["pipeline_stages_ms_p50"].items()) + ")",
        f"  first message {_show(r['first_message_s'], ' s')} after start; CPU {_show(r['cpu_pct'], ' %')} of one core "
        f"(whole life {_show(r['cpu_pct_lifetime'], ' %')}); peak RSS {_show(r['peak_rss_mb'], ' MB')}",
        f"  daemon: inference p50 {_show(r['daemon_inference_ms_p50'], ' ms')}, dropped frames "
        f"{_show(r['dropped_frames'])}, skipped {_show(r['skipped_frames'])}, corrupt {_show(r['corrupt_frames'])}, "
        f"MQTT dropped {_show(r['mqtt_dropped'])}, frames not received {r['frames_missing']}",
        f"  load average {r['load_1m_start']} -> {r['load_1m_end']} on {r['cores']} cores; pipeline only "
        f"p50 {_show(r['pipeline_ms_p50_before'], ' ms')} before the daemon, "
        f"{_show(r['pipeline_ms_p50_after'], ' ms')} after",
    ]
    if r["pipeline_drift"] is not None and r["pipeline_drift"] > DRIFT_WARNING:
        lines.append(f"  the machine's speed changed during the run ({100 * r['pipeline_drift']:.0f} % between "
                     "the pipeline-only passes): the ratios are uncertain, repeat the run")
    return "\n".join(lines)
