"""edgepose agrees with TensorFlow.js pose-detection (the reference) on the dev photos.

Same model, input 385x385, stride 16, max 5 poses, part score 0.5, NMS radius
20, no pose-score filter and no clean-up, as ../shared/reference/posenet-tfjs
records. Needs the float32 stride-16 model in models/ and a TF Lite runtime.

TF.js keeps the first max_poses roots in queue order; edgepose decodes more and
keeps the highest-scoring (decode.py). The decoders are compared with TF.js's
selection (`decode_in_root_order`); that the first poses of a longer decode are
TF.js's is checked too.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgepose.config import DecodeConfig, ModelConfig
from edgepose.constants import NUM_PARTS
from edgepose.core import Poses
from edgepose.errors import EdgePoseError

pytestmark = pytest.mark.shared

INPUT_SIZE = (385, 385)
STRIDE = 16
SETTINGS = DecodeConfig(max_poses=5, min_part_score=0.5, nms_radius=20.0, min_pose_score=0.0, cleanup="none")
#: A pose pair matches when its 17 keypoints are this close on average (frame px).
MATCH_MEAN_PX = 5.0


def _detector():
    from edgepose.estimators.posenet.estimator import open_posenet

    try:
        # Unclipped: TF.js returns keypoints past the border as they are.
        return open_posenet(ModelConfig(stride=STRIDE, input_size=INPUT_SIZE, threads=2, quantized=False),
                            SETTINGS, clip=False)
    except EdgePoseError as exc:  # no model file or no runtime here
        pytest.skip(str(exc))


def _results(image_id: int, poses: Poses) -> list[dict]:
    return [
        {
            "image_id": image_id,
            "category_id": 1,
            "keypoints": np.concatenate([poses.xy[i], poses.scores[i][:, None]], axis=1).ravel().tolist(),
            "score": float(poses.pose_scores[i]),
        }
        for i in range(len(poses))
    ]


def _tfjs_selection(outputs, *, max_poses, min_part_score, nms_radius):
    """TF.js's multi-pose decoding: the first max_poses roots in queue order."""
    from edgepose.estimators.posenet import decode

    return decode.decode_in_root_order(outputs, limit=max_poses, min_part_score=min_part_score,
                                       nms_radius=nms_radius)


@pytest.fixture(scope="module")
def runs(coco_dev: Path, tfjs_reference: Path):
    from PIL import Image

    from edgepose.estimators.posenet import decode

    gt = json.loads((coco_dev / "person_keypoints.json").read_text())
    reference = json.loads((tfjs_reference / "results.json").read_text())
    detector = _detector()
    ours = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode, "decode", _tfjs_selection)
        for image in gt["images"]:
            with Image.open(coco_dev / "images" / image["file_name"]) as im:
                rgb = np.asarray(im.convert("RGB"))
            ours += _results(image["id"], detector.estimate(rgb))
    return gt, reference, ours


def _by_image(results: list[dict]) -> dict[int, np.ndarray]:
    out: dict[int, list] = {}
    for r in results:
        out.setdefault(r["image_id"], []).append(r["keypoints"])
    return {k: np.asarray(v, np.float64).reshape(-1, NUM_PARTS, 3) for k, v in out.items()}


def _greedy_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int, float]]:
    """One-to-one pairs (i, j, mean keypoint distance), closest first."""
    cost = np.linalg.norm(a[:, None, :, :2] - b[None, :, :, :2], axis=-1).mean(axis=-1)
    pairs = []
    while cost.size and np.isfinite(cost).any():
        i, j = np.unravel_index(np.argmin(cost), cost.shape)
        pairs.append((int(i), int(j), float(cost[i, j])))
        cost[i, :] = np.inf
        cost[:, j] = np.inf
    return pairs


def compare(gt: dict, reference: list[dict], ours: list[dict]) -> dict[str, float]:
    """Image match rate and keypoint distances over the poses paired up."""
    ref, mine = _by_image(reference), _by_image(ours)
    empty = np.zeros((0, NUM_PARTS, 3))
    matched_images = 0
    errors = []  # frame px, keypoints the reference scores >= 0.5
    for image in gt["images"]:
        a, b = ref.get(image["id"], empty), mine.get(image["id"], empty)
        pairs = _greedy_pairs(a, b) if len(a) and len(b) else []
        if len(a) == len(b) and all(d <= MATCH_MEAN_PX for _, _, d in pairs):
            matched_images += 1
        for i, j, _ in pairs:
            confident = a[i, :, 2] >= 0.5
            errors += np.linalg.norm(a[i, confident, :2] - b[j, confident, :2], axis=-1).tolist()
    errors_arr = np.asarray(errors)
    return {
        "matched_images": matched_images / len(gt["images"]),
        "within_2px": float((errors_arr <= 2.0).mean()) if errors else 0.0,
        "median_px": float(np.median(errors_arr)) if errors else float("nan"),
        "max_px": float(errors_arr.max()) if errors else float("nan"),
        "keypoints": len(errors),
    }


def oks_ap(gt: dict, results: list[dict]) -> float:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        detections = coco.loadRes(copy.deepcopy(results))  # loadRes edits its input
        evaluation = COCOeval(coco, detections, "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def clipped(gt: dict, results: list[dict]) -> list[dict]:
    """The results as the daemon publishes them: keypoints clipped to the frame."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    out = []
    for r in results:
        kp = np.asarray(r["keypoints"]).reshape(NUM_PARTS, 3)
        w, h = sizes[r["image_id"]]
        kp[:, 0] = kp[:, 0].clip(0, w - 1)
        kp[:, 1] = kp[:, 1].clip(0, h - 1)
        out.append(r | {"keypoints": kp.ravel().tolist()})
    return out


def test_same_people_at_the_same_places_as_tfjs(runs):
    gt, reference, ours = runs
    figures = compare(gt, reference, ours)
    assert figures["matched_images"] >= 0.90, figures
    assert figures["within_2px"] >= 0.95, figures


def test_oks_ap_within_one_point_of_tfjs(runs):
    gt, reference, ours = runs
    reference_ap = oks_ap(gt, reference)
    assert abs(oks_ap(gt, ours) - reference_ap) <= 0.01
    assert abs(oks_ap(gt, clipped(gt, ours)) - reference_ap) <= 0.01
