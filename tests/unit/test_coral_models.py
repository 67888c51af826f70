"""Coral's raw-output CPU PoseNet finds the same keypoints as our own float model.

Both are PoseNet MobileNetV1 0.75 at stride 16; Coral's is full-integer with
uint8 outputs and fuses both displacement directions into 64 "mid offsets".
If dequantising or splitting were wrong, keypoints would land far apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepose.config import DecodeConfig, ModelConfig
from edgepose.estimators.posenet.estimator import open_posenet
from edgepose.images import read_rgb

pytestmark = pytest.mark.shared

SETTINGS = DecodeConfig(max_poses=5, min_part_score=0.5, nms_radius=20.0, min_pose_score=0.0)
CORAL_RAW = "posenet_mobilenet_v1_075_481_641_quant.tflite"
SKIER = Path(__file__).resolve().parents[2] / "edgepose" / "demo" / "000000000785.jpg"


def _best_pose_distance(ours, coral) -> float | None:
    """Median px distance between our best pose and the closest Coral pose, over
    keypoints both score >= 0.5 (None when no pose shares 3 such keypoints)."""
    if len(ours) == 0 or len(coral) == 0:
        return None
    best = int(np.argmax(ours.pose_scores))
    confident = ours.scores[best] >= 0.5
    medians = []
    for j in range(len(coral)):
        both = confident & (coral.scores[j] >= 0.5)
        if both.sum() >= 3:
            medians.append(float(np.median(np.linalg.norm(coral.xy[j][both] - ours.xy[best][both], axis=1))))
    return min(medians) if medians else None


def test_corals_raw_model_agrees_with_our_float_model(coral_models, coco_dev):
    coral = open_posenet(ModelConfig(path=str(coral_models / CORAL_RAW)), SETTINGS)
    ours = open_posenet(ModelConfig(input_size=coral.info.input_size, quantized=False), SETTINGS)
    distances = []
    for path in sorted((coco_dev / "images").glob("*.jpg")):
        rgb = read_rgb(path)
        distance = _best_pose_distance(ours.estimate(rgb), coral.estimate(rgb))
        if distance is not None:
            distances.append(distance)
    assert len(distances) >= 25  # poses found on most of the 34 photos by both
    distances = np.asarray(distances)
    # Measured: median 3.3 px over 31 photos, 29 of 31 within 8 px (641x481 input).
    assert np.median(distances) <= 5.0
    assert np.mean(distances <= 8.0) >= 0.85


def test_corals_smaller_raw_model_runs_at_its_own_size(coral_models):
    coral = open_posenet(ModelConfig(path=str(coral_models / "posenet_mobilenet_v1_075_353_481_quant.tflite")), SETTINGS)
    assert coral.info.input_size == (481, 353) and coral.output_stride == 16
    poses = coral.estimate(read_rgb(SKIER))
    assert len(poses) >= 1
    nose = poses.xy[int(np.argmax(poses.pose_scores)), 0]
    assert np.hypot(nose[0] - 367, nose[1] - 81) < 15  # COCO ground truth nose
