"""`edgepose check`: one line per part a user can act on, and the exit code systemd needs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import free_port
from .test_daemon import EXIT_CONFIG, WAIT_S, child_env, demo_config, node_id, write_config

pytestmark = pytest.mark.integration

EXIT_FAILURE = 1


def check(tmp_path: Path, config: dict, *extra: str) -> tuple[int, list[str]]:
    """Run `edgepose check` on `config`; (exit code, output lines)."""
    path = write_config(tmp_path / "check.toml", config)
    done = subprocess.run([sys.executable, "-m", "edgepose", "check", "--config", str(path), *extra],
                          capture_output=True, text=True, timeout=WAIT_S, env=child_env(), cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.splitlines()


def line(lines: list[str], part: str) -> str:
    found = [entry for entry in lines if entry.startswith(f"{part}: ")]
    assert len(found) == 1, f"expected one {part!r} line in {lines}"
    return found[0]


def test_all_good(tmp_path, mosquitto_broker):
    config = demo_config(tmp_path, node_id("chk"), mosquitto_broker)
    code, lines = check(tmp_path, config)
    assert code == 0, lines
    assert line(lines, "config") == f"config: ok ({tmp_path / 'check.toml'})"
    assert line(lines, "model").startswith("model: ok (")
    assert "cpu" in line(lines, "model") and "movenet_thunder_int8" in line(lines, "model")
    assert "people found by" in line(lines, "model") and "movenet_multipose_int8" in line(lines, "model")
    assert line(lines, "source").startswith("source: ok ") and "demo" in line(lines, "source")
    where = mosquitto_broker.address
    assert line(lines, "broker") == f"broker: ok connected to {where} (MQTT 3.1.1)"
    assert line(lines, "snapshots") == f"snapshots: ok ({config['snapshots']['dir']})"
    assert not any("FAIL" in entry for entry in lines), lines
    assert not list(Path(config["snapshots"]["dir"]).iterdir()), "check must leave no files behind"


def test_broker_not_listening_fails_naming_host_and_port(tmp_path, mosquitto_broker):
    port = free_port()
    config = demo_config(tmp_path, node_id("chk"), mosquitto_broker, mqtt={"host": "127.0.0.1", "port": port})
    code, lines = check(tmp_path, config)
    assert code == EXIT_FAILURE, lines
    assert line(lines, "broker") == f"broker: FAIL cannot reach broker 127.0.0.1:{port} (connection refused)"
    for part in ("config", "model", "source", "snapshots"):
        assert ": ok" in line(lines, part), "the other checks still run and pass"


def test_broker_override_on_the_command_line_is_what_gets_probed(tmp_path, mosquitto_broker):
    port = free_port()
    config = demo_config(tmp_path, node_id("chk"), mosquitto_broker)
    code, lines = check(tmp_path, config, "--broker", f"127.0.0.1:{port}")
    assert code == EXIT_FAILURE, lines
    assert f"127.0.0.1:{port}" in line(lines, "broker"), lines


def test_missing_model_fails_naming_the_file(tmp_path, mosquitto_broker):
    missing = tmp_path / "nonexistent.tflite"
    config = demo_config(tmp_path, node_id("chk"), mosquitto_broker, model={"path": str(missing)})
    code, lines = check(tmp_path, config)
    assert code == EXIT_FAILURE, lines
    model = line(lines, "model")
    assert model.startswith(f"model: FAIL model.path: {missing} does not exist"), model
    assert line(lines, "broker").startswith("broker: ok"), "one failure does not hide the rest"


def test_unknown_key_exits_78_naming_the_key_path(tmp_path, mosquitto_broker):
    config = demo_config(tmp_path, node_id("chk"), mosquitto_broker, mqtt={"hots": "broker.lan"})
    code, lines = check(tmp_path, config)
    assert code == EXIT_CONFIG, lines
    assert lines[0] == "config: FAIL", lines
    assert "  mqtt.hots: unknown key; did you mean mqtt.host?" in lines, lines
    assert not any(entry.startswith(("model:", "broker:")) for entry in lines), "nothing else is checked"


def test_unwritable_snapshot_dir_fails_naming_it(tmp_path, mosquitto_broker):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the snapshot folder's parent should be")
    config = demo_config(tmp_path, node_id("chk"), mosquitto_broker, snapshots={"dir": str(blocker / "snaps")})
    code, lines = check(tmp_path, config)
    assert code == EXIT_FAILURE, lines
    assert line(lines, "snapshots").startswith(f"snapshots: FAIL cannot write to {blocker / 'snaps'}: "), lines


@pytest.fixture
def running_daemon(tmp_path, mosquitto_broker):
    """A real `edgepose run` on this machine, as the service would be; yields
    (process, config); its source defaults to the demo."""
    started: list[subprocess.Popen] = []

    def start(**tables) -> subprocess.Popen:
        config = demo_config(tmp_path, node_id("held"), mosquitto_broker, **tables)
        path = write_config(tmp_path / f"{config['node']['id']}.toml", config)
        proc = subprocess.Popen([sys.executable, "-m", "edgepose", "run", "--config", str(path)],
                                cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(WAIT_S)


def wait_until(what: str, predicate, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S} s"
        time.sleep(0.05)  # polling /proc with a deadline, not synchronisation


def test_check_beside_a_running_daemon_finds_it(running_daemon):
    """`edgepose check` on a node where the service runs sees the service's process (so a
    camera or Coral it holds can be reported as held, not broken)."""
    from edgepose.cli.check import running_daemons

    proc = running_daemon()
    wait_until("daemon in /proc", lambda: proc.pid in running_daemons(), proc)
    proc.terminate()
    proc.wait(WAIT_S)
    assert proc.pid not in running_daemons()


def test_a_missing_camera_fails_the_check_while_another_daemon_runs(tmp_path, mosquitto_broker, running_daemon):
    """The bug: with any `edgepose run` on the machine (a demo elsewhere), a device that
    does not exist was relabelled "held by the running edgepose" and the check passed."""
    from edgepose.cli.check import running_daemons

    proc = running_daemon()
    wait_until("daemon in /proc", lambda: proc.pid in running_daemons(), proc)
    code, lines = check(tmp_path, demo_config(tmp_path, node_id("chk"), mosquitto_broker), "--source", "/dev/video9")
    assert code == EXIT_FAILURE, lines
    assert line(lines, "source") == ("source: FAIL V4L2 camera /dev/video9 (640x480): no such device "
                                      "(is the camera plugged in? ls /dev/video*)")
    assert not any("held" in entry for entry in lines), lines


def test_a_busy_device_the_running_daemon_really_has_open_is_reported_held(tmp_path, mosquitto_broker,
                                                                          running_daemon, monkeypatch):
    """The legitimate case, read from the real /proc: the daemon plays a looping video
    file (so it keeps the file open); opening the same path in the check fails as a
    device the daemon streams from fails (PyAV's EBUSY). Held, exit status ok; the same
    busy error for a path the daemon does not hold fails."""
    import errno

    import av

    from edgepose.config import load_config
    from edgepose.cli.check import check_installation, open_files

    clip = tmp_path / "camera.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for value in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), value * 5, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    proc = running_daemon(source={"uri": str(clip), "loop": True, "max_fps": 5.0})
    wait_until("the clip open in the daemon", lambda: str(clip) in (open_files(proc.pid) or []), proc)

    def busy(target, mode="r", **kwargs):
        raise av.error.OSError(errno.EBUSY, "Device or resource busy", target)

    monkeypatch.setattr(av, "open", busy)
    results = {}
    for name in (clip.name, "other.mp4"):
        uri = tmp_path / name
        uri.touch(exist_ok=True)
        config = load_config(None, {"source.uri": str(uri), "mqtt.enabled": False, "snapshots.enabled": False})
        lines: list[str] = []
        results[name] = (check_installation(config, lines.append), line(lines, "source"))
    ok, held = results[clip.name]
    assert ok and held.startswith(f"source: ok (the camera is held by the running edgepose (pid {proc.pid}"), held
    ok, other = results["other.mp4"]
    assert not ok and other.startswith("source: FAIL ") and "another program has it open" in other, other


def test_forget_clears_the_nodes_retained_topics_and_its_home_assistant_device(tmp_path, mosquitto_broker):
    """`edgepose forget` (run by install.sh --uninstall): nothing of the node stays retained."""
    import paho.mqtt.client as paho

    node = node_id("forget")
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto_broker.host, mosquitto_broker.port)
    pub.loop_start()
    topics = [f"edgepose/{node}/{t}" for t in ("availability", "person_count", "state", "stats")]
    topics.append(f"homeassistant/device/edgepose_{node}/config")
    for topic in topics:
        pub.publish(topic, b"x", qos=1, retain=True).wait_for_publish(WAIT_S)
    pub.loop_stop()
    pub.disconnect()

    config = demo_config(tmp_path, node, mosquitto_broker)
    path = write_config(tmp_path / "forget.toml", config)
    done = subprocess.run([sys.executable, "-m", "edgepose", "forget", "--config", str(path)],
                          capture_output=True, text=True, timeout=WAIT_S, env=child_env(), cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout.startswith("forget: ok"), done.stdout + done.stderr

    seen: list[str] = []
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: seen.append(m.topic)
    sub.connect(mosquitto_broker.host, mosquitto_broker.port)
    subscribed = sub.subscribe([(t, 1) for t in topics])[1]
    deadline = time.monotonic() + WAIT_S
    acked = []
    sub.on_subscribe = lambda c, u, mid, rc, props: acked.append(mid)
    while not acked and time.monotonic() < deadline:
        sub.loop(timeout=0.1)
    # Retained messages arrive right after the SUBACK; a few more loop passes take them.
    for _ in range(10):
        sub.loop(timeout=0.05)
    sub.disconnect()
    assert acked == [subscribed] and seen == [], seen
