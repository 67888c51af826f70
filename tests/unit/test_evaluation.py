"""OKS AP/AR: hand-computed cases, and agreement with pycocotools on real data."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest

from edgepose.constants import NUM_PARTS, PART_IDS
from edgepose.core import Poses
from edgepose.evaluation import COCO_OKS_SIGMAS, evaluate_keypoints, oks, results_from_poses

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# --- synthetic cases worked out by hand -------------------------------------

AREA = 10_000.0  # a "large" person
NOSE = PART_IDS["nose"]


def keypoints(points: dict[int, tuple[float, float]], v: int = 2) -> list[float]:
    kp = np.zeros((NUM_PARTS, 3))
    for j, (x, y) in points.items():
        kp[j] = (x, y, v)
    return kp.ravel().tolist()


def dataset(annotations: list[dict], image_ids=(1,)) -> dict:
    for i, a in enumerate(annotations, start=1):
        a.setdefault("id", i)
        a.setdefault("image_id", 1)
        a.setdefault("category_id", 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", AREA)
        a.setdefault("bbox", [0.0, 0.0, 100.0, 100.0])
        a.setdefault("num_keypoints", int(np.count_nonzero(np.array(a["keypoints"])[2::3])))
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in image_ids],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }


def result(points: dict[int, tuple[float, float]], score: float, image_id: int = 1) -> dict:
    return {"image_id": image_id, "category_id": 1, "keypoints": keypoints(points, 1), "score": score}


def offset_for_oks(target: float, sigma: float, area: float) -> float:
    """Distance from a keypoint that gives OKS `target` with one labelled keypoint."""
    return math.sqrt(-math.log(target) * 2 * area * (2 * sigma) ** 2)


def test_oks_single_keypoint_matches_the_formula():
    d = offset_for_oks(0.72, COCO_OKS_SIGMAS[NOSE], AREA)
    gt = np.array(keypoints({NOSE: (50, 50)})).reshape(NUM_PARTS, 3)
    dt = np.array(keypoints({NOSE: (50 + d, 50)})).reshape(NUM_PARTS, 3)
    assert oks(gt, AREA, dt)[0, 0] == pytest.approx(0.72, abs=1e-9)


def test_oks_averages_only_labelled_keypoints():
    gt = np.array(keypoints({NOSE: (50, 50), PART_IDS["leftHip"]: (60, 90)})).reshape(NUM_PARTS, 3)
    dt = gt.copy()
    dt[NOSE, 0] += offset_for_oks(0.5, COCO_OKS_SIGMAS[NOSE], AREA)
    assert oks(gt, AREA, dt)[0, 0] == pytest.approx((0.5 + 1.0) / 2, abs=1e-9)


def test_oks_without_labelled_keypoints_measures_distance_outside_the_grown_box():
    gt = np.zeros((NUM_PARTS, 3))
    box = [100.0, 100.0, 50.0, 40.0]  # grown box: x 50..200, y 60..180
    dt = np.zeros((NUM_PARTS, 2))
    dt[:] = (120.0, 150.0)  # all inside
    dt[0] = (210.0, 150.0)  # 10 px right of the grown box
    dt[1] = (40.0, 190.0)  # 10 px left and 10 px below
    e0 = 10.0 ** 2 / (2 * COCO_OKS_SIGMAS[0]) ** 2 / AREA / 2
    e1 = 200.0 / (2 * COCO_OKS_SIGMAS[1]) ** 2 / AREA / 2
    expected = (math.exp(-e0) + math.exp(-e1) + (NUM_PARTS - 2)) / NUM_PARTS
    assert oks(gt, AREA, dt, gt_bbox=box)[0, 0] == pytest.approx(expected, abs=1e-9)


def test_oks_without_labelled_keypoints_needs_a_box():
    with pytest.raises(ValueError):
        oks(np.zeros((NUM_PARTS, 3)), AREA, np.zeros((NUM_PARTS, 2)))


def test_one_match_at_oks_072_counts_at_half_the_thresholds():
    gt = dataset([{"keypoints": keypoints({NOSE: (50, 50)})}])
    d = offset_for_oks(0.72, COCO_OKS_SIGMAS[NOSE], AREA)
    # The result's keypoint box (nose to the unset parts at 0, 0) is "medium":
    # for "large" it counts only because it matched large ground truth.
    stats = evaluate_keypoints(gt, [result({NOSE: (50 + d, 50)}, 0.9)])
    # Matched at .50 .. .70 (5 of 10 thresholds) with precision 1 everywhere.
    assert stats["AP"] == pytest.approx(0.5)
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(0.0)
    assert stats["AR"] == pytest.approx(0.5)
    assert stats["APl"] == pytest.approx(0.5)
    assert stats["APm"] == -1  # no medium ground truth


def test_higher_scored_false_positive_halves_precision():
    gt = dataset([{"keypoints": keypoints({NOSE: (50, 50)})}])
    results = [result({NOSE: (400, 400)}, 0.9), result({NOSE: (50, 50)}, 0.8)]
    stats = evaluate_keypoints(gt, results)
    # recall [0, 1], precision [0, .5] -> envelope .5 at every recall point.
    assert stats["AP"] == pytest.approx(0.5)
    assert stats["AR"] == pytest.approx(1.0)


def test_lower_scored_false_positive_costs_nothing():
    gt = dataset([{"keypoints": keypoints({NOSE: (50, 50)})}])
    results = [result({NOSE: (50, 50)}, 0.9), result({NOSE: (400, 400)}, 0.8)]
    assert evaluate_keypoints(gt, results)["AP"] == pytest.approx(1.0)


def test_detection_on_a_crowd_region_is_neither_true_nor_false():
    crowd = {"keypoints": keypoints({}), "iscrowd": 1, "bbox": [300.0, 300.0, 100.0, 100.0]}
    person = {"keypoints": keypoints({NOSE: (50, 50)})}
    gt = dataset([person, crowd])
    inside_crowd = {j: (350.0, 350.0) for j in range(NUM_PARTS)}
    results = [result(inside_crowd, 0.9), result({NOSE: (50, 50)}, 0.8)]
    assert evaluate_keypoints(gt, results)["AP"] == pytest.approx(1.0)
    # The same detection away from the crowd is a false positive.
    away = {j: (600.0, 20.0) for j in range(NUM_PARTS)}
    assert evaluate_keypoints(gt, [result(away, 0.9), results[1]])["AP"] == pytest.approx(0.5)


def test_person_without_keypoints_is_ignored():
    gt = dataset([{"keypoints": keypoints({NOSE: (50, 50)})}, {"keypoints": keypoints({})}])
    stats = evaluate_keypoints(gt, [result({NOSE: (50, 50)}, 0.9)])
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_no_results_scores_zero():
    gt = dataset([{"keypoints": keypoints({NOSE: (50, 50)})}])
    stats = evaluate_keypoints(gt, [])
    assert stats["AP"] == 0.0 and stats["AR"] == 0.0


def test_results_for_unknown_images_are_refused():
    gt = dataset([{"keypoints": keypoints({NOSE: (50, 50)})}])
    with pytest.raises(ValueError):
        evaluate_keypoints(gt, [result({NOSE: (50, 50)}, 0.9, image_id=99)])


def test_results_from_poses_are_coco_results():
    xy = np.arange(2 * NUM_PARTS * 2, dtype=np.float32).reshape(2, NUM_PARTS, 2)
    scores = np.full((2, NUM_PARTS), 0.5, np.float32)
    out = results_from_poses(7, Poses(xy, scores, np.array([0.9, 0.4], np.float32)))
    assert [r["score"] for r in out] == pytest.approx([0.9, 0.4])
    assert out[0]["image_id"] == 7 and out[0]["category_id"] == 1
    assert out[1]["keypoints"][:6] == pytest.approx([34.0, 35.0, 0.5, 36.0, 37.0, 0.5])
    assert len(out[0]["keypoints"]) == 3 * NUM_PARTS
    json.dumps(out)  # plain Python numbers


# --- the dev set, against pycocotools ----------------------------------------


@pytest.fixture(scope="module")
def dev_gt(coco_dev) -> dict:
    return json.loads((coco_dev / "person_keypoints.json").read_text())


def gt_as_results(gt: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": list(a["keypoints"]), "score": 1.0}
        for a in gt["annotations"]
        if a["num_keypoints"] > 0 and not a["iscrowd"]
    ]


def jittered(gt: dict, seed: int = 0) -> list[dict]:
    """GT moved, rescored, some dropped, some duplicated: every code path gets used."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        kp = np.array(a["keypoints"], np.float64).reshape(NUM_PARTS, 3)
        if a["num_keypoints"] == 0 or rng.random() < 0.15:
            if rng.random() < 0.3:  # a detection near a crowd or unlabelled person
                x, y, w, h = a["bbox"]
                kp[:, :2] = rng.uniform((x, y), (x + w, y + h), size=(NUM_PARTS, 2))
            else:
                continue
        scale = math.sqrt(max(a["area"], 1.0)) * rng.choice([0.02, 0.08, 0.2])
        kp[:, :2] += rng.normal(0, scale, size=(NUM_PARTS, 2))
        kp[:, 2] = rng.uniform(0, 1, NUM_PARTS)
        score = float(rng.choice([0.5, 0.7, rng.uniform()]))  # ties on purpose
        out.append({"image_id": a["image_id"], "category_id": 1,
                    "keypoints": kp.ravel().tolist(), "score": score})
        if rng.random() < 0.2:  # duplicate: a false positive once the first matches
            dup = np.array(out[-1]["keypoints"]).reshape(NUM_PARTS, 3)
            dup[:, :2] += rng.normal(0, 3, size=(NUM_PARTS, 2))
            out.append(dict(out[-1], keypoints=dup.ravel().tolist(), score=score * 0.9))
    rng.shuffle(out)
    return out


def pycocotools_stats(gt: dict, results: list[dict]) -> dict[str, float]:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, ev.stats.tolist()))


@pytest.mark.shared
def test_ground_truth_scored_against_itself_is_perfect(dev_gt):
    stats = evaluate_keypoints(dev_gt, gt_as_results(dev_gt))
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)


@pytest.mark.shared
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jittered_ground_truth_agrees_with_pycocotools(dev_gt, seed):
    results = jittered(dev_gt, seed)
    reference = pycocotools_stats(dev_gt, results)
    mine = evaluate_keypoints(dev_gt, results)
    assert 0.05 < mine["AP"] < 0.95  # not a trivial case
    for name in STAT_NAMES:
        assert mine[name] == pytest.approx(reference[name], abs=1e-6), name


@pytest.mark.shared
def test_tfjs_reference_results_agree_with_pycocotools(dev_gt, tfjs_reference):
    results = json.loads((tfjs_reference / "results.json").read_text())
    reference = pycocotools_stats(dev_gt, results)
    mine = evaluate_keypoints(dev_gt, results)
    for name in STAT_NAMES:
        assert mine[name] == pytest.approx(reference[name], abs=1e-6), name
    # The figures the reference README states, to its three decimals (its
    # AP50 0.411 is 0.41155 truncated, hence 1e-3).
    assert mine["AP"] == pytest.approx(0.185, abs=1e-3)
    assert mine["AP50"] == pytest.approx(0.411, abs=1e-3)
    assert mine["AR"] == pytest.approx(0.235, abs=1e-3)


@pytest.mark.shared
def test_evaluation_does_not_modify_its_inputs(dev_gt, tfjs_reference):
    results = json.loads((tfjs_reference / "results.json").read_text())
    gt_before, results_before = copy.deepcopy(dev_gt), copy.deepcopy(results)
    evaluate_keypoints(dev_gt, results)
    assert dev_gt == gt_before and results == results_before
