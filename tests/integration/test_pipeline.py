"""The pipeline's shape, end to end against a real broker: any estimator, where files are
written, and the behaviours a new user hit (empty config, loop = false, max_bytes = 0,
broker URLs)."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from edgepose.config import load_config
from edgepose.constants import NUM_PARTS
from edgepose.core import Poses
from edgepose.daemon import run_daemon
from edgepose.estimators import EstimatorInfo

from .test_daemon import (  # noqa: F401 - daemon is a fixture
    DEMO_PHOTOS,
    daemon,
    POSES_SCHEMA,
    WAIT_S,
    check_poses,
    decode,
    demo_config,
    node_id,
    payload_is,
    run_cli,
    wait_msgs,
    write_config,
)

pytestmark = pytest.mark.integration


class FixedPosesEstimator:
    """A deliberately trivial model: one or two people at fixed places, with boxes.

    It imports nothing of PoseNet: the daemon must run it through every stage
    and sink as it runs any model.
    """

    def __init__(self) -> None:
        self.info = EstimatorInfo(name="fixed", family="test", input_size=(64, 48), precision="float32",
                                  accelerator="cpu", runtime="none", path=Path("fixed.tflite"))
        self.last_timing = {"preprocess": 0.0, "invoke": 0.0, "decode": 0.0}
        self.calls = 0
        self.model = None

    def estimate(self, rgb: np.ndarray) -> Poses:
        self.calls += 1
        n = 1 + self.calls % 2  # the count changes every frame: count-change snapshots
        h, w = rgb.shape[:2]
        xy = np.zeros((n, NUM_PARTS, 2), np.float32)
        xy[..., 0] = np.linspace(0.2, 0.4, NUM_PARTS) * w
        xy[..., 1] = np.linspace(0.1, 0.9, NUM_PARTS) * h
        boxes = np.tile(np.float32([0.1 * w, 0.05 * h, 0.5 * w, 0.95 * h]), (n, 1))
        return Poses(xy, np.full((n, NUM_PARTS), 0.9, np.float32), np.full(n, 0.8, np.float32), boxes=boxes)

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def _in_process(config, estimator, stop: threading.Event) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def body() -> None:
        outcome["code"] = run_daemon(config, stop=stop, estimator=estimator)

    thread = threading.Thread(target=body, name="inference", daemon=True)
    thread.start()
    return thread, outcome


def test_a_trivial_estimator_runs_through_the_whole_daemon(tmp_path, mosquitto_broker, subscriber):
    """The interface is model-agnostic: no PoseNet code, the real broker, every sink."""
    node = node_id("fixed")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/#")
    # One scene (a photo, looped): the demo source would cut to a new scene every few frames.
    scene = tmp_path / "scene"
    scene.mkdir()
    shutil.copy(DEMO_PHOTOS[0], scene)
    config = load_config(write_config(tmp_path / "c.toml", demo_config(
        tmp_path, node, mosquitto_broker, mqtt={"stats_interval_s": 0.2}, snapshots={"cooldown_s": 0.0},
        source={"uri": str(scene), "loop": True})))
    estimator, stop = FixedPosesEstimator(), threading.Event()
    thread, outcome = _in_process(config, estimator, stop)
    try:
        poses = sub.wait_for(f"{prefix}/poses", 5, WAIT_S)
        for msg in poses:
            body = decode(msg)
            jsonschema.validate(body, POSES_SCHEMA)
            assert body["model"] == "fixed 64x48"
            assert body["poses"][0]["box"] == [0.1, 0.05, 0.5, 0.95]  # the model's own box
        stats = decode(sub.wait_for(lambda m: m.topic == f"{prefix}/stats", 1, WAIT_S)[0])
        assert stats["model"] == "fixed 64x48" and stats["runtime"] == "none"
        # The second person shows every other frame: the debounced count settles on 2
        # and the retained count does not flicker with the frames.
        sub.wait_for(payload_is(f"{prefix}/person_count", b"2"), 1, WAIT_S)
        seen = len(sub.matching(f"{prefix}/poses"))
        sub.wait_for(f"{prefix}/poses", seen + 20, WAIT_S)
        counts = [m.payload for m in sub.matching(f"{prefix}/person_count")]
        # Nothing before the first presence.enter_s has passed: no 0 from a cold start.
        assert counts in ([b"2"], [b"1", b"2"]), counts
        # Events leave through the disk outbox's thread: they may trail the poses.
        entered = [decode(m) for m in sub.wait_for(f"{prefix}/events", 2, WAIT_S)]
        assert [e["type"] for e in entered][:2] == ["person_entered", "person_entered"]
        ids = {pose["id"] for m in sub.matching(f"{prefix}/poses") for pose in decode(m)["poses"]}
        assert ids == {1, 2}, "the same two people keep their two ids"
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert outcome == {"code": 0}
    assert list(Path(config.snapshots.dir).glob("*_count_change_p*.jpg")), "snapshots of the stand-in's poses"


_WRITES: list[tuple[str, str]] = []
_RECORDING = threading.Event()


def _audit(event: str, args: tuple) -> None:
    """Every file opened for writing while recording: (thread name, path)."""
    if not _RECORDING.is_set() or event != "open":
        return
    path, mode, flags = args
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & 0o3 != 0  # O_WRONLY or O_RDWR
    )
    if writing and isinstance(path, (str, bytes, Path)):
        _WRITES.append((threading.current_thread().name, str(path)))


def test_the_inference_thread_never_writes_a_file(tmp_path):
    """Snapshots are rendered, encoded and written on their own thread (audit hook on open())."""
    sys.addaudithook(_audit)
    config = load_config(write_config(tmp_path / "c.toml", demo_config(
        tmp_path, node_id("nowrite"), None, mqtt={"enabled": False},
        snapshots={"cooldown_s": 0.0, "interval_s": 0.05})))
    estimator, stop = FixedPosesEstimator(), threading.Event()
    switch_interval = sys.getswitchinterval()
    _WRITES.clear()
    _RECORDING.set()
    try:
        thread, outcome = _in_process(config, estimator, stop)
        deadline = threading.Event()
        snapshots = Path(config.snapshots.dir)
        for _ in range(int(WAIT_S / 0.05)):
            if len(list(snapshots.glob("*_interval_p*.jpg"))) >= 5:
                break
            deadline.wait(0.05)  # polling the disk with a deadline, not synchronising
        stop.set()
        thread.join(WAIT_S)
    finally:
        _RECORDING.clear()
    assert outcome == {"code": 0}
    assert sys.getswitchinterval() == switch_interval, "the daemon's switch interval is its own"
    # The one write before the first frame: check_writable's start-up probe of the folder.
    written = [(name, path) for name, path in _WRITES
               if path.startswith(str(snapshots)) and ".edgepose-write-test-" not in path]
    assert len(written) >= 5, _WRITES
    assert {name for name, _ in written} == {"edgepose-snapshots"}, written
    assert not [w for w in _WRITES if w[0] == "inference" and ".edgepose-write-test-" not in w[1]], \
        "the inference thread opened a file for writing"


def test_empty_config_without_a_camera_exits_69_about_the_camera(tmp_path):
    """The bug: an empty config ran the bundled demo photos and published their poses."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    done = run_cli("run", "--config", str(empty), "--broker", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 69, done.stderr
    assert "picamera2" in done.stderr and "source.uri" in done.stderr, done.stderr
    assert "demo photos" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_max_bytes_zero_runs_and_keeps_snapshots(tmp_path, mosquitto_broker, subscriber, daemon):
    node = node_id("nocap")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"max_fps": 30.0},
                           snapshots={"max_bytes": 0, "cooldown_s": 0.0, "interval_s": 0.1, "keep": 3}))
    d.wait_snapshots(3)
    code, _ = d.terminate()
    assert code == 0, d.explain()
    assert len(d.snapshots()) == 3


def test_a_folder_with_loop_false_is_processed_to_its_end_then_stops(tmp_path, mosquitto_broker, subscriber, daemon):
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in DEMO_PHOTOS[:3]:
        shutil.copy(photo, photos)
    node = node_id("once")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/poses", f"{prefix}/availability")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker, source={"uri": str(photos), "loop": False}))
    code = d.proc.wait(WAIT_S)
    assert code == 0, d.explain()
    frames = [check_poses(m, node)["frame"] for m in sub.matching(f"{prefix}/poses")]
    assert frames == [0, 1, 2], "every photo once, in order, none dropped"
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"offline"))
    assert "reopening" not in d.log_text() and "end of stream" in d.log_text()


@pytest.mark.parametrize("scheme", ["mqtt://", "tcp://", ""])
def test_broker_given_as_a_url_connects(tmp_path, mosquitto_broker, subscriber, daemon, scheme):
    """The bug: --broker mqtt://host:port was taken as a host name ("cannot resolve")."""
    node = node_id("url")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/availability", f"{prefix}/poses")
    config = demo_config(tmp_path, node, None, mqtt={"host": "broker.invalid", "port": 1})
    d = daemon(config, args=("--broker", f"{scheme}{mosquitto_broker.host}:{mosquitto_broker.port}"))
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"online"))
    wait_msgs(sub, d, f"{prefix}/poses")
    code, _ = d.terminate()
    assert code == 0, d.explain()


def test_people_entering_and_leaving_raise_events_in_order_after_the_hold_time(
        tmp_path, mosquitto_broker, subscriber, daemon):
    """Someone in view for 2 s, then an empty room: person_entered, then person_left only
    after presence.hold_s; the retained count follows; one id for the one person."""
    photos = tmp_path / "frames"
    photos.mkdir()
    skier = DEMO_PHOTOS[0]  # 000000000785: one skier
    for i in range(20):
        shutil.copy(skier, photos / f"{i:03d}.jpg")
    for i in range(20, 40):
        Image.new("RGB", (640, 425), (128, 128, 128)).save(photos / f"{i:03d}.jpg")
    node = node_id("presence")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/#")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker,
                           source={"uri": str(photos), "loop": False, "max_fps": 10.0},
                           presence={"enter_s": 0.3, "hold_s": 1.0}))
    assert d.proc.wait(WAIT_S * 2) == 0, d.explain()
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"offline"))

    events = [decode(m) for m in sub.matching(f"{prefix}/events")]
    node_events = [e for e in events if e["zone"] is None]
    assert [e["type"] for e in node_events] == ["person_entered", "person_left"], events
    assert len({e["id"] for e in events}) == len(events), "event ids are unique"
    poses = [decode(m) for m in sub.matching(f"{prefix}/poses")]
    seen = [p for p in poses if p["poses"]]
    assert {pose["id"] for p in seen for pose in p["poses"]} == {node_events[0]["track_id"]}
    last_seen = max(p["ts"] for p in seen)
    left = node_events[1]
    gap = (datetime.fromisoformat(left["ts"].replace("Z", "+00:00"))
           - datetime.fromisoformat(last_seen.replace("Z", "+00:00"))).total_seconds()
    assert gap >= 1.0 - 0.05, f"left {gap:.2f} s after last seen: before the hold time"
    counts = [m.payload for m in sub.matching(f"{prefix}/person_count")]
    assert counts == [b"1", b"0"], counts  # the skier is in view from the start: never a 0 before


def test_replay_prints_the_events_of_a_recording(tmp_path, mosquitto_broker, daemon):
    """run --record writes what replay reads; replay raises the same presence events."""
    photos = tmp_path / "frames"
    photos.mkdir()
    for i in range(15):
        shutil.copy(DEMO_PHOTOS[0], photos / f"{i:03d}.jpg")
    recording = tmp_path / "poses.jsonl"
    # Every frame recorded: no motion gate (it would run this still scene twice a second).
    d = daemon(demo_config(tmp_path, node_id("rec"), mosquitto_broker,
                           source={"uri": str(photos), "loop": False, "max_fps": 10.0},
                           motion={"enabled": False}),
               args=("--record", str(recording)))
    assert d.proc.wait(WAIT_S) == 0, d.explain()
    assert len(recording.read_text().splitlines()) == 15
    done = run_cli("replay", str(recording), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in events] == ["person_entered"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"v": 2}\n')
    done = run_cli("replay", str(bad), cwd=tmp_path)
    assert done.returncode == 65 and "line 1" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_motion_gate_skips_a_static_scene_and_runs_on_the_first_frame_that_changes(
        tmp_path, mosquitto_broker, subscriber, daemon):
    frames = tmp_path / "frames"
    frames.mkdir()
    empty = Image.new("RGB", (640, 425), (120, 118, 110))
    for i in range(30):
        empty.save(frames / f"{i:03d}.jpg")
    for i in range(30, 35):
        shutil.copy(DEMO_PHOTOS[0], frames / f"{i:03d}.jpg")  # the skier walks in
    node = node_id("gate")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/poses", f"{prefix}/stats")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker,
                           source={"uri": str(frames), "loop": False, "max_fps": 10.0},
                           motion={"idle_interval_s": 2.0}, mqtt={"stats_interval_s": 0.5}))
    assert d.proc.wait(WAIT_S) == 0, d.explain()
    done = [decode(m)["frame"] for m in sub.matching(f"{prefix}/poses")]
    # 3 s of a still, empty room at 10 fps: the first frame, then one every 2 s.
    early = [f for f in done if f < 30]
    assert len(early) == 2 and early[0] == 0 and 19 <= early[1] <= 21, done
    assert done[-5:] == [30, 31, 32, 33, 34], "the frame that changed runs at once, then every frame"
    stats = [decode(m) for m in sub.matching(f"{prefix}/stats")]
    assert max(s["gated_frames"] for s in stats) >= 25, stats[-1]
