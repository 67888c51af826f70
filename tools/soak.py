#!/usr/bin/env python3
"""Soak run (not a test): the real daemon against a private Mosquitto for a long time.

Starts mosquitto on a free loopback port, runs ``edgepose run`` on a config
(default: config/demo.toml) pointed at it, subscribes to everything the node
publishes, and every ``--every`` seconds prints one line of RSS, CPU (of one
core, over the last period) and message counts; at the end a summary with the
RSS growth from the first sample after warm-up to the last. Optionally the
broker is restarted every ``--broker-restart-every`` seconds to soak the
reconnect, outbox and retained-state paths too.

    python tools/soak.py --minutes 30 [--config config/demo.toml] [--broker-restart-every 300]

Needs mosquitto on PATH (install.sh --test installs it) and the edgepose venv.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from edgepose.devtools.broker import Broker
from edgepose.devtools.procstat import read_proc

REPO = Path(__file__).resolve().parents[1]


def subscribe(port: int, counts: collections.Counter[str], lock: threading.Lock) -> paho.Client:
    """Counts every message the node publishes, by topic suffix (commands as "cmd")."""

    def on_message(client, userdata, msg):
        with lock:
            counts[msg.topic.rsplit("/", 1)[-1] if "/cmd/" not in msg.topic else "cmd"] += 1

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-subscriber")
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("edgepose/#", qos=1)
    sub.reconnect_delay_set(1, 2)
    sub.connect_async("127.0.0.1", port)
    sub.loop_start()
    return sub


def start_daemon(config: str, port: int, work: Path) -> subprocess.Popen:
    log = open(work / "daemon.log", "wb")  # noqa: SIM115 - the daemon's for its whole life
    return subprocess.Popen(
        [sys.executable, "-m", "edgepose", "run", "--config", config, "--node-id", "soak",
         "--broker", f"127.0.0.1:{port}", "--snapshot-dir", str(work / "snapshots")],
        cwd=work, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), "STATE_DIRECTORY": str(work)},
    )


def summary(samples: list[dict], code: int) -> dict:
    """RSS growth from the first sample after warm-up to the last, mean CPU, the message counts."""
    base = samples[1] if len(samples) > 2 else samples[0]  # after warm-up
    growth = samples[-1]["rss_mb"] - base["rss_mb"]
    cpu = sum(s["cpu_pct"] for s in samples[1:]) / max(1, len(samples) - 1)
    return {"minutes": samples[-1]["t_min"], "rss_first_mb": base["rss_mb"],
            "rss_last_mb": samples[-1]["rss_mb"], "rss_growth_pct": round(100 * growth / base["rss_mb"], 2),
            "cpu_pct_mean": round(cpu, 1), "messages": samples[-1]["messages"], "exit_code": code}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--config", default=str(REPO / "config" / "demo.toml"))
    parser.add_argument("--broker-restart-every", type=float, default=0.0, metavar="S")
    parser.add_argument("--json", metavar="OUT", help="also write every sample here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgepose-soak-"))
    broker = Broker(work)
    broker.start()
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    sub = subscribe(broker.port, counts, lock)
    daemon = start_daemon(args.config, broker.port, work)
    print(f"soak: daemon pid {daemon.pid}, broker {broker.address}, work dir {work}", flush=True)
    samples = []
    start = time.monotonic()
    end = start + args.minutes * 60
    next_restart = start + args.broker_restart_every if args.broker_restart_every else float("inf")
    last_cpu, last_t = 0.0, start
    try:
        while time.monotonic() < end:
            time.sleep(min(args.every, max(0.0, end - time.monotonic())))
            if daemon.poll() is not None:
                print(f"soak: the daemon exited with {daemon.returncode}", flush=True)
                break
            now = time.monotonic()
            if now >= next_restart:
                broker.kill()
                broker.start()  # the same port
                next_restart = now + args.broker_restart_every
                counts["broker_restarts"] += 1
            figures = read_proc(daemon.pid)
            with lock:
                snapshot = dict(counts)
            sample = {"t_min": round((now - start) / 60, 2), "rss_mb": round(figures.rss_mb, 1),
                      "cpu_pct": round(100 * (figures.cpu_s - last_cpu) / (now - last_t), 1), "messages": snapshot}
            last_cpu, last_t = figures.cpu_s, now
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(15)
        sub.loop_stop()
        broker.stop()
    if len(samples) >= 2:
        print(json.dumps(summary(samples, code)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=1))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
