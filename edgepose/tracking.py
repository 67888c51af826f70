"""Stable person ids across frames, for any model (pure numpy, no clock).

The tracker follows TF.js pose-detection's keypoint tracker: poses are taken
highest-scoring first, and each continues the live track it is most similar
to. Similarity is COCO's object keypoint similarity (OKS, with COCO's
per-part sigmas) over the keypoints both confidently have; where they share
fewer than ``min_keypoints`` (a person half out of frame, a model that found
only a head), or when no track is similar enough by keypoints (a body changing
shape fast, as in a fall), box overlap (IoU) decides instead. A track moves with its last
velocity while unseen, so two people walking past each other keep their ids,
and it is dropped ``max_age_s`` after it was last seen: a person gone for
longer comes back with a new id. Times are the caller's monotonic seconds
(`Frame.captured_mono`), never the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TrackingConfig
from .constants import NUM_PARTS
from .core import Poses, box_area, iou_table

__all__ = ["COCO_SIGMAS", "Tracker", "box_iou", "iou_table", "oks", "oks_table"]

#: COCO's per-keypoint OKS sigmas, in COCO keypoint order (nose .. ankles):
#: how far a part may be off, relative to the person's size, and still count.
COCO_SIGMAS = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
     0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
    dtype=np.float64,
)
assert COCO_SIGMAS.shape == (NUM_PARTS,)

#: Velocity smoothing: weight of the newest frame-to-frame velocity.
VELOCITY_WEIGHT = 0.5
#: A track is not extrapolated further than this (seconds): beyond it, a guess
#: of where someone walked is worse than where they were last seen.
MAX_EXTRAPOLATION_S = 0.5


def oks_table(
    xy: np.ndarray, ok: np.ndarray, ref_xy: np.ndarray, ref_ok: np.ndarray, ref_area: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Object keypoint similarity of every pose against every reference pose, over the
    keypoints both have: xy (n, 17, 2) and ok (n, 17) against ref_xy (m, 17, 2),
    ref_ok (m, 17) and ref_area (m,), each reference person's box area in the same
    pixels (COCO uses the segment area; the box is what a tracker has). Returns
    (similarity 0..1, keypoints compared), each (n, m); (0.0, 0) where none is shared.
    All pairs in one pass of array arithmetic: the tracker runs on every frame."""
    both = ok[:, None, :] & ref_ok[None, :, :]  # (n, m, 17)
    shared = both.sum(axis=-1)
    d2 = ((xy[:, None] - ref_xy[None]) ** 2).sum(axis=-1)
    area = np.maximum(ref_area, 1e-6)[None, :, None]
    e = np.exp(-d2 / (2.0 * area * (2.0 * COCO_SIGMAS) ** 2))
    return np.where(both, e, 0.0).sum(axis=-1) / np.maximum(shared, 1), shared


def oks(
    a_xy: np.ndarray, a_ok: np.ndarray, b_xy: np.ndarray, b_ok: np.ndarray, area: float
) -> tuple[float, int]:
    """`oks_table` for one pair of poses (17, 2), `area` that of b: (similarity, keypoints compared)."""
    sim, shared = oks_table(a_xy[None], a_ok[None], b_xy[None], b_ok[None], np.array([area], np.float64))
    return float(sim[0, 0]), int(shared[0, 0])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """`iou_table` for one pair of boxes x0, y0, x1, y1."""
    return float(iou_table(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def _match_tables(
    xy: np.ndarray, ok: np.ndarray, boxes: np.ndarray,
    predicted: list[tuple[np.ndarray, np.ndarray]], track_ok: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pose against every track: OKS against the track's predicted keypoints and
    box area, keypoints shared, and box IoU with the predicted box; each (poses, tracks)."""
    n, m = len(xy), len(predicted)
    if n == 0 or m == 0:
        return np.zeros((n, m)), np.zeros((n, m), np.int64), np.zeros((n, m))
    t_xy = np.stack([p[0] for p in predicted])  # (m, 17, 2)
    t_box = np.stack([p[1] for p in predicted])  # (m, 4)
    sim, shared = oks_table(xy, ok, t_xy, np.stack(track_ok), box_area(t_box))
    return sim, shared, iou_table(boxes, t_box)


@dataclass
class _Track:
    id: int
    xy: np.ndarray  # (17, 2) float64, last seen, frame pixels
    ok: np.ndarray  # (17,) bool, confident when last seen
    box: np.ndarray  # (4,) float64
    velocity: np.ndarray  # (2,) px/s of the box centre
    first_seen: float
    last_seen: float

    def predicted(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints and box moved along the track's velocity to `now`."""
        dt = min(max(now - self.last_seen, 0.0), MAX_EXTRAPOLATION_S)
        shift = self.velocity * dt
        return self.xy + shift, self.box + shift[[0, 1, 0, 1]]


class Tracker:
    """Gives every pose a track id (>= 1) that stays with the person across frames.

    ``process(poses, now)`` returns the same poses with ``track_ids`` set, in
    the same order; a pose that cannot get a track (more poses in one frame
    than ``max_tracks``, lowest scores first) is left out. Ids are never
    reused while the tracker lives; `first_id` carries on after the ids of an
    earlier run that people counted before a restart still have.
    """

    def __init__(self, config: TrackingConfig | None = None, *, first_id: int = 1):
        self.config = config or TrackingConfig()
        self._tracks: list[_Track] = []
        self._next_id = max(1, int(first_id))
        self._last_now: float | None = None

    @property
    def live_ids(self) -> list[int]:
        return [t.id for t in self._tracks]

    def reset(self) -> None:
        """Forget every track (between unrelated inputs); ids keep counting up."""
        self._tracks.clear()
        self._last_now = None

    def process(self, poses: Poses, now: float) -> Poses:
        cfg = self.config
        if self._last_now is not None and now < self._last_now:
            now = self._last_now  # a monotonic clock never goes back; a replayed file might
        self._last_now = now
        self._tracks = [t for t in self._tracks if now - t.last_seen <= cfg.max_age_s]

        n = len(poses)
        xy = np.asarray(poses.xy, np.float64)
        ok = np.asarray(poses.scores) >= cfg.min_part_score
        boxes = np.asarray(poses.bounding_boxes(cfg.min_part_score), np.float64)
        ids = np.zeros(n, np.int64)
        sim, shared, iou = _match_tables(xy, ok, boxes, [t.predicted(now) for t in self._tracks],
                                         [t.ok for t in self._tracks])
        by_keypoints = (shared >= cfg.min_keypoints) & (sim >= cfg.min_similarity)
        free = set(range(len(self._tracks)))

        for i in np.argsort(-np.asarray(poses.pose_scores), kind="stable"):
            best, best_sim = None, -1.0  # by keypoints
            by_box, by_box_iou = None, -1.0  # by box overlap, when no track matches by keypoints
            for j in free:
                if by_keypoints[i, j]:
                    if sim[i, j] > best_sim:
                        best, best_sim = j, sim[i, j]
                    continue
                # Too few shared keypoints, or a body changing shape fast (someone
                # falling): the box still overlaps where the keypoints do not.
                if iou[i, j] >= cfg.min_iou and iou[i, j] > by_box_iou:
                    by_box, by_box_iou = j, iou[i, j]
            if best is None:
                best = by_box
            if best is not None:
                free.discard(best)
                self._update(self._tracks[best], xy[i], ok[i], boxes[i], now)
                ids[i] = self._tracks[best].id

        # Unmatched poses start tracks, best first; the cap evicts the longest-unseen
        # track that was not seen in this frame, or else leaves the pose out.
        for i in np.argsort(-np.asarray(poses.pose_scores), kind="stable"):
            if ids[i]:
                continue
            if len(self._tracks) >= cfg.max_tracks:
                stale = [t for t in self._tracks if t.last_seen < now]
                if not stale:
                    continue
                self._tracks.remove(min(stale, key=lambda t: t.last_seen))
            track = _Track(
                self._next_id, xy[i].copy(), ok[i].copy(), boxes[i].copy(),
                np.zeros(2), now, now,
            )
            self._next_id += 1
            self._tracks.append(track)
            ids[i] = track.id

        keep = ids > 0
        out = poses.replace(track_ids=ids)
        return out if keep.all() else out.select(keep)

    @staticmethod
    def _update(track: _Track, xy: np.ndarray, ok: np.ndarray, box: np.ndarray, now: float) -> None:
        dt = now - track.last_seen
        if dt > 0:
            centre_new = (box[:2] + box[2:]) / 2
            centre_old = (track.box[:2] + track.box[2:]) / 2
            velocity = (centre_new - centre_old) / dt
            track.velocity = VELOCITY_WEIGHT * velocity + (1 - VELOCITY_WEIGHT) * track.velocity
        track.xy, track.ok, track.box = xy.copy(), ok.copy(), box.copy()
        track.last_seen = now
