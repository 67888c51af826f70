"""A real fall, through the whole daemon, against a real broker: fall_detected, then fall_cleared.

The clip is built from the real-fall development set (tools/fall_devset.py; the
test skips, naming where it looked, when the set is absent): UP-Fall subject 1
falling forward onto a mattress (camera 2, a second person sitting on the
right), taken at 10 frames a second, then the same frames backwards (the
person gets up the way they went down) and a few seconds standing. The
daemon runs the default model and fall settings on it, as a camera would
deliver it, and publishes to Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepose.fall_eval import camera_ticks

from ..conftest import fall_dev_dir
from .test_daemon import WAIT_S, daemon, decode, demo_config, node_id, payload_is, wait_msgs  # noqa: F401

pytestmark = pytest.mark.integration

#: The clip, its span (seconds) before getting up, and how long the person stands at the end.
CLIP = "fall/A01-T2-C2.mp4"
SPAN_S = (0.5, 5.0)
STAND_S = 3.0
FPS = 10.0


@pytest.fixture(scope="module")
def fall_and_rise(tmp_path_factory) -> Path:
    """A folder of JPEG frames at 10 fps: the fall, the same frames backwards, standing."""
    import av

    video = fall_dev_dir() / "upfall-video" / CLIP
    container = av.open(str(video))
    frames = [(f.time, f.to_image()) for f in container.decode(video=0)]
    container.close()
    times = [t - frames[0][0] for t, _ in frames]
    picked = [frames[i][1] for i, t in camera_ticks(times, FPS) if SPAN_S[0] <= t <= SPAN_S[1]]
    sequence = picked + picked[::-1] + [picked[0]] * int(STAND_S * FPS)
    folder = tmp_path_factory.mktemp("fall-and-rise")
    for n, image in enumerate(sequence):
        image.save(folder / f"{n:04d}.jpg", quality=90)
    return folder


def test_a_real_fall_raises_fall_detected_and_getting_up_clears_it(
        fall_and_rise, tmp_path, mosquitto_broker, subscriber, daemon):
    node = node_id("realfall")
    prefix = f"edgepose/{node}"
    sub = subscriber(mosquitto_broker, f"{prefix}/#")
    d = daemon(demo_config(tmp_path, node, mosquitto_broker,
                           source={"uri": str(fall_and_rise), "loop": False, "max_fps": FPS}))
    assert d.proc.wait(WAIT_S * 4) == 0, d.explain()
    wait_msgs(sub, d, payload_is(f"{prefix}/availability", b"offline"))
    events = [decode(m) for m in sub.matching(f"{prefix}/events")]
    falls = [e for e in events if e["type"].startswith("fall_")]
    assert [e["type"] for e in falls] == ["fall_detected", "fall_cleared"], events
    detected, cleared = falls
    assert detected["cause"] == "fall_seen" and detected["v"] == 2 and detected["drop"] >= 0.6
    assert cleared["reason"] == "recovered" and cleared["fall_event_id"] == detected["id"]
    states = [decode(m) for m in sub.matching(f"{prefix}/state")]
    assert any(s["falls"] for s in states) and not states[-1]["falls"]
