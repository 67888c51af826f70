"""`edgepose check` beside a running daemon: a camera is "held" only when opening it
failed because it is busy and the running edgepose is seen holding it in /proc.

The running daemon is a stand-in /proc entry (cmdline and fd links, as the kernel
shows them); the camera is the real V4L2 source with PyAV's open failing as it does
for a device another process streams from (EBUSY) or one that is not there (ENOENT).
"""

from __future__ import annotations

import errno
from pathlib import Path

import av
import pytest

from edgepose.config import load_config
from edgepose.cli.check import check_installation, open_files, running_daemons
from edgepose.errors import SourceError
from edgepose.sources import holds_camera, is_busy_error, probe_source

DEVICE = "/dev/video0"
PID = 4242


def fake_proc(tmp_path: Path, *, fds: list[str] | None, argv=("python3", "-m", "edgepose", "run")) -> Path:
    """A /proc with one process: its command line and, unless `fds` is None (not
    readable, as another user's process is), its fd links."""
    proc = tmp_path / "proc"
    entry = proc / str(PID)
    entry.mkdir(parents=True)
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    if fds is None:
        (entry / "fd").write_text("")  # listing it fails, as EACCES does
    else:
        (entry / "fd").mkdir()
        for number, target in enumerate(fds):
            (entry / "fd" / str(number)).symlink_to(target)
    return proc


@pytest.fixture
def camera(monkeypatch):
    """Set the errno PyAV's open of the V4L2 device fails with."""
    state = {"errno": errno.EBUSY}

    def open_(target, mode="r", **kwargs):
        code = state["errno"]
        raise av.error.OSError(code, "Device or resource busy" if code == errno.EBUSY
                               else "No such file or directory", target)

    monkeypatch.setattr(av, "open", open_)
    return state


def run_check(proc: Path, source: str = DEVICE) -> tuple[bool, str]:
    config = load_config(None, {"source.uri": source, "mqtt.enabled": False, "snapshots.enabled": False})
    lines: list[str] = []
    ok = check_installation(config, lines.append, proc=proc)
    return ok, next(line for line in lines if line.startswith("source: "))


def test_busy_errors_are_told_from_other_failures():
    busy = SourceError("V4L2 camera: cannot open")
    busy.__cause__ = av.error.OSError(errno.EBUSY, "Device or resource busy", DEVICE)
    assert is_busy_error(busy)
    assert is_busy_error(RuntimeError("Failed to acquire camera: Pipeline handler in use by another process"))
    gone = SourceError("V4L2 camera: cannot open")
    gone.__cause__ = FileNotFoundError(errno.ENOENT, "No such file or directory", DEVICE)
    assert not is_busy_error(gone) and not is_busy_error(None)


def test_the_camera_a_process_holds_is_matched_by_device(tmp_path):
    alias = tmp_path / "by-id-usb-cam"
    alias.symlink_to(DEVICE)
    assert holds_camera(DEVICE, DEVICE) and holds_camera(str(alias), DEVICE)
    assert not holds_camera(DEVICE, "/dev/video1") and not holds_camera(DEVICE, "/tmp/x.log")
    assert holds_camera("picamera2", "/dev/media0") and not holds_camera("picamera2", DEVICE + "x")


def test_the_stand_in_proc_reads_like_the_real_one(tmp_path):
    proc = fake_proc(tmp_path, fds=[DEVICE, "/var/lib/edgepose/outbox.sqlite3"])
    assert running_daemons(proc) == [PID]
    assert sorted(open_files(PID, proc)) == sorted([DEVICE, "/var/lib/edgepose/outbox.sqlite3"])
    assert open_files(PID, fake_proc(tmp_path / "other", fds=None)) is None


def test_a_busy_camera_the_running_daemon_holds_is_reported_held(tmp_path, camera):
    probe = probe_source(DEVICE, width=640, height=480)
    assert not probe.ok and probe.busy and "Device or resource busy" in probe.detail
    ok, line = run_check(fake_proc(tmp_path, fds=["/dev/null", DEVICE]))
    assert ok, line
    assert line.startswith(f"source: ok (the camera is held by the running edgepose (pid {PID}), not probed: ")


def test_a_busy_camera_held_by_another_program_fails(tmp_path, camera):
    ok, line = run_check(fake_proc(tmp_path, fds=["/dev/video1", "/tmp/edgepose.log"]))
    assert not ok and line.startswith(f"source: FAIL V4L2 camera {DEVICE} ")
    assert "another program has it open" in line and "held by" not in line


def test_a_busy_camera_is_not_called_held_when_the_daemons_files_cannot_be_read(tmp_path, camera):
    ok, line = run_check(fake_proc(tmp_path, fds=None))
    assert not ok and line.startswith("source: FAIL ")
    assert f"(pid {PID}) may hold it" in line and "sudo -u edgepose" in line


def test_a_missing_camera_fails_even_while_the_daemon_holds_another(tmp_path, camera):
    """The bug: any failure of a device source was relabelled "held" while edgepose ran."""
    camera["errno"] = errno.ENOENT
    ok, line = run_check(fake_proc(tmp_path, fds=[DEVICE]), source="/dev/video9")
    assert not ok
    assert line == ("source: FAIL V4L2 camera /dev/video9 (640x480): no such device "
                    "(is the camera plugged in? ls /dev/video*)")


def test_no_daemon_running_a_busy_camera_fails(tmp_path, camera):
    ok, line = run_check(fake_proc(tmp_path, fds=[DEVICE], argv=("python3", "-m", "http.server")))
    assert not ok and "another program has it open" in line


@pytest.mark.parametrize(("error", "fds", "held"), [
    ("unanswered", ["/dev/bus/usb/001/004"], True),  # the USB Coral the service has open
    ("unanswered", ["/dev/apex_0"], True),  # the PCIe one
    ("unanswered", ["/dev/video0"], False),  # the service holds no Edge TPU: none is attached
    ("no library", ["/dev/bus/usb/001/004"], False),  # libedgetpu missing is never "held"
])
def test_an_edge_tpu_is_held_only_when_the_daemon_has_one_open(tmp_path, monkeypatch, camera, error, fds, held):
    from edgepose.cli import check as daemon
    from edgepose.errors import AcceleratorError, EdgeTpuUnanswered

    def no_tpu(model, decode):
        if error == "unanswered":
            raise EdgeTpuUnanswered("no Edge TPU found at any USB or PCIe device (Failed to load delegate)")
        raise AcceleratorError("libedgetpu.so.1 not found: install libedgetpu (sudo ./install.sh --coral)")

    monkeypatch.setattr(daemon, "open_estimator", no_tpu)
    config = load_config(None, {"source.uri": DEVICE, "mqtt.enabled": False, "snapshots.enabled": False})
    lines: list[str] = []
    check_installation(config, lines.append, proc=fake_proc(tmp_path, fds=fds))
    model = next(line for line in lines if line.startswith("model: "))
    if held:
        assert model.startswith(f"model: ok (the Edge TPU is held by the running edgepose (pid {PID})"), model
    else:
        assert model.startswith("model: FAIL "), model
