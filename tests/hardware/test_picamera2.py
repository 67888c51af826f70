"""The real Pi camera through Picamera2Source. Run on the Pi with: pytest -m hardware."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.sources import Picamera2Source, open_source

pytestmark = pytest.mark.hardware


def test_captures_three_rgb_frames_with_a_lores_stream(pi_camera: int):
    source = Picamera2Source(width=640, height=480, lores_size=(320, 240), camera_num=pi_camera)
    source.open()
    try:
        frames = [source.read() for _ in range(3)]
        lores = source.last_lores
    finally:
        source.close()
    for rgb in frames:
        assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert lores is not None and lores.shape == (240, 320, 3) and lores.dtype == np.uint8
    # Both streams see the same scene: their mean colours agree roughly.
    main_small = frames[-1][::2, ::2].reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(main_small - lores.reshape(-1, 3).mean(axis=0)) < 40)


def test_camera_can_be_reopened_after_close(pi_camera: int):
    for _ in range(2):  # a camera left locked fails the second open ("in use")
        source = open_source("picamera2", width=640, height=480, loop=False)
        source.open()
        try:
            assert source.read().shape == (480, 640, 3)
        finally:
            source.close()
