"""Real Edge TPU: runs only where a Coral is attached (`pytest -m hardware` on the Pi)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgepose.runtime import tflite
from edgepose.config import DecodeConfig, ModelConfig
from edgepose.estimators import models_dir
from edgepose.estimators.posenet.estimator import open_posenet

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


def _edgetpu_model() -> str:
    """An Edge TPU build of a raw-output PoseNet (edgetpu_compiler runs on x86 only, so none ships)."""
    env = os.environ.get("EDGEPOSE_EDGETPU_MODEL")
    if env:
        return env
    found = sorted(models_dir().glob("*_edgetpu.tflite"))
    if not found:
        pytest.skip("no *_edgetpu.tflite: compile models/*_int8.tflite with edgetpu_compiler "
                    "or set EDGEPOSE_EDGETPU_MODEL")
    return str(found[0])


def test_edgetpu_delegate_loads():
    _, load_delegate, _ = tflite.import_runtime()
    assert tflite.load_edgetpu_delegate(load_delegate) is not None


def test_edgetpu_runs_a_compiled_model():
    estimator = open_posenet(ModelConfig(path=_edgetpu_model(), accelerator="edgetpu"), DecodeConfig())
    assert estimator.info.accelerator == "edgetpu"
    out = estimator.run_model()
    assert out.heatmaps.shape[-1] == 17


def test_auto_picks_the_edgetpu_for_a_compiled_file():
    model = tflite.open_tflite(Path(_edgetpu_model()), accelerator="auto")
    assert model.accelerator == "edgetpu"
