"""Real Edge TPU: runs only where a Coral is attached (`pytest -m hardware` on the Pi)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepose import backend

CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}  # before / after firmware load


def coral_present() -> bool:
    if Path("/dev/apex_0").exists():
        return True
    for device in Path("/sys/bus/usb/devices").glob("*"):
        try:
            ids = ((device / "idVendor").read_text().strip(), (device / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            return True
    return False


pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not coral_present(), reason="no Coral Edge TPU (/dev/apex_0 or USB 1a6e:089a/18d1:9302)"),
]


def test_edgetpu_delegate_loads_and_runs_a_model():
    model = backend.load_model("posenet-mnv1-075", stride=16, quantized=True, accelerator="edgetpu")
    assert model.accelerator == "edgetpu"
    out = model.invoke()
    assert out.heatmaps.shape[-1] == 17


def test_auto_picks_the_edgetpu_when_present():
    model = backend.load_model("posenet-mnv1-075", stride=16, quantized=True, accelerator="auto")
    assert model.accelerator == "edgetpu"
