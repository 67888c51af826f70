"""edgepose's MoveNet agrees with TensorFlow.js pose-detection 2.1.3 (the reference).

With the reference's own settings (../shared/reference/movenet-tfjs/README.md:
single-pose from the centred square crop, one and two passes, min pose score
0.25; MultiPose at long side 256, instance score >= 0.25) and the float16
builds in models/, for each of Lightning, Thunder and MultiPose:

- >= 95% of the keypoints the reference scores >= 0.3 lie within 2 px of ours
  (poses paired greedily by mean keypoint distance);
- the same number of poses on >= 90% of the photos;
- OKS AP within 0.01 of the reference's (edgepose.evaluation).

Measured (TF Lite via ai_edge_litert 2.3, XNNPACK): 100% of confident
keypoints within 2 px, identical pose counts on all 34 photos, and AP equal to
the reference's to three decimals for all five runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepose.config import DecodeConfig, ModelConfig
from edgepose.constants import NUM_PARTS
from edgepose.estimators.movenet.estimator import open_movenet
from edgepose.evaluation import evaluate_keypoints, results_from_poses

pytestmark = pytest.mark.shared

#: (model stem, passes or MultiPose long side, reference file)
CASES = [
    ("lightning", 1, "lightning.json"),
    ("lightning", 2, "lightning_2pass.json"),
    ("thunder", 1, "thunder.json"),
    ("thunder", 2, "thunder_2pass.json"),
    ("multipose", 256, "multipose.json"),
]
CONFIDENT = 0.3
NEAR_PX = 2.0


@pytest.fixture(scope="module")
def dev(coco_dev: Path):
    from PIL import Image

    root = coco_dev
    gt = json.loads((root / "person_keypoints.json").read_text())
    images = {}
    for image in gt["images"]:
        with Image.open(root / "images" / image["file_name"]) as im:
            images[image["id"]] = np.asarray(im.convert("RGB"))
    return gt, images


def _run(stem: str, setting: int, images: dict[int, np.ndarray]) -> list[dict]:
    """The float16 build opened as the daemon opens it, with the reference's settings;
    clip=False: TF.js leaves keypoints past the border where the model put them."""
    name = f"movenet-{stem}"
    if stem == "multipose":
        model = ModelConfig(name=name, quantized=False, threads=1, multipose_long_side=setting)
    else:
        model = ModelConfig(name=name, quantized=False, threads=1, first_crop="centre", still_passes=setting)
    est = open_movenet(model, DecodeConfig(min_pose_score=0.25, max_poses=6), clip=False)
    results: list[dict] = []
    for image_id, rgb in images.items():
        results += results_from_poses(image_id, est.estimate_still(rgb))
    est.close()
    return results


def _by_image(results: list[dict], image_ids) -> dict[int, np.ndarray]:
    out = {i: [] for i in image_ids}
    for r in results:
        out[r["image_id"]].append(r["keypoints"])
    return {i: np.asarray(v, np.float64).reshape(-1, NUM_PARTS, 3) for i, v in out.items()}


def agreement(ours: list[dict], reference: list[dict], image_ids) -> tuple[float, float, int]:
    """(share of confident reference keypoints within NEAR_PX of ours, share of
    photos with as many poses as the reference, number of confident keypoints)."""
    a_all, b_all = _by_image(ours, image_ids), _by_image(reference, image_ids)
    near = total = same = 0
    for i in image_ids:
        a, b = a_all[i], b_all[i]
        same += len(a) == len(b)
        free = np.ones(len(a), bool)
        for k in np.argsort(-b[..., 2].mean(axis=1), kind="stable"):
            conf = b[k, :, 2] >= CONFIDENT
            total += int(conf.sum())
            if not free.any():
                continue
            dist = np.linalg.norm(a[:, :, :2] - b[k, None, :, :2], axis=-1)  # (len(a), 17)
            cost = np.where(free, dist.mean(axis=1), np.inf)
            j = int(np.argmin(cost))
            free[j] = False
            near += int((dist[j][conf] <= NEAR_PX).sum())
    return near / max(total, 1), same / len(image_ids), total


@pytest.mark.parametrize("stem,setting,ref_file", CASES, ids=[c[2].removesuffix(".json") for c in CASES])
def test_agrees_with_tfjs(dev, movenet_reference: Path, stem: str, setting: int, ref_file: str) -> None:
    gt, images = dev
    reference = json.loads((movenet_reference / ref_file).read_text())
    ours = _run(stem, setting, images)
    near, same, total = agreement(ours, reference, list(images))
    ap, ref_ap = evaluate_keypoints(gt, ours)["AP"], evaluate_keypoints(gt, reference)["AP"]
    assert total > 100
    assert near >= 0.95, f"{near:.1%} of {total} confident keypoints within {NEAR_PX} px"
    assert same >= 0.90, f"same pose count on {same:.0%} of photos"
    assert abs(ap - ref_ap) <= 0.01, f"AP {ap:.3f} vs reference {ref_ap:.3f}"
