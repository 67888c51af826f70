"""`edgepose run` end to end: the real daemon as a subprocess against a real mosquitto.

Each test writes a config derived from config/demo.toml (its own node id,
snapshots in tmp_path, no frame cap or a high one), starts
``python -m edgepose run`` and watches what comes out: MQTT messages, snapshot
files, systemd notifications, the exit code. Every wait has a deadline; the
`daemon` fixture kills whatever is still running at teardown.
"""

from __future__ import annotations

import io
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
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import paho.mqtt.client as paho
import pytest
from PIL import Image

from edgepose.messages import load_schema
from edgepose.overlay import PALETTE
from edgepose.sinks.snapshots import is_snapshot_name
from edgepose.sources import demo_dir, list_images

from ..resemblance import COARSE_MAX, DETAIL_MAX, closest
from .conftest import Broker

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / "config" / "demo.toml"
#: Longest any single wait may take: model load, first frame, a broker reconnect.
WAIT_S = 20.0
#: A clean stop must be over within this after SIGTERM (systemd's stop is not our budget).
STOP_S = 5.0
POLL_S = 0.05  # polling a file or a process with a deadline, never as synchronisation
EXIT_CONFIG = 78
DEMO_PHOTOS = list_images(demo_dir())


def node_id(tag: str) -> str:
    """A node id of its own per test, so retained messages of other tests never interfere."""
    return f"t{tag}{uuid.uuid4().hex[:8]}"


# --- config files ------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml(table: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for our configs: nested tables of strings, numbers, booleans and arrays,
    and arrays of tables ([[zones]])."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict) and not _is_tables(v)]
    out = ([f"[{prefix}]"] if prefix and lines else []) + lines + ([""] if lines else [])
    for k, v in table.items():
        if isinstance(v, dict):
            out.append(_toml(v, f"{prefix}.{k}" if prefix else k))
    for k, v in table.items():
        if _is_tables(v):
            for item in v:
                out += [f"[[{prefix + '.' if prefix else ''}{k}]]", *(f"{ik} = {_toml_value(iv)}" for ik, iv in item.items()), ""]
    return "\n".join(out)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = _merge(merged.get(k, {}), v) if isinstance(v, dict) else v
    return merged


def demo_config(tmp_path: Path, node: str, broker: Broker | None, **tables: dict[str, Any]) -> dict[str, Any]:
    """config/demo.toml with this test's node id, broker, snapshot folder and no frame cap."""
    config = tomllib.loads(DEMO_CONFIG.read_text())
    config = _merge(config, {
        "node": {"id": node, "state_file": str(tmp_path / f"state-{node}.json")},
        "source": {"max_fps": 0.0},
        "snapshots": {"dir": str(tmp_path / f"snapshots-{node}")},
        "logging": {"level": "info"},
    })
    if broker is not None:
        config = _merge(config, {"mqtt": {"host": broker.host, "port": broker.port}})
    return _merge(config, tables)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(_toml(config))
    assert tomllib.loads(path.read_text()) == json.loads(json.dumps(config, default=str)), "TOML writer bug"
    return path


# --- the daemon subprocess ---------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)  # a test run under systemd must not leak the runner's own
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass
class Daemon:
    """One `edgepose run` process; its stdout and stderr go to a log file."""

    proc: subprocess.Popen
    node: str
    config: dict[str, Any]
    log_path: Path

    @property
    def snapshot_dir(self) -> Path:
        return Path(self.config["snapshots"]["dir"])

    @property
    def prefix(self) -> str:
        return f"edgepose/{self.node}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def explain(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"daemon {self.node} ({state}); its log:\n{self.log_text()[-4000:]}"

    def snapshots(self) -> list[Path]:
        if not self.snapshot_dir.is_dir():
            return []
        return sorted(p for p in self.snapshot_dir.iterdir() if is_snapshot_name(p.name))

    def wait_until(self, what: str, predicate: Callable[[], Any], timeout: float = WAIT_S) -> Any:
        """Poll `predicate` until it is truthy; fail early if the daemon died."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited while waiting for {what}; {self.explain()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g} s; {self.explain()}")
            time.sleep(POLL_S)

    def wait_log(self, text: str, timeout: float = WAIT_S) -> None:
        self.wait_until(f"log line containing {text!r}", lambda: text in self.log_text(), timeout)

    def wait_snapshots(self, count: int, timeout: float = WAIT_S) -> list[Path]:
        def enough() -> list[Path] | None:
            found = self.snapshots()
            return found if len(found) >= count else None

        return self.wait_until(f"{count} snapshot(s) in {self.snapshot_dir}", enough, timeout)

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took). Fails if it takes longer than STOP_S."""
        assert self.proc.poll() is None, f"daemon already gone; {self.explain()}"
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon still running {STOP_S:g} s after SIGTERM; {self.explain()}")
        return code, time.monotonic() - start


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """start(config, env=None, args=()) -> a running Daemon; all are killed at teardown."""
    started: list[Daemon] = []

    def start(config: dict[str, Any], *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Daemon:
        node = config["node"]["id"]
        config_path = write_config(tmp_path / f"{node}.toml", config)
        log_path = tmp_path / f"{node}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgepose", "run", "--config", str(config_path), *args],
                cwd=tmp_path, env=child_env(env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        d = Daemon(proc, node, config, log_path)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(STOP_S)


def wait_msgs(sub, daemon: Daemon, match, count: int = 1, timeout: float = WAIT_S) -> list[paho.MQTTMessage]:
    """sub.wait_for with the daemon's log in the failure message."""
    try:
        return sub.wait_for(match, count, timeout)
    except AssertionError as exc:
        pytest.fail(f"{str(exc)[:1500]}\n{daemon.explain()}")


def payload_is(topic: str, payload: bytes, *, retained: bool | None = None) -> Callable[[paho.MQTTMessage], bool]:
    return lambda m: m.topic == topic and m.payload == payload and (retained is None or m.retain == retained)


def decode(msg: paho.MQTTMessage) -> Any:
    return json.loads(msg.payload)


# --- what a good message / snapshot looks like --------------------------------------------

POSES_SCHEMA = load_schema("poses")
STATS_SCHEMA = load_schema("stats")
PERSON_COUNT_SCHEMA = load_schema("person_count")
AVAILABILITY_SCHEMA = load_schema("availability")


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


DEMO_SIZES = {_image_size(p) for p in DEMO_PHOTOS}


def check_poses(msg: paho.MQTTMessage, node: str) -> dict[str, Any]:
    body = decode(msg)
    jsonschema.validate(body, POSES_SCHEMA)
    assert not msg.retain, "poses are a stream, never retained"
    assert body["node"] == node, f"{msg.topic} carries node {body['node']!r}"
    assert (body["width"], body["height"]) in DEMO_SIZES
    assert body["person_count"] == len(body["poses"])
    return body


def check_stats(msg: paho.MQTTMessage) -> dict[str, Any]:
    body = decode(msg)
    jsonschema.validate(body, STATS_SCHEMA)
    assert body["accelerator"] == "cpu"
    return body


def _demo_photo_rgb() -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in DEMO_PHOTOS]


def check_private_snapshot(jpeg: bytes, privacy: str = "skeleton") -> None:
    """A JPEG of a demo photo's size with an overlay in palette colours, resembling none
    of the demo photos (tests/resemblance.py: its detail never, with a plain background
    not even its coarse layout); with privacy "off", the control: it clearly does."""
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG" and image.size in DEMO_SIZES, (image.format, image.size)
        snap = np.asarray(image.convert("RGB"), dtype=np.int16)
    near_palette = np.zeros(snap.shape[:2], bool)
    for colour in PALETTE:
        near_palette |= np.abs(snap - np.array(colour)).max(axis=-1) < 40
    assert near_palette.sum() > 100, "nothing drawn in the palette's colours"
    found = closest(jpeg, [rgb for rgb in _demo_photo_rgb() if (rgb.shape[1], rgb.shape[0]) == image.size])
    if privacy == "off":
        assert found.coarse > 2 * COARSE_MAX and found.detail > 3 * DETAIL_MAX, found
        return
    assert found.detail < DETAIL_MAX, f"{privacy} snapshot resembles a demo photo: {found}"
    if privacy == "skeleton":
        assert found.coarse < COARSE_MAX, f"{privacy} snapshot resembles a demo photo: {found}"


class NotifyListener:
    """A stand-in for systemd's notify socket: AF_UNIX datagrams, drained by a thread.

    The kernel queues only a few datagrams (net.unix.max_dgram_qlen), after
    which the sender blocks, so the queue must be drained all the time.
    """

    def __init__(self, directory: Path):
        path = directory / "notify.sock"
        if len(os.fsencode(path)) > 100:  # sun_path holds 108 bytes
            self._tmpdir = tempfile.mkdtemp(prefix="edgepose-notify-")
            path = Path(self._tmpdir) / "n.sock"
        else:
            self._tmpdir = None
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._cond = threading.Condition()
        self.datagrams: list[str] = []
        self.times: list[float] = []  # time.monotonic() each datagram arrived
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="notify-listener", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            except OSError:
                return
            with self._cond:
                self.datagrams.append(data.decode("utf-8", "replace"))
                self.times.append(time.monotonic())
                self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return [line for d in self.datagrams for line in d.split("\n")]

    def wait_for(self, line: str, timeout: float = WAIT_S) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(line in d.split("\n") for d in self.datagrams), timeout)
        assert ok, f"no {line} within {timeout:g} s; got {self.lines()[-10:]}"

    def close(self) -> None:
        """Stop after the queue is empty (the sender has exited, so nothing new comes)."""
        self._stop.set()
        self._thread.join(5.0)
        self._sock.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


# --- 1. the demo, end to end ---------------------------------------------------------------


def test_demo_publishes_poses_state_stats_snapshots_and_stops_cleanly(tmp_path, mosquitto_broker, subscriber, daemon):
    node = node_id("demo")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/#")
    # Paced, as the demo is: the demo source holds each photo for 10 frames, and a person
    # counts once seen for presence.enter_s (0.5 s). Uncapped, a photo lasted 10 frames of
    # however fast this machine runs the model (0.2 s at 50 fps), so whether the debounced
    # count ever rose depended on the machine's speed.
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 10.0},
                           mqtt={"stats_interval_s": 0.5}))

    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))
    poses = wait_msgs(sub, d, f"{prefix}/poses", count=20)
    bodies = [check_poses(m, node) for m in poses]
    assert all(b["person_count"] > 0 for b in bodies), "every demo photo shows people"
    for body in bodies:
        for pose in body["poses"]:
            assert 0 < pose["score"] <= 1
            assert sum(kp["score"] >= 0.5 for kp in pose["keypoints"].values()) >= 1
    frames = [b["frame"] for b in bodies]
    assert frames == sorted(frames) and len(set(frames)) == len(frames), f"frames out of order: {frames}"
    # The default, top-down Thunder: the people finder, then the keypoint model.
    assert all(b["model"].startswith("movenet_multipose_int8 + movenet_thunder") for b in bodies), bodies[0]["model"]

    stats = check_stats(wait_msgs(sub, d, f"{prefix}/stats")[0])
    assert stats["corrupt_frames"] == 0 and stats["source_errors"] == 0

    # Retained state reaches a subscriber that comes later.
    late = subscriber(mosquitto_broker, f"{prefix}/availability", f"{prefix}/person_count", f"{prefix}/stats")
    online = wait_msgs(late, d, f"{prefix}/availability")[0]
    assert (online.payload, online.retain) == (b"online", True)
    jsonschema.validate(online.payload.decode(), AVAILABILITY_SCHEMA)
    count = wait_msgs(late, d, f"{prefix}/person_count")[0]
    assert count.retain, "person_count must be retained"
    jsonschema.validate(json.loads(count.payload), PERSON_COUNT_SCHEMA)
    # The count is debounced (presence.enter_s): it may still be 0 when the late
    # subscriber arrives, and must become the people in the photo.
    counted = wait_msgs(late, d, lambda m: m.topic == f"{prefix}/person_count" and int(m.payload) > 0)
    jsonschema.validate(json.loads(counted[0].payload), PERSON_COUNT_SCHEMA)
    assert wait_msgs(late, d, f"{prefix}/stats")[0].retain

    snapshots = d.wait_snapshots(1)
    # The default privacy ("skeleton"): the overlay on a plain background, in every file.
    for path in [snapshots[0], d.snapshot_dir / "latest.jpg"]:
        check_private_snapshot(path.read_bytes())

    code, took = d.terminate()
    assert code == 0 and took < STOP_S, d.explain()
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"offline"))
    after = subscriber(mosquitto_broker, f"{prefix}/availability")
    assert wait_msgs(after, d, payload_is(f"{prefix}/availability", b"offline", retained=True))
    assert "Traceback" not in d.log_text(), d.explain()


# --- 2. the snapshot command ---------------------------------------------------------------

COMMAND_ONLY = {"interval_s": 0.0, "on_count_change": False}


def test_snapshot_command_takes_one_snapshot_and_a_bad_payload_none(tmp_path, mosquitto_broker, subscriber, daemon):
    node = node_id("cmd")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/availability", f"{prefix}/poses")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, snapshots=COMMAND_ONLY))
    # `online` goes out after the command subscription, on the same connection: commands now arrive.
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))

    sub.publish(f"{prefix}/cmd/snapshot", b"explode")
    d.wait_log("b'explode'")  # the daemon has received and refused it
    seen = len(sub.matching(f"{prefix}/poses"))
    wait_msgs(sub, d, f"{prefix}/poses", count=seen + 10)  # ten frames later...
    assert d.snapshots() == [], "an invalid command must not take a snapshot"
    assert d.proc.poll() is None

    sub.publish(f"{prefix}/cmd/snapshot", b"1")
    (snapshot,) = d.wait_snapshots(1)
    assert "command" in snapshot.name, snapshot.name
    check_private_snapshot(snapshot.read_bytes())  # cmd/snapshot obeys snapshots.privacy
    seen = len(sub.matching(f"{prefix}/poses"))
    wait_msgs(sub, d, f"{prefix}/poses", count=seen + 10)
    assert len(d.snapshots()) == 1, f"one command, one snapshot: {[p.name for p in d.snapshots()]}"

    code, _ = d.terminate()
    assert code == 0, d.explain()


def test_each_snapshot_is_published_exactly_once(tmp_path, mosquitto_broker, subscriber, daemon):
    """The bug: a retained value written by paho's thread before `_send` returned looked
    unsent, so it was sent again, and again (31 snapshots gave 255 publishes)."""
    node = node_id("snaponce")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/snapshot", f"{prefix}/availability")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 10.0},
                           mqtt={"publish_snapshot": True},
                           snapshots={"interval_s": 0.3, "cooldown_s": 0.0}))
    d.wait_snapshots(12)
    code, _ = d.terminate()
    assert code == 0, d.explain()
    # `offline` is the last message of the connection: every snapshot is in before it.
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"offline"))
    published = [bytes(m.payload) for m in sub.matching(f"{prefix}/snapshot")]
    written = [p.read_bytes() for p in d.snapshots()]
    assert len(written) >= 12
    assert sorted(published) == sorted(written), (
        f"{len(published)} publishes for {len(written)} snapshots; "
        f"{len(set(published))} distinct pictures published")


@pytest.mark.parametrize("privacy", ["skeleton", "blur", "off"])
def test_no_snapshot_written_or_published_shows_the_camera_picture_unless_privacy_is_off(
        tmp_path, mosquitto_broker, subscriber, daemon, privacy):
    """The demo with its snapshots published: every file (count changes, the command,
    latest.jpg) and every image on the broker is compared with every demo photo. "off"
    is the control: there each one clearly resembles its photo. Home Assistant's image
    entity says which it is."""
    node = node_id("priv")
    prefix = f"edgepose/{node}"
    discovery = f"homeassistant/device/edgepose_{node}/config"
    sub = subscriber(mosquitto_broker, f"{prefix}/availability", f"{prefix}/snapshot", discovery)
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 10.0},
                           mqtt={"publish_snapshot": True, "home_assistant": True},
                           snapshots={"privacy": privacy, "cooldown_s": 0.5}))
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))
    image = decode(wait_msgs(sub, d, discovery)[0])["components"]["snapshot"]
    assert image["name"] == {"skeleton": "Snapshot (skeleton only)", "blur": "Snapshot (blurred background)",
                             "off": "Snapshot"}[privacy]
    sub.publish(f"{prefix}/cmd/snapshot", b"1")
    d.wait_until("a command snapshot", lambda: any("_command_" in p.name for p in d.snapshots()))
    published = wait_msgs(sub, d, f"{prefix}/snapshot", count=2)
    d.wait_snapshots(2)
    code, _ = d.terminate()
    assert code == 0, d.explain()
    files = d.snapshots() + [d.snapshot_dir / "latest.jpg"]
    for jpeg in [p.read_bytes() for p in files] + [bytes(m.payload) for m in sub.matching(f"{prefix}/snapshot")]:
        check_private_snapshot(jpeg, privacy)
    assert len(published) >= 2 and len(files) >= 3


# --- 3. two nodes, one broker --------------------------------------------------------------


def test_two_daemons_share_a_broker_without_interference(tmp_path, mosquitto_broker, subscriber, daemon):
    nodes = [node_id("a"), node_id("b")]
    sub = subscriber(mosquitto_broker, *(f"edgepose/{n}/#" for n in nodes))
    a, b = (daemon(demo_config(tmp_path, n, mosquitto_broker, source={"max_fps": 15.0},
                               snapshots=COMMAND_ONLY)) for n in nodes)
    for d in (a, b):
        wait_msgs(sub, d, payload_is(f"{d.prefix}/availability", b"online"))
    for d in (a, b):
        for msg in wait_msgs(sub, d, f"{d.prefix}/poses", count=10):
            check_poses(msg, d.node)

    sub.publish(f"{a.prefix}/cmd/snapshot", b"1")
    (snapshot,) = a.wait_snapshots(1)
    assert "command" in snapshot.name
    seen = len(sub.matching(f"{b.prefix}/poses"))
    wait_msgs(sub, b, f"{b.prefix}/poses", count=seen + 10)
    assert b.snapshots() == [], "node b took a snapshot commanded to node a"

    sub.publish(f"{b.prefix}/cmd/snapshot", b"1")
    b.wait_snapshots(1)
    seen = len(sub.matching(f"{a.prefix}/poses"))
    wait_msgs(sub, a, f"{a.prefix}/poses", count=seen + 10)
    assert len(a.snapshots()) == 1 and len(b.snapshots()) == 1

    for d in (a, b):
        code, _ = d.terminate()
        assert code == 0, d.explain()
        # Same client id or a shared session would show as connections taken over.
        assert "lost connection" not in d.log_text(), d.explain()
    for msg in sub.matching(lambda m: m.topic.endswith("/poses")):
        check_poses(msg, msg.topic.split("/")[1])
    for d in (a, b):
        wait_msgs(sub, d, payload_is(f"{d.prefix}/availability", b"offline"))


# --- 4. broker outages ---------------------------------------------------------------------


def test_camera_runs_through_broker_outages_and_state_is_republished(tmp_path, broker_factory, subscriber, daemon):
    broker = broker_factory(start=False)
    # One photo: the person count never changes, so a retained person_count after a
    # broker restart can only be the daemon re-sending its state on reconnect.
    photos = tmp_path / "one-photo"
    photos.mkdir()
    shutil.copy(DEMO_PHOTOS[0], photos)
    node = node_id("outage")
    prefix = f"edgepose/{node}"
    d = daemon(demo_config(
        tmp_path, node, broker,
        source={"uri": str(photos), "loop": True, "max_fps": 20.0},
        mqtt={"stats_interval_s": 0.5},
        snapshots={"interval_s": 0.2, "on_count_change": False, "cooldown_s": 0.0},
    ))

    d.wait_log("cannot reach broker")
    d.wait_snapshots(3)  # frames keep flowing with no broker
    counts = {p.stem.rsplit("_p", 1)[-1] for p in d.snapshots()}
    assert len(counts) == 1, f"one photo should give one person count, got {counts}"

    broker.start()
    sub = subscriber(broker, f"{prefix}/#")
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))
    for msg in wait_msgs(sub, d, f"{prefix}/poses", count=5):
        check_poses(msg, node)
    # Retained stats and person_count reach a subscriber that comes later.
    fresh = subscriber(broker, f"{prefix}/#")
    wait_msgs(fresh, d, payload_is(f"{prefix}/availability", b"online", retained=True))
    (count,) = wait_msgs(fresh, d, lambda m: m.topic == f"{prefix}/person_count" and m.retain)
    stats = check_stats(wait_msgs(fresh, d, lambda m: m.topic == f"{prefix}/stats" and m.retain)[0])
    assert stats["mqtt_dropped"] >= 1, "poses are dropped (and counted) while the broker is away"

    broker.restart()  # no persistence: the broker forgets every retained message
    sub = subscriber(broker, f"{prefix}/#")
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))
    wait_msgs(sub, d, f"{prefix}/poses", count=5)
    fresh = subscriber(broker, f"{prefix}/#")
    wait_msgs(fresh, d, payload_is(f"{prefix}/availability", b"online", retained=True))
    (again,) = wait_msgs(fresh, d, lambda m: m.topic == f"{prefix}/person_count" and m.retain)
    assert again.payload == count.payload
    check_stats(wait_msgs(fresh, d, lambda m: m.topic == f"{prefix}/stats" and m.retain)[0])

    code, _ = d.terminate()
    assert code == 0, d.explain()


# --- 5. a corrupt frame ----------------------------------------------------------------------


def test_corrupt_frame_is_counted_and_skipped(tmp_path, mosquitto_broker, subscriber, daemon):
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in DEMO_PHOTOS[:2]:
        shutil.copy(photo, photos)
    (photos / "000_random.jpg").write_bytes(np.random.default_rng(7).bytes(20_000))
    whole = DEMO_PHOTOS[2].read_bytes()
    (photos / "001_truncated.jpg").write_bytes(whole[: len(whole) // 3])
    node = node_id("corrupt")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/poses", f"{prefix}/stats")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker,
                           source={"uri": str(photos), "loop": True, "max_fps": 30.0},
                           mqtt={"stats_interval_s": 0.2}))

    stats = wait_msgs(sub, d, lambda m: m.topic == f"{prefix}/stats" and decode(m)["corrupt_frames"] >= 2)
    body = check_stats(stats[0])
    assert body["source_errors"] == 0, "a bad file is skipped, the folder is not reopened"
    seen = len(sub.matching(f"{prefix}/poses"))
    for msg in wait_msgs(sub, d, f"{prefix}/poses", count=seen + 10):
        check_poses(msg, node)
    later = wait_msgs(sub, d, lambda m: m.topic == f"{prefix}/stats" and decode(m)["frames"] > body["frames"] + 5)
    assert decode(later[0])["corrupt_frames"] > body["corrupt_frames"], "every pass over the folder meets them"

    code, _ = d.terminate()
    assert code == 0, d.explain()


# --- 6. systemd notifications -----------------------------------------------------------------


def watchdog_times(listener: NotifyListener) -> list[float]:
    with listener._cond:
        return [t for d, t in zip(listener.datagrams, listener.times) if "WATCHDOG=1" in d.split("\n")]


def test_systemd_ready_watchdog_heartbeat_and_stopping(tmp_path, mosquitto_broker, subscriber, daemon):
    """READY=1, then WATCHDOG=1 at half the watchdog interval from the heartbeat, STOPPING=1 last."""
    listener = NotifyListener(tmp_path)
    try:
        node = node_id("notify")
        prefix = f"edgepose/{node}"
        sub = subscriber(mosquitto_broker, f"{prefix}/poses")
        d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 30.0}),
                   env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000"})
        listener.wait_for("READY=1")
        wait_msgs(sub, d, f"{prefix}/poses", count=15)
        d.wait_until("4 watchdog pings", lambda: len(watchdog_times(listener)) >= 4)
        code, _ = d.terminate()
        assert code == 0, d.explain()
    finally:
        listener.close()

    lines = listener.lines()
    ready = lines.index("READY=1")
    watchdogs = [i for i, line in enumerate(lines) if line == "WATCHDOG=1"]
    assert watchdogs and watchdogs[0] > ready, f"WATCHDOG=1 before READY=1: {lines[:10]}"
    times = watchdog_times(listener)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 1.0, f"a gap of {max(gaps):.2f} s would let a 1 s watchdog fire"
    assert "STOPPING=1" in lines, lines[-5:]
    assert lines.index("STOPPING=1") > watchdogs[-1], f"STOPPING=1 must come last: {lines[-5:]}"
    assert any(line.startswith("STATUS=running") for line in lines[ready:]), lines[:10]


def test_sigterm_before_the_first_frame_stops_promptly(tmp_path, daemon):
    """A source with no frames (camera missing) must not hold a stop for the first-frame wait."""
    empty = tmp_path / "no-photos"
    empty.mkdir()
    node = node_id("noframes")
    d = daemon(demo_config(tmp_path, node, None, mqtt={"enabled": False},
                           source={"uri": str(empty), "reopen_delay_s": 0.2}))
    d.wait_log("source failed")
    code, took = d.terminate()
    assert code == 0, d.explain()
    assert took < STOP_S


def test_sigterm_with_the_broker_down_stops_promptly(tmp_path, broker_factory, daemon):
    """Stopping must not wait for a broker that is not there (no offline to deliver)."""
    broker = broker_factory(start=False)
    d = daemon(demo_config(tmp_path, node_id("nobroker"), broker, source={"max_fps": 30.0}))
    d.wait_log("cannot reach broker")
    d.wait_snapshots(1)
    code, took = d.terminate()
    assert code == 0, d.explain()
    assert took < STOP_S


# --- 7. config errors --------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = WAIT_S, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepose", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=cwd, stdin=subprocess.DEVNULL)


def test_run_with_an_unknown_key_exits_78_naming_it(tmp_path):
    config = demo_config(tmp_path, node_id("badkey"), None, mqtt={"hots": "broker.lan"},
                         snapshots={"intervall_s": 5})
    done = run_cli("run", "--config", str(write_config(tmp_path / "bad.toml", config)), cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "mqtt.hots: unknown key; did you mean mqtt.host?" in done.stderr, done.stderr
    assert "snapshots.intervall_s: unknown key; did you mean snapshots.interval_s?" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_on_a_missing_video_file_exits_with_the_source_error(tmp_path):
    """Not retried for ever, and not "stopped after 0 frames" with exit 0: the file is
    named and the exit code is the source's (69), long before --duration is up."""
    missing = tmp_path / "missing.mp4"
    config = demo_config(tmp_path, node_id("nofile"), None, mqtt={"enabled": False})
    done = run_cli("run", "--config", str(write_config(tmp_path / "c.toml", config)), "--source", str(missing),
                   "--duration", "600", cwd=tmp_path)
    assert done.returncode == 69, done.stderr
    assert f"video file {missing}: no such file" in done.stderr
    assert "reopening" not in done.stderr and "Traceback" not in done.stderr


def test_duration_also_bounds_the_wait_for_a_first_frame(tmp_path):
    """A source that delivers nothing (an empty folder, retried like a camera that is
    down) must not hold --duration 1 for the 20 s first-frame wait: the run is over
    well inside half of that (the subprocess deadline), with exit 0 as --duration says."""
    from edgepose.daemon import FIRST_FRAME_TIMEOUT_S

    empty = tmp_path / "no-photos"
    empty.mkdir()
    config = demo_config(tmp_path, node_id("nofirst"), None, mqtt={"enabled": False},
                         source={"uri": str(empty), "reopen_delay_s": 0.2})
    done = run_cli("run", "--config", str(write_config(tmp_path / "c.toml", config)), "--duration", "1",
                   cwd=tmp_path, timeout=FIRST_FRAME_TIMEOUT_S / 2)
    assert done.returncode == 0, done.stderr
    assert "source failed" in done.stderr and "stopped after 0 frames" in done.stderr


def test_run_with_a_missing_model_exits_78_naming_the_file(tmp_path):
    missing = tmp_path / "nonexistent.tflite"
    config = demo_config(tmp_path, node_id("nomodel"), None, model={"path": str(missing)})
    done = run_cli("run", "--config", str(write_config(tmp_path / "c.toml", config)), cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert str(missing) in done.stderr and "does not exist" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# --- 8. Home Assistant across restarts, restarts that do not lie, consistent presence -------

LEFT_RIGHT = [  # two occupancy zones that tile the frame
    {"name": "left", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]},
    {"name": "right", "points": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]},
]


def with_zones(config: dict[str, Any], zones: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(config, zones=zones)


def retained(broker: Broker, topic: str, subscriber) -> paho.MQTTMessage | None:
    """The retained message on `topic` now, or None: a new subscriber gets it right after
    its SUBACK; a message of ours published after subscribing marks the end of them."""
    fresh = subscriber(broker, topic, "edgepose-test/marker")
    marker = uuid.uuid4().hex.encode()
    fresh.publish("edgepose-test/marker", marker)
    fresh.wait_for(lambda m: m.topic == "edgepose-test/marker" and m.payload == marker)
    got = [m for m in fresh.matching(topic) if m.retain]
    return got[-1] if got else None


def discovery_of(broker: Broker, node: str, subscriber) -> dict[str, Any]:
    msg = retained(broker, f"homeassistant/device/edgepose_{node}/config", subscriber)
    assert msg is not None, "no retained discovery config"
    return json.loads(msg.payload)


@pytest.mark.parametrize("memory", ["state file", "broker only"])
def test_a_zone_removed_before_a_restart_leaves_no_stale_entity(tmp_path, mosquitto_broker, subscriber, daemon,
                                                                memory):
    """Home Assistant removes one component of a device only when it is sent with nothing
    but its platform. The node remembers what it announced (its state file; with the
    file gone, the broker's retained config) and removes what the config no longer has."""
    node = node_id("zones")
    prefix = f"edgepose/{node}"
    topic = f"homeassistant/device/edgepose_{node}/config"
    config = demo_config(tmp_path, node, mosquitto_broker)
    sub = subscriber(mosquitto_broker, topic)
    first = daemon(with_zones(config, LEFT_RIGHT))
    wait_msgs(sub, first, topic)
    comps = discovery_of(mosquitto_broker, node, subscriber)["components"]
    assert comps["zone_right_count"]["value_template"] == "{{ value_json.zones['right'].person_count }}"
    assert comps["zone_right_presence_event"]["platform"] == "event"
    assert first.terminate()[0] == 0, first.explain()
    state_file = Path(config["node"]["state_file"])
    assert "zone_right_count" in state_file.read_text()
    if memory == "broker only":
        state_file.unlink()

    second = daemon(with_zones(config, LEFT_RIGHT[:1]))
    # With the state file, its first announcement removes the zone; without, the node
    # reads the broker's retained config after connecting, then announces again.
    wait_msgs(sub, second, topic, count=2 if memory == "state file" else 3)
    if memory == "broker only":
        second.wait_log("Home Assistant: removing 3 entities no longer configured")
    after = discovery_of(mosquitto_broker, node, subscriber)
    comps = after["components"]
    for key, platform in (("zone_right_occupied", "binary_sensor"), ("zone_right_count", "sensor"),
                          ("zone_right_presence_event", "event")):
        assert comps.get(key, {"platform": platform}) == {"platform": platform}, comps.get(key)
    assert "zones['right']" not in json.dumps(after), "no template for the removed zone is left"
    assert comps["zone_left_count"]["name"] == "Left person count"
    assert second.terminate()[0] == 0, second.explain()
    remembered = json.loads(state_file.read_text())["discovery"][0]["payload"]["components"]
    assert remembered.get("zone_right_count", {"platform": "sensor"}) == {"platform": "sensor"}
    assert len(sub.matching(topic)) == (2 if memory == "state file" else 3), "announced once per start, plus the correction"


def _photo_folder(tmp_path: Path, name: str, photo: Path | None, count: int = 1) -> Path:
    """A folder of `count` copies of `photo` (None: a grey frame, nobody in view)."""
    folder = tmp_path / name
    folder.mkdir()
    for i in range(count):
        if photo is None:
            Image.new("RGB", (640, 425), (128, 128, 128)).save(folder / f"{i:03d}.jpg")
        else:
            shutil.copy(photo, folder / f"{i:03d}.jpg")
    return folder


def _events(sub, prefix: str) -> list[dict[str, Any]]:
    return [decode(m) for m in sub.matching(f"{prefix}/events")]


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_restart_with_people_in_view_publishes_no_empty_room_and_no_new_entries(
        tmp_path, mosquitto_broker, subscriber, daemon, stop):
    """The retained count and state stay until the new run has looked for presence.enter_s,
    and the people remembered from before the restart are taken over by their new tracks:
    no 0, no person_entered for them, after a clean stop or a crash."""
    node = node_id("restart")
    prefix = f"edgepose/{node}"
    people = _photo_folder(tmp_path, "people", DEMO_PHOTOS[0])  # the skier, always in view
    config = demo_config(tmp_path, node, mosquitto_broker, source={"uri": str(people), "loop": True,
                                                                   "max_fps": 10.0})
    sub = subscriber(mosquitto_broker, f"{prefix}/#")
    first = daemon(config)
    entered = wait_msgs(sub, first, lambda m: m.topic == f"{prefix}/events" and decode(m)["type"] == "person_entered")
    counted = wait_msgs(sub, first, lambda m: m.topic == f"{prefix}/person_count" and m.payload != b"0")[0].payload
    if stop == "SIGTERM":
        assert first.terminate()[0] == 0, first.explain()
    else:
        first.proc.kill()
        first.proc.wait(STOP_S)
    # Events of the first run still in its outbox are delivered again (at least once,
    # same id): a subscriber drops them by id, and so does this test.
    earlier = {e["id"] for e in _events(sub, prefix)}

    after = subscriber(mosquitto_broker, f"{prefix}/#")
    second = daemon(config)
    wait_msgs(after, second, payload_is(f"{prefix}/availability", b"online", retained=False))
    wait_msgs(after, second, f"{prefix}/poses", count=30)  # 3 s: six times presence.enter_s
    assert second.terminate()[0] == 0, second.explain()
    wait_msgs(after, second, payload_is(f"{prefix}/availability", b"offline", retained=False))

    live = [m for m in after.matching(lambda m: not m.retain)]
    counts = [m.payload for m in live if m.topic == f"{prefix}/person_count"]
    assert counts in ([], [counted]), f"the count went {counts} across the restart (was {counted!r})"
    states = [decode(m) for m in live if m.topic == f"{prefix}/state"]
    assert all(s["person_count"] == int(counted) for s in states), states
    events = [e for e in _events(after, prefix) if e["id"] not in earlier]
    assert not [e for e in events if e["type"] == "person_entered"], f"announced again: {events}"
    assert not [e for e in events if e["type"] == "person_left"], events
    assert "late will" not in second.log_text(), second.explain()
    ids = {e["track_id"] for e in _events(sub, prefix) if e["type"] == "person_entered"}
    assert {decode(m)["track_id"] for m in entered} <= ids


def test_people_gone_after_a_restart_leave_once_the_hold_runs_out(tmp_path, mosquitto_broker, subscriber, daemon):
    node = node_id("gone")
    prefix = f"edgepose/{node}"
    people = _photo_folder(tmp_path, "people", DEMO_PHOTOS[0])
    empty = _photo_folder(tmp_path, "empty", None)
    config = demo_config(tmp_path, node, mosquitto_broker, presence={"enter_s": 0.3, "hold_s": 1.0},
                         source={"uri": str(people), "loop": True, "max_fps": 10.0})
    sub = subscriber(mosquitto_broker, f"{prefix}/events", f"{prefix}/person_count")
    first = daemon(config)
    wait_msgs(sub, first, lambda m: m.topic == f"{prefix}/person_count" and m.payload != b"0")
    assert first.terminate()[0] == 0, first.explain()
    entered = {(e["track_id"], e["zone"]) for e in _events(sub, prefix) if e["type"] == "person_entered"}
    counts_before = len(sub.matching(f"{prefix}/person_count"))

    second = daemon(_merge(config, {"source": {"uri": str(empty)}}))
    # Events go through the outbox, the count straight out: either may come first.
    wait_msgs(sub, second, payload_is(f"{prefix}/person_count", b"0"))
    wait_msgs(sub, second, lambda m: m.topic == f"{prefix}/events" and decode(m)["type"] == "person_left",
              count=len(entered))
    left = [e for e in _events(sub, prefix) if e["type"] == "person_left"]
    assert {(e["track_id"], e["zone"]) for e in left} == entered, (left, entered)
    # The remembered count stands (re-published or not) until the hold runs out, then 0.
    assert [m.payload for m in sub.matching(f"{prefix}/person_count")][counts_before:] in ([b"0"], [b"1", b"0"])
    assert second.terminate()[0] == 0, second.explain()


def test_presence_events_and_zone_counts_agree_with_themselves_on_the_demo(
        tmp_path, mosquitto_broker, subscriber, daemon):
    """The demo's photos change every second: people come and go and tracks are lost and
    found. Every person_left follows a person_entered for that id and area, and the zone
    counts (two zones tiling the frame) never add up to more than the whole frame's."""
    node = node_id("consistent")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/events", f"{prefix}/state")
    d = daemon(with_zones(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 10.0},
                                      presence={"enter_s": 0.3, "hold_s": 1.0}), LEFT_RIGHT))
    wait_msgs(sub, d, lambda m: m.topic == f"{prefix}/events" and decode(m)["type"] == "person_left"
              and decode(m)["zone"] is None, count=8, timeout=60.0)
    assert d.terminate()[0] == 0, d.explain()
    inside: set[tuple[int, str | None]] = set()
    for e in _events(sub, prefix):
        key = (e["track_id"], e["zone"])
        if e["type"] == "person_entered":
            assert key not in inside, f"{key} entered twice"
            inside.add(key)
        elif e["type"] == "person_left":
            assert key in inside, f"{key} left without a person_entered"
            inside.discard(key)
    states = [decode(m) for m in sub.matching(f"{prefix}/state")]
    assert states
    for state in states:
        zones = sum(z["person_count"] for z in state["zones"].values())
        assert zones <= state["person_count"], state


def test_ack_fall_with_no_fall_on_is_logged_counted_and_answered(tmp_path, mosquitto_broker, subscriber, daemon):
    """Its own rate limit, not the snapshot cooldown (5 s): a second press a second later counts."""
    node = node_id("ack")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/availability", f"{prefix}/reply", f"{prefix}/stats")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, mqtt={"stats_interval_s": 0.5}))
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))
    sub.publish(f"{prefix}/cmd/ack_fall", b"ack")
    (first,) = wait_msgs(sub, d, f"{prefix}/reply")
    threading.Event().wait(1.0)  # the second press, a second later (the stimulus, not a sync)
    sub.publish(f"{prefix}/cmd/ack_fall", b"ack")
    replies = [decode(m) for m in wait_msgs(sub, d, f"{prefix}/reply", count=2)]
    schema = load_schema("reply")
    for reply in replies:
        jsonschema.validate(reply, schema)
        assert (reply["command"], reply["result"], reply["falls_cleared"]) == ("ack_fall", "no_fall", 0)
    assert not first.retain
    wait_msgs(sub, d, lambda m: m.topic == f"{prefix}/stats" and decode(m)["fall_acks_without_fall"] == 2)
    assert d.log_text().count("ack_fall: no fall is on; nothing to acknowledge") == 2, d.explain()
    assert d.terminate()[0] == 0, d.explain()


def test_home_assistant_discovery_is_on_by_default(tmp_path, mosquitto_broker, subscriber, daemon):
    node = node_id("ha")
    topic = f"homeassistant/device/edgepose_{node}/config"
    sub = subscriber(mosquitto_broker, topic, f"edgepose/{node}/stats")
    config = demo_config(tmp_path, node, mosquitto_broker)
    assert "home_assistant" not in config["mqtt"], "the demo relies on the default"
    d = daemon(config)
    (msg,) = wait_msgs(sub, d, topic)
    payload = json.loads(msg.payload)
    assert retained(mosquitto_broker, topic, subscriber) is not None
    assert payload["components"]["person_count"]["unit_of_measurement"] == "people"
    assert payload["components"]["started"]["device_class"] == "timestamp"
    # Stats come soon after the start, not one stats interval (60 s) later.
    stats = check_stats(wait_msgs(sub, d, f"edgepose/{node}/stats", timeout=15.0)[0])
    assert stats["fps"] > 0 and stats["uptime_s"] > 0 and stats["started_at"].endswith("Z")
    assert d.terminate()[0] == 0, d.explain()
    off = demo_config(tmp_path, node_id("noha"), mosquitto_broker, mqtt={"home_assistant": False})
    quiet = subscriber(mosquitto_broker, f"homeassistant/device/edgepose_{off['node']['id']}/config",
                       f"edgepose/{off['node']['id']}/availability")
    d = daemon(off)
    wait_msgs(quiet, d, f"edgepose/{off['node']['id']}/availability")
    assert d.terminate()[0] == 0, d.explain()
    wait_msgs(quiet, d, payload_is(f"edgepose/{off['node']['id']}/availability", b"offline"))
    assert not quiet.matching(lambda m: m.topic.startswith("homeassistant/")), "announced with the key off"
