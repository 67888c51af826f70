"""sd_notify over a real AF_UNIX datagram socket, as systemd would receive it."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from edgepose.notify import Notifier, watchdog_interval

RECV_TIMEOUT_S = 5.0


@pytest.fixture()
def receiver(tmp_path):
    """A bound datagram socket standing in for systemd's notification socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT_S)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_sends_each_notification_as_one_datagram(receiver, monkeypatch):
    path, sock = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    with Notifier.from_env() as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert received(sock) == "READY=1"
        assert notifier.watchdog()
        assert received(sock) == "WATCHDOG=1"
        assert notifier.status("12.5 fps, 2 people")
        assert received(sock) == "STATUS=12.5 fps, 2 people"
        assert notifier.stopping()
        assert received(sock) == "STOPPING=1"


def test_ready_and_stopping_can_carry_a_status(receiver):
    path, sock = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    notifier.ready(status="model loaded")
    assert received(sock).split("\n") == ["READY=1", "STATUS=model loaded"]
    notifier.stopping(status="SIGTERM")
    assert received(sock).split("\n") == ["STOPPING=1", "STATUS=SIGTERM"]
    notifier.close()


def test_status_newlines_cannot_inject_other_assignments(receiver):
    path, sock = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    notifier.status("camera lost\nREADY=1")
    assert received(sock) == "STATUS=camera lost READY=1"
    notifier.close()


def test_abstract_namespace_socket():
    name = f"edgepose-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert received(sock) == "READY=1"
        assert notifier.watchdog()
        assert received(sock) == "WATCHDOG=1"
        notifier.close()
    finally:
        sock.close()


def test_unset_variable_makes_every_call_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_env()
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.status("x") is False
    assert notifier.stopping() is False


def test_unsupported_address_disables_notifications(caplog):
    with caplog.at_level(logging.WARNING, logger="edgepose.notify"):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert "NOTIFY_SOCKET" in caplog.text


def test_missing_socket_never_raises_and_logs_once(tmp_path, caplog):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="edgepose.notify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    warnings = [r for r in caplog.records if r.name == "edgepose.notify"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_recovers_when_the_socket_appears_later(tmp_path):
    path = tmp_path / "late.sock"
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert notifier.watchdog() is False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        assert notifier.watchdog() is True
        assert received(sock) == "WATCHDOG=1"
    finally:
        sock.close()
        notifier.close()


def test_watchdog_interval_in_seconds():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    env = {"WATCHDOG_USEC": "15000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 15.0


def test_watchdog_interval_for_another_process_is_ignored():
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(env) is None


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_watchdog_interval_absent_or_invalid(usec):
    assert watchdog_interval({"WATCHDOG_USEC": usec}) is None
    assert watchdog_interval({}) is None
