"""Hardware fixtures: each one skips, naming what is missing, unless the device is here.

Only tests that ask for a fixture are skipped, so a Pi with a Coral and no camera
still runs its Edge TPU tests.
"""

from __future__ import annotations

import glob

import pytest


@pytest.fixture(scope="session")
def pi_camera() -> int:
    """The number of a Pi camera picamera2 can open (0), or skip."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        pytest.skip(f"picamera2 is not importable ({exc}); on a Pi: apt install python3-picamera2")
    if not glob.glob("/dev/video*"):
        pytest.skip("no /dev/video* device nodes: no camera here")
    try:
        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera failing to start is a missing camera too
        pytest.skip(f"libcamera cannot list cameras: {exc}")
    if not cameras:
        pytest.skip("libcamera finds no camera")
    return 0
