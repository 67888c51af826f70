"""Named polygons in fractions of the frame, and which people stand in them (pure numpy).

A person is placed by one point, their *anchor*, so a person is in exactly
one place even when their box straddles a line: ``feet`` is the bottom centre
of their keypoints' box (where they stand: right for rooms and doorways),
``centre`` the mid-point of their hips, or of the box when no hip was found
(right for a bed or a sofa, where the feet hang over the edge). Coordinates
are fractions of the frame (x / width, y / height) like the published poses,
so zones survive a change of camera resolution.

- ``occupancy`` zones count the people anchored in them (events.py debounces
  the counts into presence).
- ``exclusion`` zones remove the people anchored in them before anything else
  sees them: a poster, a television, a mirror.
- ``lying_ok`` marks a zone (of either kind) where lying down is normal: no
  fall is raised for a person anchored there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import ZoneConfig
from .constants import PART_IDS
from .core import Poses

__all__ = ["Zone", "ZoneFilter", "anchors", "points_in_polygon", "zone_membership"]

_HIPS = np.array([PART_IDS["leftHip"], PART_IDS["rightHip"]])


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone, ready for tests: its polygon as a (K, 2) float64 array in 0..1."""

    name: str
    kind: str  # "occupancy" | "exclusion"
    lying_ok: bool
    anchor: str  # "feet" | "centre"
    polygon: np.ndarray

    @classmethod
    def from_config(cls, config: ZoneConfig) -> "Zone":
        return cls(
            config.name, config.kind, config.lying_ok, config.anchor,
            np.asarray(config.points, np.float64).reshape(-1, 2),
        )

    def contains(self, points: np.ndarray) -> np.ndarray:
        return points_in_polygon(points, self.polygon)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(M,) bool: which of `points` (M, 2) lie inside `polygon` (K, 2), by the even-odd rule.

    Crossing counts along +x, with half-open edges, so a point on a shared edge
    of two touching zones belongs to exactly one of them.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    x, y = points[:, 0:1], points[:, 1:2]  # (M, 1)
    x0, y0 = polygon[:, 0], polygon[:, 1]  # (K,)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 <= y) != (y1 <= y)  # (M, K): the edge crosses this point's row
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    crossings = straddles & (x < x_cross)
    return (crossings.sum(axis=1) % 2) == 1


def anchors(poses: Poses, width: int, height: int, kind: str, min_score: float) -> np.ndarray:
    """(N, 2) anchor points of every pose in fractions of the frame (see the module doc)."""
    n = len(poses)
    if n == 0:
        return np.zeros((0, 2), np.float64)
    boxes = np.asarray(poses.bounding_boxes(min_score), np.float64)
    if kind == "feet":
        out = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)
    elif kind == "centre":
        out = (boxes[:, :2] + boxes[:, 2:]) / 2
        ok = np.asarray(poses.scores)[:, _HIPS] >= min_score  # (N, 2)
        have = ok.any(axis=1)
        if have.any():
            hips = np.asarray(poses.xy, np.float64)[:, _HIPS]  # (N, 2, 2)
            weights = ok[..., None].astype(np.float64)
            mid = (hips * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            out[have] = mid[have]
    else:
        raise ValueError(f"anchor must be 'feet' or 'centre', got {kind!r}")
    return out / np.array([width, height], np.float64)


def zone_membership(
    poses: Poses, zones: Sequence[Zone], width: int, height: int, min_score: float
) -> np.ndarray:
    """(N, Z) bool: pose i is anchored in zone z (each zone by its own anchor)."""
    out = np.zeros((len(poses), len(zones)), bool)
    cache: dict[str, np.ndarray] = {}
    for z, zone in enumerate(zones):
        if zone.anchor not in cache:
            cache[zone.anchor] = anchors(poses, width, height, zone.anchor, min_score)
        out[:, z] = zone.contains(cache[zone.anchor])
    return out


class ZoneFilter:
    """Drops the poses anchored in an exclusion zone; the first stage after estimation."""

    def __init__(self, zones: Sequence[Zone], min_score: float):
        self.zones = [z for z in zones if z.kind == "exclusion"]
        self.min_score = min_score

    def process(self, poses: Poses, width: int, height: int) -> Poses:
        if not self.zones or len(poses) == 0:
            return poses
        inside = zone_membership(poses, self.zones, width, height, self.min_score).any(axis=1)
        return poses if not inside.any() else poses.select(~inside)
