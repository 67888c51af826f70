"""Synthetic keypoint sequences built from real skeletons (COCO dev-set ground truth).

A standing person from ../shared/data/coco-kp-dev is moved, bent and rotated
over time the way a body moves when it falls, bends over, sits, lies down or
walks past, then noised the way a pose model reports it (keypoint jitter,
uneven scores, missed keypoints, whole missed frames). Sequences are lists of
`Shot`s (monotonic time, Poses) at a fixed frame rate, seeded, so every test
run sees the same data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepose.constants import NUM_PARTS, PART_IDS
from edgepose.core import Poses

W, H = 640, 480
FPS = 10.0
UPPER = np.arange(0, 11)  # head, shoulders, arms
LEGS = np.arange(11, 17)
HIPS = [PART_IDS["leftHip"], PART_IDS["rightHip"]]
KNEES = [PART_IDS["leftKnee"], PART_IDS["rightKnee"]]
ANKLES = [PART_IDS["leftAnkle"], PART_IDS["rightAnkle"]]
SHOULDERS = [PART_IDS["leftShoulder"], PART_IDS["rightShoulder"]]


@dataclass(frozen=True)
class Skeleton:
    """A standing person: xy (17, 2) with the feet mid-point at 0, 0 and height 1 (y down)."""

    name: str
    xy: np.ndarray
    labelled: np.ndarray  # (17,) bool


def upright_skeletons(coco_dev: Path, max_torso_deg: float = 20.0) -> list[Skeleton]:
    """Every annotated person standing upright with shoulders, hips and ankles labelled."""
    data = json.loads((coco_dev / "person_keypoints.json").read_text())
    out = []
    for ann in sorted(data["annotations"], key=lambda a: a["id"]):
        if ann.get("iscrowd") or ann["num_keypoints"] < 13:
            continue
        k = np.asarray(ann["keypoints"], np.float64).reshape(NUM_PARTS, 3)
        vis = k[:, 2] > 0
        if not (vis[SHOULDERS].all() and vis[HIPS].all() and vis[ANKLES].any()):
            continue
        xy = k[:, :2].copy()
        sh, hp = xy[SHOULDERS].mean(0), xy[HIPS].mean(0)
        torso = math.degrees(math.atan2(abs(sh[0] - hp[0]), hp[1] - sh[1]))
        feet = xy[ANKLES][vis[ANKLES]].mean(0)
        body = math.degrees(math.atan2(abs(sh[0] - feet[0]), feet[1] - sh[1]))
        if torso > max_torso_deg or body > max_torso_deg or feet[1] <= hp[1]:
            continue
        xy[~vis] = hp  # unlabelled parts sit at the hips with score 0
        top = xy[vis, 1].min()
        height = feet[1] - top
        if height <= 0:
            continue
        out.append(Skeleton(f"{ann['image_id']}/{ann['id']}", (xy - feet) / height, vis))
    return out


def rotate(xy: np.ndarray, pivot: np.ndarray, deg: float) -> np.ndarray:
    """Points turned by `deg` about `pivot` (positive: clockwise on screen, y down)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    d = xy - pivot
    return pivot + np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1)


def ease(u: float) -> float:
    """0..1 -> 0..1, accelerating: how a body tips over."""
    u = min(max(u, 0.0), 1.0)
    return u * u


def smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def hip_mid(xy: np.ndarray) -> np.ndarray:
    return xy[HIPS].mean(0)


# --- body movements (unit skeleton space: feet at 0,0; height 1; y down) ------------


def bend(base: np.ndarray, deg: float) -> np.ndarray:
    """Upper body turned about the hips (bending forwards for positive deg)."""
    out = base.copy()
    out[UPPER] = rotate(base[UPPER], hip_mid(base), deg)
    return out


def squat(base: np.ndarray, depth: float, direction: float = 1.0) -> np.ndarray:
    """Hips lowered by `depth` (fraction of standing hip height), knees pushed forwards."""
    out = base.copy()
    hip_y = hip_mid(base)[1]  # negative (above the feet)
    lower = -hip_y * depth
    out[HIPS, 1] += lower
    out[UPPER, 1] += lower
    knee_y = base[KNEES, 1]
    out[KNEES, 1] = knee_y + lower * 0.5
    out[KNEES, 0] += direction * lower * 0.9  # knees go forward as the hips go down
    return out


def sit_on_floor(base: np.ndarray, lean_deg: float, direction: float = 1.0) -> np.ndarray:
    """Hips on the floor, legs straight out forwards, torso leaning back by `lean_deg`."""
    out = base.copy()
    hips = hip_mid(base)
    leg = -hips[1]
    shift = np.array([0.0, leg * 0.95])  # hips come down to just above the floor
    out[UPPER] = base[UPPER] + shift
    out[HIPS] = base[HIPS] + shift
    h = hip_mid(out)
    for part, frac in ((KNEES, 0.5), (ANKLES, 1.0)):
        out[part, 0] = h[0] + direction * leg * frac
        out[part, 1] = h[1] + 0.02
    out[UPPER] = rotate(out[UPPER], h, -direction * lean_deg)
    return out


def lie_back(seated: np.ndarray, deg: float, direction: float = 1.0) -> np.ndarray:
    """From sitting on the floor, the upper body lowered backwards by `deg` about the hips."""
    out = seated.copy()
    out[UPPER] = rotate(seated[UPPER], hip_mid(seated), -direction * deg)
    return out


def sit_chair(base: np.ndarray, direction: float = 1.0) -> np.ndarray:
    """Seated on a chair: hips at knee height, thighs level, shins vertical, torso upright."""
    out = base.copy()
    hips = hip_mid(base)
    thigh = abs(base[KNEES, 1].mean() - hips[1])
    shin = abs(base[KNEES, 1].mean())
    seat_y = -shin
    drop = seat_y - hips[1]
    out[UPPER] = base[UPPER] + np.array([0.0, drop])
    out[HIPS] = base[HIPS] + np.array([0.0, drop])
    out[KNEES, 0] = hip_mid(out)[0] + direction * thigh
    out[KNEES, 1] = seat_y
    out[ANKLES, 0] = out[KNEES, 0]
    out[ANKLES, 1] = 0.0
    return out


def fallen(base: np.ndarray, deg: float) -> np.ndarray:
    """The whole body turned about the feet by `deg` (a rigid fall)."""
    return rotate(base, np.zeros(2), deg)


def crumpled(base: np.ndarray) -> np.ndarray:
    """Knees gone: the body squashed towards the floor, still roughly upright."""
    out = base.copy()
    out[:, 1] *= 0.45
    return out


def lerp(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    return a + (b - a) * u


def walk(base: np.ndarray, phase: float) -> np.ndarray:
    """A walking stride: legs swinging about the hips, a slight bob."""
    out = base.copy()
    swing = 20.0 * math.sin(phase)
    h = hip_mid(base)
    for side, sign in ((0, 1.0), (1, -1.0)):
        parts = [HIPS[side], KNEES[side], ANKLES[side]]
        out[parts[1:]] = rotate(base[parts[1:]], base[parts[0]], sign * swing)
    out[:, 1] += 0.01 * math.cos(2 * phase) - 0.01
    del h
    return out


# --- sequences ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    t: float
    poses: Poses


@dataclass(frozen=True)
class Scenario:
    name: str
    is_fall: bool
    shots: list[Shot]
    lying_zone: list[list[float]] | None = None  # a bed polygon, for "lie in bed"


class Camera:
    """Places unit skeletons in a W x H frame and reports them like a pose model would."""

    def __init__(self, rng: np.random.Generator, *, jitter: float = 0.01, miss_part: float = 0.05,
                 miss_frame: float = 0.05):
        self.rng = rng
        self.jitter = jitter
        self.miss_part = miss_part
        self.miss_frame = miss_frame

    def observe(self, people: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]) -> Poses:
        """people: (unit xy, labelled, height px, feet position px)."""
        xys, scores = [], []
        for unit, labelled, height, feet in people:
            if self.rng.random() < self.miss_frame:
                continue
            xy = unit * height + feet
            xy = xy + self.rng.normal(0.0, self.jitter * height, xy.shape)
            s = self.rng.uniform(0.55, 0.95, NUM_PARTS)
            s[self.rng.random(NUM_PARTS) < self.miss_part] = 0.1
            s[~labelled] = 0.0
            xys.append(xy)
            scores.append(s)
        if not xys:
            return Poses.empty()
        xy = np.asarray(xys, np.float32)
        sc = np.asarray(scores, np.float32)
        return Poses(xy, sc, sc.mean(axis=1))


def _timeline(duration: float) -> np.ndarray:
    return np.arange(0.0, duration, 1.0 / FPS)


def scenario(kind: str, sk: Skeleton, rng: np.random.Generator) -> Scenario:
    """One sequence of `kind` for skeleton `sk`, with random timing, size, place and side."""
    cam = Camera(rng)
    height = rng.uniform(170, 260)
    direction = rng.choice([-1.0, 1.0])
    feet = np.array([rng.uniform(W / 2 - 40, W / 2 + 40), rng.uniform(400, 450)])
    base = sk.xy
    t0 = rng.uniform(1.5, 3.0)  # standing before anything happens
    shots: list[Shot] = []
    lying_zone = None

    def pose_at(t: float) -> np.ndarray:
        u = t - t0
        if kind == "fall_rigid":
            T = rng_T[0]
            return fallen(base, direction * rng_A[0] * ease(u / T)) if u > 0 else base
        if kind == "fall_crumple":
            T1, T2 = rng_T[0] * 0.6, rng_T[0] * 0.6
            if u <= 0:
                return base
            mid = crumpled(base)
            if u < T1:
                return lerp(base, mid, smooth(u / T1))
            return lerp(mid, fallen(base, direction * rng_A[0]), smooth((u - T1) / T2))
        if kind == "fall_partial":  # ends propped on an elbow, body at 65-75 degrees
            T = rng_T[0]
            return fallen(base, direction * rng_A[1] * ease(u / T)) if u > 0 else base
        if kind == "bend_over":
            T = rng_T[0]
            hold = rng_T[1] + 2.0
            if u <= 0:
                return base
            if u < T:
                return bend(base, direction * rng_A[2] * smooth(u / T))
            if u < T + hold:
                return bend(base, direction * rng_A[2])
            return bend(base, direction * rng_A[2] * (1 - smooth((u - T - hold) / T)))
        if kind == "tie_shoes":
            T, hold = rng_T[0] + 0.3, rng_T[1] + 3.0
            k = smooth(u / T) if u < T + hold else 1 - smooth((u - T - hold) / T)
            k = max(k, 0.0) if u > 0 else 0.0
            return bend(squat(base, 0.5 * k, direction), direction * rng_A[3] * k)
        if kind == "sit_chair":
            T = rng_T[0]
            return lerp(base, sit_chair(base, direction), smooth(u / T)) if u > 0 else base
        if kind == "sit_floor":
            T = rng_T[0]
            return lerp(base, sit_on_floor(base, 15.0, direction), smooth(u / T)) if u > 0 else base
        if kind == "lie_down_slowly":  # sit on the floor, settle, then lie back
            # A deliberate lie-down pauses seated; sitting down and falling straight back
            # within the descent window (falls.window_s) is what a collapse looks like.
            T1, pause, T2 = rng_T[1], rng_T[1] * 0.6 + 0.4, rng_T[1] + 0.5
            seated = sit_on_floor(base, 15.0, direction)
            if u <= 0:
                return base
            if u < T1:
                return lerp(base, seated, smooth(u / T1))
            if u < T1 + pause:
                return seated
            return lie_back(seated, 75.0 * smooth((u - T1 - pause) / T2), direction)
        if kind == "lie_down_rigid_slow":  # a slow, controlled lowering all the way
            T = rng_T[2]
            return fallen(base, direction * 88.0 * smooth(u / T)) if u > 0 else base
        if kind == "lie_in_bed":  # flops onto the bed as fast as a fall
            T = rng_T[0]
            return fallen(base, direction * 88.0 * ease(u / T)) if u > 0 else base
        if kind == "stand":
            return base
        raise ValueError(kind)

    rng_T = (rng.uniform(0.4, 1.0), rng.uniform(1.0, 2.5), rng.uniform(5.0, 8.0))
    rng_A = (rng.uniform(78, 95), rng.uniform(66, 76), rng.uniform(75, 100), rng.uniform(55, 70))
    duration = t0 + 12.0

    if kind == "walk_past":
        speed = rng.uniform(0.25, 0.45) * W * direction
        start = np.array([W / 2 - direction * W * 0.6, feet[1]])
        for t in _timeline(duration):
            f = start + np.array([speed * t, 0.0])
            shots.append(Shot(t, cam.observe([(walk(base, t * 2 * math.pi * 0.9), sk.labelled, height, f)])))
        return Scenario(kind, False, shots)

    if kind == "two_side_by_side":
        gap = height * rng.uniform(0.35, 0.6)
        f1 = feet - np.array([gap / 2, 0.0])
        f2 = feet + np.array([gap / 2, 0.0])
        T, hold = rng_T[0], rng_T[1] + 2
        for t in _timeline(duration):
            u = t - t0
            k = 0.0 if u <= 0 else (smooth(u / T) if u < T + hold else 1 - smooth((u - T - hold) / T))
            other = bend(base, direction * rng_A[2] * max(k, 0.0))  # one of them bends over
            shots.append(Shot(t, cam.observe([
                (base, sk.labelled, height, f1),
                (other, sk.labelled, height * 0.97, f2),
            ])))
        return Scenario(kind, False, shots)

    if kind == "lie_in_bed":
        # The bed: where the lying body ends up, with a margin (centre-anchored zone).
        end = fallen(base, direction * 88.0) * height + feet
        x0, y0 = end.min(0) - 20
        x1, y1 = end.max(0) + 20
        lying_zone = [[x0 / W, y0 / H], [x1 / W, y0 / H], [x1 / W, y1 / H], [x0 / W, y1 / H]]
        lying_zone = [[min(max(v, 0.0), 1.0) for v in p] for p in lying_zone]

    for t in _timeline(duration):
        shots.append(Shot(t, cam.observe([(pose_at(t), sk.labelled, height, feet)])))
    return Scenario(kind, kind.startswith("fall_"), shots, lying_zone)


FALL_KINDS = ("fall_rigid", "fall_crumple", "fall_partial")
NOT_FALL_KINDS = (
    "bend_over",
    "tie_shoes",
    "sit_chair",
    "sit_floor",
    "lie_down_slowly",
    "lie_down_rigid_slow",
    "lie_in_bed",
    "walk_past",
    "two_side_by_side",
    "stand",
)


def generated_set(skeletons: list[Skeleton], seed: int = 10, repeats: int = 1) -> list[Scenario]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        for sk in skeletons:
            for kind in FALL_KINDS + NOT_FALL_KINDS:
                out.append(scenario(kind, sk, rng))
    return out


#: A hand-made standing person (no data needed): feet at 0, 0, height 1, y down.
CANONICAL = Skeleton(
    "canonical",
    np.array(
        [
            [0.0, -0.94], [0.02, -0.96], [-0.02, -0.96], [0.05, -0.95], [-0.05, -0.95],
            [0.11, -0.82], [-0.11, -0.82], [0.14, -0.64], [-0.14, -0.64], [0.15, -0.48],
            [-0.15, -0.48], [0.07, -0.52], [-0.07, -0.52], [0.07, -0.27], [-0.07, -0.27],
            [0.07, 0.0], [-0.07, 0.0],
        ]
    ),
    np.ones(NUM_PARTS, bool),
)


def person(unit: np.ndarray, height: float, feet: tuple[float, float], score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(xy (17, 2) frame pixels, scores (17,)) of a unit skeleton placed in the frame."""
    return unit * height + np.asarray(feet, np.float64), np.full(NUM_PARTS, score)


def poses_of(*people: tuple[np.ndarray, np.ndarray]) -> Poses:
    if not people:
        return Poses.empty()
    xy = np.asarray([p[0] for p in people], np.float32)
    sc = np.asarray([p[1] for p in people], np.float32)
    return Poses(xy, sc, sc.mean(axis=1))
