"""Each MoveNet model end to end: the real daemon subprocess on the demo photos against
the real broker, publishing schema-valid poses messages (v2) with boxes; MultiPose's
boxes are the model's own, not the extent of the keypoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepose.config import load_config
from edgepose.estimators import open_estimator
from edgepose.images import read_rgb

from .test_daemon import (  # noqa: F401 - daemon is a fixture
    DEMO_PHOTOS,
    check_poses,
    daemon,
    decode,
    demo_config,
    node_id,
    wait_msgs,
    write_config,
)

pytestmark = pytest.mark.integration

#: Enough frames to go round the five demo photos more than once.
FRAMES = 8
#: Boxes travel as fractions rounded to 4 decimals; the daemon and this test run the
#: same file on the same pixels, so only rounding (and thread-count summation order) differ.
BOX_TOLERANCE = 2e-3


@pytest.mark.parametrize("name,stem", [
    ("movenet-lightning", "movenet_lightning_float16"),  # int8 scores below TF.js: float16 on CPUs
    ("movenet-thunder", "movenet_thunder_int8"),
    ("movenet-multipose", "movenet_multipose_int8"),
])
def test_each_movenet_model_runs_the_daemon_end_to_end(tmp_path, mosquitto_broker, subscriber, daemon,
                                                       name, stem):
    node = node_id(name.split("-")[1][:5])
    sub = subscriber(mosquitto_broker, f"edgepose/{node}/#")
    config = demo_config(tmp_path, node, mosquitto_broker, model={"name": name})
    d = daemon(config)
    messages = wait_msgs(sub, d, f"{d.prefix}/poses", FRAMES)
    bodies = [check_poses(m, node) for m in messages]
    assert all(body["v"] == 2 for body in bodies)
    assert all(body["model"].startswith(stem + " ") for body in bodies), bodies[0]["model"]
    people = [pose for body in bodies for pose in body["poses"]]
    assert people, f"no person found in {FRAMES} demo frames; {d.explain()}"
    for pose in people:
        x0, y0, x1, y1 = pose["box"]
        assert 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1
    if name != "movenet-multipose":
        assert max(body["person_count"] for body in bodies) == 1  # single-pose: one person at most
    else:
        _boxes_are_the_models(bodies, tmp_path, config)
    code, _ = d.terminate()
    assert code == 0, d.explain()


def _boxes_are_the_models(bodies: list[dict], tmp_path: Path, config: dict) -> None:
    """Each message's boxes are MultiPose's boxes for one of the demo photos of its size
    (the model is stateless, so this process can run it on the same photos), and on at
    least one frame they differ from the extent of the keypoints."""
    loaded = load_config(write_config(tmp_path / "same.toml", config))
    estimator = open_estimator(loaded.model, loaded.decode)
    expected: dict[tuple[int, int], list[np.ndarray]] = {}
    for photo in DEMO_PHOTOS:
        rgb = read_rgb(photo)
        h, w = rgb.shape[:2]
        boxes = estimator.estimate_still(rgb).boxes
        expected.setdefault((w, h), []).append(boxes / np.array([w, h, w, h], np.float32))
    estimator.close()
    differs_from_extent = False
    for body in bodies:
        got = np.array([pose["box"] for pose in body["poses"]], np.float64).reshape(-1, 4)
        candidates = expected[(body["width"], body["height"])]
        assert any(_same_boxes(got, want) for want in candidates), (got, candidates)
        for pose in body["poses"]:
            points = np.array([[k["x"], k["y"]] for k in pose["keypoints"].values() if k["score"] >= 0.5])
            if len(points):
                extent = np.concatenate([points.min(axis=0), points.max(axis=0)])
                differs_from_extent |= bool(np.abs(extent - pose["box"]).max() > 0.02)
    assert differs_from_extent, "every box equals the keypoint extent: the model's boxes were not used"


def _same_boxes(got: np.ndarray, want: np.ndarray) -> bool:
    """The same boxes in any order (tracking may reorder people)."""
    if got.shape != want.shape:
        return False
    free = list(range(len(want)))
    for box in got:
        match = next((j for j in free if np.abs(want[j] - box).max() <= BOX_TOLERANCE), None)
        if match is None:
            return False
        free.remove(match)
    return True
