#!/usr/bin/env python3
"""Peak RSS of the daemon receiving one huge command (not a test): the bound on incoming MQTT packets.

Starts mosquitto on a free loopback port with no packet limit of its own (mosquitto's
default: it forwards a 64 MB message), runs ``edgepose run`` on the demo photos
(config/demo.toml, snapshots into a temporary folder) pointed at it, waits out a
warm-up, reads the daemon's peak RSS (VmHWM), then publishes the payload on
``<prefix>/<node>/cmd/snapshot`` (QoS 1), and after it a ``1`` every half second
until the daemon has taken a command snapshot (so it read commands again), then
waits ``--settle`` seconds and reads VmHWM again. With ``--payload-mb 0`` only the
``1`` is sent: the same timeline without the payload, the baseline growth.

    .venv/bin/python tools/measure_command_rss.py [--protocol 3.1.1|5] [--payload-mb 64] [--runs 3]

One JSON line per run: protocol, payload, VmHWM before and after (MB), the growth,
and the seconds from the payload to the command snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho

from edgepose.devtools.broker import Broker
from edgepose.devtools.procstat import peak_rss_kib

REPO = Path(__file__).resolve().parents[1]


def one_run(args: argparse.Namespace, port: int, work: Path, index: int) -> dict:
    node = f"rss{os.getpid()}x{index}"
    snapshots = work / f"snapshots-{index}"
    config = work / f"edgepose-{index}.toml"
    demo = (REPO / "config" / "demo.toml").read_text()
    config.write_text(demo.replace("[mqtt]\n", f'[mqtt]\nprotocol = "{args.protocol}"\n'))
    cmd = [args.python, "-m", "edgepose", "run", "--config", str(config), "--broker", f"127.0.0.1:{port}",
           "--node-id", node, "--snapshot-dir", str(snapshots)]
    env = dict(os.environ, PYTHONPATH=str(args.repo))
    with open(work / f"daemon-{index}.log", "wb") as log:
        daemon = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=log)
    sender = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=f"sender-{node}")
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    try:
        time.sleep(args.warmup)
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.returncode}); see {work}/daemon-{index}.log")
        before = peak_rss_kib(daemon.pid) / 1024
        topic = f"edgepose/{node}/cmd/snapshot"
        sent = time.monotonic()
        if args.payload_mb:
            sender.publish(topic, b"\x00" * int(args.payload_mb * 2**20), qos=1).wait_for_publish(30)
        acted = None
        deadline = time.monotonic() + 30
        while acted is None and time.monotonic() < deadline:
            sender.publish(topic, b"1", qos=1).wait_for_publish(5)
            time.sleep(0.5)
            if snapshots.is_dir() and any("_command_" in p.name for p in snapshots.iterdir()):
                acted = time.monotonic() - sent
        time.sleep(args.settle)
        after = peak_rss_kib(daemon.pid) / 1024
        return {"protocol": args.protocol, "payload_mb": args.payload_mb, "peak_rss_before_mb": round(before, 1),
                "peak_rss_after_mb": round(after, 1), "growth_mb": round(after - before, 1),
                "command_acted_after_s": None if acted is None else round(acted, 2),
                "loadavg": os.getloadavg()[0]}
    finally:
        sender.disconnect()
        sender.loop_stop()
        daemon.terminate()
        daemon.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1")
    parser.add_argument("--payload-mb", type=float, default=64.0, help="0: the baseline, no payload")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the first reading")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the command before the second")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--repo", type=Path, default=REPO, help="the edgepose tree to run (PYTHONPATH)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepose-rss-"))
    broker = Broker(work)
    broker.start()
    try:
        for i in range(args.runs):
            print(json.dumps(one_run(args, broker.port, work, i)), flush=True)
    finally:
        broker.stop(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
