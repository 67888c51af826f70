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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(workdir: Path, port: int) -> subprocess.Popen:
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def proc_figures(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds user+system) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return rss, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--config", default=str(REPO / "config" / "demo.toml"))
    parser.add_argument("--broker-restart-every", type=float, default=0.0, metavar="S")
    parser.add_argument("--json", metavar="OUT", help="also write every sample here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgepose-soak-"))
    port = free_port()
    broker = start_broker(work, port)
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def on_message(client, userdata, msg):
        with lock:
            counts[msg.topic.rsplit("/", 1)[-1] if "/cmd/" not in msg.topic else "cmd"] += 1

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-subscriber")
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("edgepose/#", qos=1)
    sub.reconnect_delay_set(1, 2)
    sub.connect_async("127.0.0.1", port)
    sub.loop_start()

    log = open(work / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgepose", "run", "--config", args.config, "--node-id", "soak",
         "--broker", f"127.0.0.1:{port}", "--snapshot-dir", str(work / "snapshots")],
        cwd=work, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), "STATE_DIRECTORY": str(work)},
    )
    print(f"soak: daemon pid {daemon.pid}, broker 127.0.0.1:{port}, work dir {work}", flush=True)
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
                broker.send_signal(signal.SIGKILL)
                broker.wait()
                broker = start_broker(work, port)
                next_restart = now + args.broker_restart_every
                counts["broker_restarts"] += 1
            rss, cpu = proc_figures(daemon.pid)
            with lock:
                snapshot = dict(counts)
            sample = {"t_min": round((now - start) / 60, 2), "rss_mb": round(rss, 1),
                      "cpu_pct": round(100 * (cpu - last_cpu) / (now - last_t), 1), "messages": snapshot}
            last_cpu, last_t = cpu, now
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(15)
        sub.loop_stop()
        broker.terminate()
        broker.wait(5)
    if len(samples) >= 2:
        base = samples[1] if len(samples) > 2 else samples[0]  # after warm-up
        growth = samples[-1]["rss_mb"] - base["rss_mb"]
        cpu = sum(s["cpu_pct"] for s in samples[1:]) / max(1, len(samples) - 1)
        print(json.dumps({"minutes": samples[-1]["t_min"], "rss_first_mb": base["rss_mb"],
                          "rss_last_mb": samples[-1]["rss_mb"], "rss_growth_pct": round(100 * growth / base["rss_mb"], 2),
                          "cpu_pct_mean": round(cpu, 1), "messages": samples[-1]["messages"],
                          "exit_code": code}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=1))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
