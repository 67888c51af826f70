"""COCO person-keypoint evaluation (OKS AP/AR), numpy only.

Written to reproduce pycocotools' ``COCOeval(gt, dt, "keypoints")`` numbers
without needing pycocotools (a C extension that is awkward on a Pi) at run
time. The tests compare the two on real data. The rules followed, in COCOeval's
own order:

- Results are read as ``COCO.loadRes`` reads them: a detection's area is the
  area of the box around all 17 of its keypoints (or of its ``bbox`` when the
  first result carries one), and results are kept in their given order so
  score ties break the same way.
- Per image, ground truth is ignored when it is a crowd or has no labelled
  keypoint; a ground truth outside the area range is ignored for that range.
- Detections are taken by descending score (stable sort), at most 20 per image.
- OKS uses only labelled keypoints of the ground truth; a ground truth with
  none labelled (crowds, mostly) is scored by how far the detected keypoints
  fall outside its box grown by its own size on every side.
- Greedy matching per OKS threshold: each detection takes the best available
  non-ignored ground truth at or above the threshold, else the best ignored
  one; crowd ground truth can match many detections. Detections matched to an
  ignored ground truth, and unmatched detections outside the area range, do
  not count.
- Precision at 101 recall points from the monotone (non-increasing) envelope
  of the precision/recall curve, 0 beyond the highest recall reached; AR is
  the recall at the last detection. AP and AR are means over the settings that
  have any non-ignored ground truth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import NUM_PARTS
from .core import Poses

#: Per-keypoint OKS falloff in COCO order (the constants published with the
#: COCO keypoint challenge; pycocotools' ``kpt_oks_sigmas``).
COCO_OKS_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62,
     0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0

#: COCO's only category with keypoints.
PERSON_CATEGORY_ID = 1

#: OKS thresholds .50:.05:.95, built the way COCOeval builds them so that the
#: 0.50 and 0.75 entries compare equal to those literals.
OKS_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: Recall points 0:.01:1 at which precision is sampled.
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
#: At most this many detections per image are scored (COCO keypoints' maxDets).
MAX_DETECTIONS = 20
#: Object area ranges in pixels squared; COCO keypoints report no "small".
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0 ** 2, 1e5 ** 2),
    "medium": (32.0 ** 2, 96.0 ** 2),
    "large": (96.0 ** 2, 1e5 ** 2),
}
#: COCOeval's match ceiling: a threshold of 1 would otherwise need OKS > 1.
_MAX_MATCH_OKS = 1 - 1e-10


def oks(
    gt_keypoints: np.ndarray,
    gt_area: np.ndarray | float,
    dt_keypoints: np.ndarray,
    sigmas: np.ndarray = COCO_OKS_SIGMAS,
    *,
    gt_bbox: np.ndarray | None = None,
) -> np.ndarray:
    """Object keypoint similarity of every detection with every ground truth.

    gt_keypoints: (G, 17, 3) or (17, 3), image pixels and COCO visibility
        (0 = not labelled, 1 = labelled hidden, 2 = visible).
    gt_area: (G,) or scalar, the ground truth's segment area in pixels squared.
    dt_keypoints: (D, 17, 2|3) or (17, 2|3), image pixels; a third column
        (keypoint score) is ignored, as COCO ignores it.
    gt_bbox: (G, 4) or (4,) COCO boxes [x, y, w, h]; needed only for ground
        truth without labelled keypoints.
    Returns (D, G) float64 in 0..1.
    """
    gt = np.asarray(gt_keypoints, dtype=np.float64).reshape(-1, NUM_PARTS, 3)
    dt = np.asarray(dt_keypoints, dtype=np.float64)
    dt = dt.reshape(-1, NUM_PARTS, dt.shape[-1])[..., :2]
    area = np.broadcast_to(np.asarray(gt_area, dtype=np.float64), (gt.shape[0],))
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2  # (17,)

    labelled = gt[:, :, 2] > 0  # (G, 17)
    has_labels = labelled.any(axis=1)  # (G,)

    # (D, G, 17) squared distances to labelled keypoints.
    d2 = ((dt[:, None, :, :] - gt[None, :, :, :2]) ** 2).sum(axis=-1)
    if not has_labels.all():
        if gt_bbox is None:
            raise ValueError("gt_bbox is needed for ground truth without labelled keypoints")
        box = np.asarray(gt_bbox, dtype=np.float64).reshape(-1, 4)
        # The box grown by its width/height on each side: distance outside it.
        lo = box[:, :2] - box[:, 2:]  # (G, 2)
        hi = box[:, :2] + 2 * box[:, 2:]
        outside = np.maximum(lo[None, :, None, :] - dt[:, None, :, :], 0) + np.maximum(
            dt[:, None, :, :] - hi[None, :, None, :], 0
        )  # (D, G, 17, 2)
        d2 = np.where(has_labels[None, :, None], d2, (outside ** 2).sum(axis=-1))

    e = d2 / variances / (area[None, :, None] + np.spacing(1)) / 2
    # Average over labelled keypoints, or over all 17 when none are labelled.
    counted = np.where(has_labels[:, None], labelled, True)  # (G, 17)
    return (np.exp(-e) * counted[None]).sum(axis=-1) / counted.sum(axis=-1)[None]


@dataclass(frozen=True, slots=True)
class _ImageMatches:
    """One image's matching for one category and area range (COCOeval's evalImg)."""

    dt_scores: np.ndarray  # (D,) descending
    dt_matched: np.ndarray  # (T, D) bool
    dt_ignored: np.ndarray  # (T, D) bool
    gt_ignored: np.ndarray  # (G,) bool


def _gt_arrays(gts: list[dict]) -> dict[str, np.ndarray]:
    keypoints = np.array([g["keypoints"] for g in gts], dtype=np.float64).reshape(-1, NUM_PARTS, 3)
    num_keypoints = np.array(
        [g["num_keypoints"] if "num_keypoints" in g else int((kp[:, 2] > 0).sum())
         for g, kp in zip(gts, keypoints)]
    )
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    return {
        "keypoints": keypoints,
        "area": np.array([g["area"] for g in gts], dtype=np.float64),
        "bbox": np.array([g["bbox"] for g in gts], dtype=np.float64).reshape(-1, 4),
        "crowd": crowd,
        "ignore": crowd | (num_keypoints == 0),
    }


def _dt_arrays(dts: list[dict]) -> dict[str, np.ndarray]:
    scores = np.array([d["score"] for d in dts], dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")[:MAX_DETECTIONS]
    return {
        "keypoints": np.array([dts[i]["keypoints"] for i in order], dtype=np.float64).reshape(
            -1, NUM_PARTS, 3
        ),
        "area": np.array([dts[i]["area"] for i in order], dtype=np.float64),
        "score": scores[order],
    }


def _match_image(
    ious: np.ndarray,  # (D, G), detections by descending score
    gt_ignored: np.ndarray,  # (G,) bool, already including the area range
    gt_crowd: np.ndarray,  # (G,) bool
    dt_area: np.ndarray,  # (D,)
    area_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching at every threshold at once; returns dt matched/ignored (T, D)."""
    n_thr = len(OKS_THRESHOLDS)
    n_dt, n_gt = ious.shape
    thresholds = np.minimum(OKS_THRESHOLDS, _MAX_MATCH_OKS)[:, None]  # (T, 1)
    gt_taken = np.zeros((n_thr, n_gt), dtype=bool)
    dt_matched = np.zeros((n_thr, n_dt), dtype=bool)
    dt_ignored = np.zeros((n_thr, n_dt), dtype=bool)
    rows = np.arange(n_thr)
    for d in range(n_dt if n_gt else 0):
        open_ = (~gt_taken | gt_crowd[None]) & (ious[d][None] >= thresholds)  # (T, G)
        choice = np.full(n_thr, -1)
        # Non-ignored ground truth first; ignored only when none of those fits.
        for pool in (~gt_ignored, gt_ignored):
            cand = open_ & pool[None] & (choice[:, None] < 0)
            value = np.where(cand, ious[d][None], -np.inf)
            # COCOeval keeps the last of equal best values: argmax on the reversed row.
            last_best = n_gt - 1 - np.argmax(value[:, ::-1], axis=1)
            found = cand.any(axis=1)
            choice = np.where(found, last_best, choice)
        hit = choice >= 0
        dt_matched[hit, d] = True
        dt_ignored[hit, d] = gt_ignored[choice[hit]]
        gt_taken[rows[hit], choice[hit]] = True
    outside = (dt_area < area_range[0]) | (dt_area > area_range[1])
    dt_ignored |= ~dt_matched & outside[None]
    return dt_matched, dt_ignored


def _precision_recall(per_image: list[_ImageMatches]) -> tuple[np.ndarray, np.ndarray] | None:
    """(T, R) interpolated precision and (T,) recall over images, or None without GT."""
    n_gt = int(sum(np.count_nonzero(~m.gt_ignored) for m in per_image))
    if n_gt == 0:
        return None
    scores = np.concatenate([m.dt_scores for m in per_image])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([m.dt_matched for m in per_image], axis=1)[:, order]
    ignored = np.concatenate([m.dt_ignored for m in per_image], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)
    n_thr, n_dt = tp.shape
    if n_dt == 0:
        return np.zeros((n_thr, len(RECALL_POINTS))), np.zeros(n_thr)
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    sampled = np.zeros((n_thr, len(RECALL_POINTS)))
    for t in range(n_thr):
        idx = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        reached = idx < n_dt
        sampled[t, reached] = envelope[t, idx[reached]]
    return sampled, recall[:, -1]


def _prepare_results(gt: dict, results: list[dict]) -> list[dict]:
    """Results with area and id filled in as ``COCO.loadRes`` fills them (copies)."""
    image_ids = {img["id"] for img in gt["images"]}
    unknown = {r["image_id"] for r in results} - image_ids
    if unknown:
        raise ValueError(f"results name images absent from the ground truth: {sorted(unknown)[:5]}")
    use_bbox = bool(results) and bool(results[0].get("bbox"))
    prepared = []
    for i, r in enumerate(results):
        r = dict(r)
        if use_bbox:
            r["area"] = float(r["bbox"][2]) * float(r["bbox"][3])
        else:
            kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(NUM_PARTS, 3)
            extent = kp[:, :2].max(axis=0) - kp[:, :2].min(axis=0)
            r["area"] = float(extent[0] * extent[1])
        r["id"] = i + 1
        prepared.append(r)
    return prepared


def evaluate_keypoints(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    """OKS AP and AR of keypoint results against COCO ground truth.

    gt: a COCO keypoint dataset (``images``, ``annotations``, ``categories``);
    every image in it counts, with or without results.
    results: COCO keypoint results (``image_id``, ``category_id``,
    ``keypoints`` [x, y, score] * 17, ``score``).
    Returns AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl, each in 0..1,
    or -1 where there is no ground truth to score against (as COCOeval does).
    """
    image_ids = sorted({img["id"] for img in gt["images"]})
    category_ids = sorted({c["id"] for c in gt["categories"]})
    gts: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for ann in gt["annotations"]:
        gts[ann["image_id"], ann["category_id"]].append(ann)
    dts: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for res in _prepare_results(gt, results):
        dts[res["image_id"], res["category_id"]].append(res)

    n_thr, n_rec = len(OKS_THRESHOLDS), len(RECALL_POINTS)
    n_area = len(AREA_RANGES)
    precision = -np.ones((n_thr, n_rec, len(category_ids), n_area))
    recall = -np.ones((n_thr, len(category_ids), n_area))

    for k, cat in enumerate(category_ids):
        per_area: list[list[_ImageMatches]] = [[] for _ in AREA_RANGES]
        for img in image_ids:
            g_list, d_list = gts.get((img, cat), []), dts.get((img, cat), [])
            if not g_list and not d_list:
                continue
            g = _gt_arrays(g_list)
            d = _dt_arrays(d_list)
            ious = (
                oks(g["keypoints"], g["area"], d["keypoints"], gt_bbox=g["bbox"])
                if len(g_list) and len(d_list)
                else np.zeros((len(d["score"]), len(g_list)))
            )
            for a, area_range in enumerate(AREA_RANGES.values()):
                outside = (g["area"] < area_range[0]) | (g["area"] > area_range[1])
                gt_ignored = g["ignore"] | outside
                # COCOeval puts ignored ground truth last (stable); ties then break alike.
                gt_order = np.argsort(gt_ignored, kind="mergesort")
                matched, ignored = _match_image(
                    ious[:, gt_order], gt_ignored[gt_order], g["crowd"][gt_order],
                    d["area"], area_range,
                )
                per_area[a].append(_ImageMatches(d["score"], matched, ignored, gt_ignored))
        for a, matches in enumerate(per_area):
            if not matches:
                continue
            pr = _precision_recall(matches)
            if pr is not None:
                precision[:, :, k, a], recall[:, k, a] = pr

    def mean_valid(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(np.mean(valid)) if valid.size else -1.0

    t50 = np.flatnonzero(OKS_THRESHOLDS == 0.5)
    t75 = np.flatnonzero(OKS_THRESHOLDS == 0.75)
    area_index = {name: i for i, name in enumerate(AREA_RANGES)}
    a_all, a_med, a_large = area_index["all"], area_index["medium"], area_index["large"]
    return {
        "AP": mean_valid(precision[:, :, :, a_all]),
        "AP50": mean_valid(precision[t50][:, :, :, a_all]),
        "AP75": mean_valid(precision[t75][:, :, :, a_all]),
        "APm": mean_valid(precision[:, :, :, a_med]),
        "APl": mean_valid(precision[:, :, :, a_large]),
        "AR": mean_valid(recall[:, :, a_all]),
        "AR50": mean_valid(recall[t50][:, :, a_all]),
        "AR75": mean_valid(recall[t75][:, :, a_all]),
        "ARm": mean_valid(recall[:, :, a_med]),
        "ARl": mean_valid(recall[:, :, a_large]),
    }


def results_from_poses(image_id: int, poses: Poses) -> list[dict[str, Any]]:
    """COCO keypoint results for one image (PART_NAMES order is COCO's order)."""
    keypoints = np.concatenate(
        [poses.xy.astype(np.float64), poses.scores.astype(np.float64)[..., None]], axis=-1
    )  # (N, 17, 3)
    return [
        {
            "image_id": int(image_id),
            "category_id": PERSON_CATEGORY_ID,
            "keypoints": [float(v) for v in kp.ravel()],
            "score": float(score),
        }
        for kp, score in zip(keypoints, poses.pose_scores)
    ]

