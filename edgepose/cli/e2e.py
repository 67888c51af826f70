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
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..devtools.broker import Broker, BrokerError, find_binary
from ..devtools.procstat import cpu_pct
from ..errors import ConfigError, ExitCode, FrameError, SourceError, UsageError
from ..text import count
from .e2e_daemon import (
    FIRST_MESSAGE_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Collector,
    DaemonRun,
    E2eError,
    bench_overrides,
    daemon_config_text,
    log_tail,
    watch_daemon,
)

#: After the daemon exits, its ``offline`` (sent after every poses message) must arrive within this.
DRAIN_TIMEOUT_S = 5.0
#: Frames decoded at a time for the pipeline-only pass (768x576 RGB: 1.3 MB each).
CHUNK_FRAMES = 32
#: Most frames read for a pipeline-only pass: the one before the daemon, and for
#: live sources (cameras, streams) the one after it too.
LIVE_PIPELINE_FRAMES = 300
#: Pipeline-only passes before and after the daemon that differ by more than this
#: (relative p50) make the report say the ratios are uncertain.
DRIFT_WARNING = 0.15
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
        # Without --broker: a placeholder port, replaced once the broker is up; the config is checked first.
        broker_keys = broker_overrides(broker) if broker else {
            "mqtt.host": "127.0.0.1", "mqtt.port": 1883, "mqtt.tls.enabled": False,
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
        before = pipeline_only(config, frames=LIVE_PIPELINE_FRAMES)
        seen = _observe_daemon(config_path, overrides, work, node_id, start_broker=not broker,
                               duration_s=duration_s, log_level=log_level)
    # Everything below reads what was collected; the daemon and the broker are gone.
    seqs = [int(b["frame"]) for b in seen.bodies]
    frames = max(seqs) + 1 if not live else min(len(seqs), LIVE_PIPELINE_FRAMES)
    return _summary(source, max_fps, seen, before, pipeline_only(seen.config, frames=frames))


@dataclass
class _Observed:
    """One run of the daemon, as seen from outside."""

    config: Any  # the daemon's config.Config (with the broker's real port)
    run: DaemonRun
    arrivals: list[tuple[float, float, bytes]]  # (monotonic, wall, payload) per poses message
    bodies: list[dict[str, Any]]  # the poses payloads
    last_stats: dict[str, Any]
    broker_started: bool
    load_start: float
    load_end: float


def _observe_daemon(config_path: str | None, overrides: dict[str, object], work: Path, node_id: str, *,
                    start_broker: bool, duration_s: float | None, log_level: str | None) -> _Observed:
    """Start the broker (unless one was given), run the daemon under a subscriber, stop both."""
    from ..config import load_config

    local = None
    try:
        if start_broker:
            if find_binary("mosquitto") is None:
                raise E2eError("bench --e2e needs mosquitto to start a broker and none is on PATH: install it "
                               "(apt-get install mosquitto; `systemctl disable --now mosquitto` keeps the system "
                               "broker off) or pass --broker HOST:PORT")
            local = Broker(work)
            try:
                local.start()
            except BrokerError as exc:
                raise E2eError(f"mosquitto did not start: {local.log_tail()}") from exc
            overrides["mqtt.port"] = local.port
        config = load_config(config_path, overrides)
        config_file = work / "daemon.toml"
        config_file.write_text(daemon_config_text(config_path, overrides))
        collector = Collector(config.mqtt, f"{config.mqtt.topic_prefix}/{node_id}")
        collector.start()
        try:
            command = [sys.executable, "-m", "edgepose", *(["--log-level", log_level] if log_level else []),
                       "run", "--config", str(config_file),
                       *(["--duration", f"{duration_s:g}"] if duration_s is not None else [])]
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
            local.stop(STOP_TIMEOUT_S)
    if run.failure or run.exit_code != 0 or not collector.arrivals:
        why = run.failure or (f"exited with code {run.exit_code}" if run.exit_code != 0
                              else "exited without publishing a poses message")
        raise E2eError(f"bench --e2e: the daemon {why}; the end of its log:\n{log_tail(work / 'daemon.log')}")
    arrivals = list(collector.arrivals)
    return _Observed(config, run, arrivals, [json.loads(payload) for _, _, payload in arrivals],
                     json.loads(collector.last_stats) if collector.last_stats else {},
                     local is not None, load_start, load_end)


def _summary(source: str, max_fps: float, seen: _Observed, before: tuple[list[float], dict[str, list[float]]],
             after: tuple[list[float], dict[str, list[float]]]) -> dict[str, Any]:
    """The report: the daemon's figures next to both pipeline-only passes."""
    run, bodies, last_stats = seen.run, seen.bodies, seen.last_stats
    mono = np.array([a[0] for a in seen.arrivals])
    latencies = np.array([latency_ms(wall, b["ts"]) for (_, wall, _), b in zip(seen.arrivals, bodies)])
    seqs = [int(b["frame"]) for b in bodies]
    frames = len(seen.arrivals)
    fps = (frames - 1) / (mono[-1] - mono[0]) if frames >= 2 and mono[-1] > mono[0] else None
    usage = run.rusage
    # VmHWM only: wait4's ru_maxrss also counts the parent's pages the child ran on
    # between fork and exec (a large parent makes even `python -c pass` as large).
    hwm = [s.hwm_mb for s in run.samples if s.hwm_mb is not None]
    lifetime = run.exited_at - run.spawned_at
    cpu_life = 100.0 * (usage.ru_utime + usage.ru_stime) / lifetime if usage is not None and lifetime > 0 else None
    latency_p50 = float(np.median(latencies))
    return {
        "source": source,
        **{key: last_stats.get(key) for key in ("model", "runtime", "precision", "threads", "accelerator")},
        "max_fps": max_fps,
        "broker": f"{seen.config.mqtt.host}:{seen.config.mqtt.port}",
        "broker_started": seen.broker_started,
        "daemon_exit_code": run.exit_code,
        "frames": frames,
        "frames_missing": max(seqs) + 1 - frames,
        "persons_mean": _round(np.mean([len(b["poses"]) for b in bodies]), 2),
        "fps": _round(fps, 2),
        "latency_ms_p50": _round(latency_p50, 1),
        "latency_ms_p95": _round(np.percentile(latencies, 95), 1),
        "latency_ms_max": _round(latencies.max(), 1),
        "first_message_s": _round(mono[0] - run.spawned_at, 3),
        "cpu_pct": _round(cpu_pct(run.samples, mono[0], mono[-1]), 1),
        "cpu_pct_lifetime": _round(cpu_life, 1),
        "peak_rss_mb": _round(max(hwm) if hwm else None, 1),
        **{key: last_stats.get(key) for key in ("dropped_frames", "skipped_frames", "corrupt_frames",
                                                 "mqtt_dropped")},
        "stats_frames": last_stats.get("frames"),
        "daemon_inference_ms_p50": last_stats.get("inference_ms_p50"),
        "daemon_inference_ms_p95": last_stats.get("inference_ms_p95"),
        **_pipeline_figures(before, after, fps, latency_p50),
        "load_1m_start": round(seen.load_start, 2),
        "load_1m_end": round(seen.load_end, 2),
        "cores": os.cpu_count(),
    }


def _pipeline_figures(before: tuple[list[float], dict[str, list[float]]],
                      after: tuple[list[float], dict[str, list[float]]],
                      fps: float | None, latency_p50: float) -> dict[str, Any]:
    """The pipeline-only figures over both passes, before and after the daemon, and
    the daemon's `fps` and `latency_p50` as ratios of them.

    The first estimate of each pass sets up the interpreter's caches. The ratios use
    both passes: a machine whose speed drifts (a shared VM, a Pi warming up) then
    moves both sides of a ratio alike, and the drift is reported."""
    (before_ms, before_stages), (pipeline_ms, stage_ms) = before, after
    after_ms = pipeline_ms[1:] or pipeline_ms
    steady_before = before_ms[1:] or before_ms
    steady = steady_before + after_ms
    for stage, ms in before_stages.items():
        stage_ms.setdefault(stage, []).extend(ms[1:] or ms)
    p50_before = float(np.median(steady_before)) if steady_before else None
    p50_after = float(np.median(after_ms)) if after_ms else None
    drift = (abs(p50_after - p50_before) / min(p50_after, p50_before)
             if p50_before and p50_after else None)
    pipeline_fps = 1000.0 / float(np.mean(steady)) if steady else None
    pipeline_p50 = float(np.median(steady)) if steady else None
    return {
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
