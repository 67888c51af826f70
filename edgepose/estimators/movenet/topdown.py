"""Top-down MoveNet: MultiPose finds the people, a single-pose model places each one's keypoints.

MultiPose Lightning sees the whole frame at a low resolution: it finds people
(boxes) cheaply but places their keypoints coarsely, misses people in unusual
postures (lying on the floor) and sometimes sees people that are not there.
A single-pose model (Lightning 192, Thunder 256) sees one person at a time
in a square crop at full detail. Together, per frame:

1. *follow*: every person kept on the previous frame gets a crop around where
   their keypoints were (so a person MultiPose misses this frame, e.g. lying
   down, is still looked at);
2. *detect*: MultiPose on the frame; a person it finds who is not already in a
   followed crop gets a crop around their box;
3. *refine*: the single-pose model runs on each crop. A crop whose pose scores
   below ``min_pose_score`` holds nobody (that is how phantoms and drifted
   crops die); two crops that found the same person keep the better pose.

A crop for a body that is wider than tall (lying down) is also run turned by
90 degrees when the upright pass scores low: single-pose models were trained
mostly on upright people.

Pure numpy around two `TfliteModel`s (the detector's and the refiner's).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...constants import NUM_PARTS
from ...core import Poses, inside_table, iou_table
from .constants import MIN_CROP_KEYPOINT_SCORE
from .crop import CropRegion, crop_and_resize
from .decode import multipose_input, multipose_pixels, multipose_to_poses, singlepose_score
from .estimator import _Base, write_pixels

#: A crop around a MultiPose box is a square this many times the box's longer side.
BOX_CROP_SCALE = 1.25
#: A crop that follows a person is a square this many times their keypoints' longer extent.
FOLLOW_CROP_SCALE = 1.35
#: A followed crop is at least this fraction of the frame's short side (a person seen
#: as a few keypoints still gets room to be found whole).
MIN_CROP_SIDE = 0.15
#: A detection whose box overlaps a followed person's box this much is that person.
SAME_PERSON_IOU = 0.4
#: Two refined poses whose keypoint boxes overlap this much are one person: the better stays...
DUPLICATE_IOU = 0.55
#: ... and so is a pose whose box lies this much inside a better one's (a part of the same
#: body found again from a crop around that part: the legs of someone lying, say).
DUPLICATE_INSIDE = 0.7
#: A crop holds a person when at least this many keypoints score at least this: the
#: pose score alone (the mean of the keypoints above 0.2) can be high for one or two
#: keypoints found in the background, which would keep a crop alive after its person left.
PERSON_KEYPOINTS = 5
PERSON_KEYPOINT_SCORE = 0.3
#: The turned pass runs when the upright pass scores below this and the body is wider than tall.
TURN_BELOW_SCORE = 0.45
TURN_ASPECT = 1.0


def square_crop(cx: float, cy: float, side: float, frame_w: int, frame_h: int) -> CropRegion:
    """A square of `side` pixels centred on (cx, cy), in normalised frame coordinates
    (it may reach past the frame: crop_and_resize fills that with black)."""
    y0, x0 = (cy - side / 2) / frame_h, (cx - side / 2) / frame_w
    return CropRegion(y0, x0, y0 + side / frame_h, x0 + side / frame_w, side / frame_h, side / frame_w)


def crop_from_box(box: np.ndarray, frame_w: int, frame_h: int, scale: float = BOX_CROP_SCALE) -> CropRegion:
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, MIN_CROP_SIDE * min(frame_w, frame_h) / scale) * scale
    return square_crop((x0 + x1) / 2, (y0 + y1) / 2, side, frame_w, frame_h)


def keypoint_box(xy: np.ndarray, scores: np.ndarray, min_score: float = MIN_CROP_KEYPOINT_SCORE) -> np.ndarray | None:
    """x0, y0, x1, y1 of the keypoints scoring above `min_score`; None when fewer than 2 do."""
    ok = scores > min_score
    if ok.sum() < 2:
        return None
    pts = xy[ok]
    return np.array([*pts.min(axis=0), *pts.max(axis=0)], np.float64)


def crop_following(xy: np.ndarray, scores: np.ndarray, frame_w: int, frame_h: int) -> CropRegion | None:
    box = keypoint_box(xy, scores)
    if box is None:
        return None
    return crop_from_box(box, frame_w, frame_h, FOLLOW_CROP_SCALE)


@dataclass(frozen=True, slots=True)
class _Found:
    xy: np.ndarray  # (17, 2) frame pixels
    scores: np.ndarray  # (17,)
    score: float
    box: np.ndarray  # keypoint box, frame pixels


class TopDown:
    """The follow / detect / refine loop of the module doc, over two models.

    `detect(rgb) -> Poses with boxes` and `refine(rgb, region, turned) -> (xy, scores)`
    are the two model calls (the estimator binds them to its interpreters), so
    this class is testable with stand-ins.
    """

    def __init__(self, detect, refine, *, min_pose_score: float, max_poses: int, turn: bool = True,
                 detect_every: int = 1):
        self.detect = detect
        self.refine = refine
        self.min_pose_score = float(min_pose_score)
        self.max_poses = int(max_poses)
        self.turn = turn
        self.detect_every = max(1, int(detect_every))
        self.previous: list[_Found] = []
        self.crops = 0  # refiner passes on the last frame
        self.detected = False  # whether the last frame ran the detector
        self._since_detect = 0
        self._lost = False  # someone followed on the frame before was not found again

    def reset(self) -> None:
        self.previous = []
        self._since_detect = 0
        self._lost = False

    def _should_detect(self) -> bool:
        """The detector runs on a first frame, when nobody is followed, after someone
        followed was lost, and every `detect_every` frames (for newcomers); in between,
        the crops that follow people are enough."""
        return (not self.previous or self._lost or self._since_detect + 1 >= self.detect_every)

    def __call__(self, rgb: np.ndarray, *, detect: bool | None = None) -> list[_Found]:
        if detect is None:
            detect = self._should_detect()
        self.detected = detect
        self._since_detect = 0 if detect else self._since_detect + 1
        h, w = rgb.shape[:2]
        regions: list[CropRegion] = []
        followed: list[np.ndarray] = []
        for person in self.previous:
            region = crop_following(person.xy, person.scores, w, h)
            if region is not None:
                regions.append(region)
                followed.append(person.box)
        if detect:
            found = self.detect(rgb)
            boxes = found.boxes if found.boxes is not None else found.bounding_boxes()
            known = np.asarray(followed, np.float64).reshape(-1, 4)
            overlap = iou_table(np.asarray(boxes, np.float64), known)
            for i, box in enumerate(boxes):
                if overlap.shape[1] and overlap[i].max() >= SAME_PERSON_IOU:
                    continue
                regions.append(crop_from_box(box, w, h))
        self.crops = 0
        people: list[_Found] = []
        for region in regions:
            person = self._refine(rgb, region, w, h)
            if person is not None:
                people.append(person)
        people.sort(key=lambda p: -p.score)
        kept: list[_Found] = []
        for person in people:
            if kept:
                box, others = person.box[None], np.stack([k.box for k in kept])
                if (iou_table(box, others).max() >= DUPLICATE_IOU
                        or inside_table(box, others).max() >= DUPLICATE_INSIDE):
                    continue
            kept.append(person)
            if len(kept) == self.max_poses:
                break
        self._lost = len(kept) < len(followed)
        self.previous = kept
        return kept

    def _refine(self, rgb: np.ndarray, region: CropRegion, w: int, h: int) -> _Found | None:
        self.crops += 1
        xy, scores = self.refine(rgb, region, False)
        best = _found(xy, scores)
        if self.turn and (best is None or best.score < TURN_BELOW_SCORE):
            box = best.box if best is not None else None
            wide = box is None or (box[2] - box[0]) >= TURN_ASPECT * (box[3] - box[1])
            if wide:
                self.crops += 1
                turned = _found(*self.refine(rgb, region, True))
                if turned is not None and (best is None or turned.score > best.score):
                    best = turned
        if (best is None or best.score < self.min_pose_score
                or int((best.scores >= PERSON_KEYPOINT_SCORE).sum()) < PERSON_KEYPOINTS):
            return None  # nobody there: a crop of background gives a keypoint or two
        return best


def _found(xy: np.ndarray, scores: np.ndarray) -> _Found | None:
    box = keypoint_box(xy, scores)
    if box is None:
        return None
    return _Found(xy, scores, singlepose_score(scores), box)


def refine_in_crop(model: Any, write_pixels, rgb: np.ndarray, region: CropRegion, side: int,
                   turned: bool) -> tuple[np.ndarray, np.ndarray]:
    """One single-pose pass on `region` (turned by 90 degrees clockwise when `turned`):
    (17, 2) x, y frame pixels and (17,) scores."""
    pixels = crop_and_resize(rgb, region, side, side)
    if turned:
        pixels = np.ascontiguousarray(np.rot90(pixels, k=-1))
    write_pixels(model.input_view(), pixels)
    out = np.asarray(model.invoke()[0], np.float32).reshape(NUM_PARTS, 3)
    yx = out[:, :2].astype(np.float64)
    if turned:  # a point (y', x') of the turned crop is (1 - x', y') of the crop
        yx = np.stack([1.0 - yx[:, 1], yx[:, 0]], axis=-1)
    xy = region.to_frame(yx, rgb.shape[1], rgb.shape[0])
    return xy.astype(np.float32), out[:, 2].copy()


def found_to_poses(people: list[_Found]) -> Poses:
    if not people:
        return Poses.empty()
    return Poses(
        xy=np.stack([p.xy for p in people]).astype(np.float32),
        scores=np.stack([p.scores for p in people]).astype(np.float32),
        pose_scores=np.array([p.score for p in people], np.float32),
    )


__all__ = ["TopDown", "crop_from_box", "crop_following", "found_to_poses", "refine_in_crop", "square_crop"]


# --- the estimator --------------------------------------------------------------------

#: MultiPose instances scoring at least this get a crop: lower than MultiPose's own
#: default (0.25) since the refiner, not MultiPose, decides who is a person.
DETECT_MIN_SCORE = 0.2
#: On video, MultiPose runs on every this many frames while everyone is followed
#: (newcomers wait at most that long); always on a first frame and after a loss.
DETECT_EVERY = 5
_TIMING_KEYS = ("preprocess", "invoke", "decode")


class MoveNetTopDown(_Base):
    """`TopDown` over MultiPose (the detector) and single-pose Lightning or Thunder (the refiner).

    `info` describes the refiner (its file, its crop size, its precision): it places
    every keypoint; its label names the detector too; `detector_info` the detector."""

    still_passes = 1

    def __init__(self, detector: Any, refiner: Any, *, name: str, min_pose_score: float, max_poses: int,
                 threads: int = 1, clip: bool = True, turn: bool = True, detect_every: int | None = None,
                 cleanup: str = "none", min_keypoints: int = 0, min_part_score: float = 0.0) -> None:
        super().__init__(refiner, name=name, threads=threads, clip=clip, cleanup=cleanup,
                         min_keypoints=min_keypoints, min_part_score=min_part_score)
        self.info = dataclasses.replace(self.info, full_frame=True, finder=detector.info.path.stem)
        self.detector = detector  # a MoveNetMultiPose
        self.refiner = refiner  # a TfliteModel
        side = int(refiner.input_size[0])
        self._invoke_ms = 0.0

        def refine(rgb: np.ndarray, region: CropRegion, turned: bool):
            t = time.perf_counter()
            out = refine_in_crop(refiner, write_pixels, rgb, region, side, turned)
            self._invoke_ms += (time.perf_counter() - t) * 1e3
            return out

        def detect(rgb: np.ndarray) -> Poses:
            poses = detector.estimate(rgb)
            self._invoke_ms += detector.last_timing["invoke"] + detector.last_timing["preprocess"]
            return poses

        self.topdown = TopDown(detect, refine, min_pose_score=min_pose_score, max_poses=max_poses, turn=turn,
                               detect_every=DETECT_EVERY if detect_every is None else detect_every)

    @property
    def detector_info(self):
        return self.detector.info

    def reset(self) -> None:
        self.topdown.reset()

    def estimate(self, rgb: np.ndarray) -> Poses:
        t0 = time.perf_counter()
        self._invoke_ms = 0.0
        h, w = rgb.shape[:2]
        poses = self._finish(found_to_poses(self.topdown(rgb)), w, h)
        total = (time.perf_counter() - t0) * 1e3
        self.last_timing = {"preprocess": 0.0, "invoke": self._invoke_ms, "decode": max(0.0, total - self._invoke_ms)}
        return poses

    def close(self) -> None:
        self.detector.close()
        self.refiner.close()


#: Registry name -> the single-pose model that refines.
REFINERS = {"movenet-topdown-thunder": "movenet-thunder", "movenet-topdown-lightning": "movenet-lightning"}


def open_topdown(model, decode) -> MoveNetTopDown:
    """Load MultiPose (the detector) and the refiner `model.name` names; `model.quantized`
    "auto" picks each one's own CPU default (MultiPose and Thunder int8, Lightning float16)."""
    import logging

    from ...errors import ModelError
    from ...runtime import open_model
    from .. import MODELS, model_file, resolve_auto
    from .constants import MODEL_FILE, MODEL_STEMS, MULTIPOSE_MAX_INSTANCES, QUANTIZED_PRECISION, SINGLEPOSE_INPUT_SIDE
    from .estimator import MoveNetMultiPose, _check_outputs

    if model.name not in REFINERS:
        raise ModelError(f"{model.name!r} is not a top-down MoveNet model (known: {', '.join(REFINERS)})")
    if model.path:
        raise ModelError(f"model.path: {model.name} runs two bundled models (MultiPose and "
                         f"{REFINERS[model.name]}); a single file cannot replace them")
    auto = model.quantized is None
    model = resolve_auto(model)
    refiner_name = REFINERS[model.name]
    refiner_quantized = bool(model.quantized) and (not auto or MODELS[refiner_name].int8_on_cpu)
    opened = []
    try:
        detector_file = model_file(MODEL_FILE.format(stem="multipose",
                                                     precision=QUANTIZED_PRECISION[bool(model.quantized)]))
        det_tflite = open_model(detector_file, accelerator=model.accelerator, device=model.edgetpu_device,
                                threads=model.threads,
                                default_input_size=multipose_input(4, 3, model.multipose_long_side).size,
                                cpu_hint="edgepose's bundled movenet-multipose")
        opened.append(det_tflite)
        _check_outputs(det_tflite, "movenet-multipose")
        refiner_file = model_file(MODEL_FILE.format(stem=MODEL_STEMS[refiner_name],
                                                    precision=QUANTIZED_PRECISION[refiner_quantized]))
        side = SINGLEPOSE_INPUT_SIDE[refiner_name]
        ref_tflite = open_model(refiner_file, accelerator=model.accelerator, device=model.edgetpu_device,
                                threads=model.threads, default_input_size=(side, side),
                                cpu_hint=f"edgepose's bundled {refiner_name}")
        opened.append(ref_tflite)
        _check_outputs(ref_tflite, refiner_name)
        detector = MoveNetMultiPose(det_tflite, long_side=model.multipose_long_side,
                                    min_pose_score=DETECT_MIN_SCORE, max_poses=MULTIPOSE_MAX_INSTANCES,
                                    name="movenet-multipose", threads=model.threads)
        estimator = MoveNetTopDown(detector, ref_tflite, name=model.name,
                                   min_pose_score=decode.min_pose_score, max_poses=decode.max_poses,
                                   threads=model.threads, cleanup=decode.cleanup,
                                   min_keypoints=decode.min_keypoints, min_part_score=decode.min_part_score)
    except Exception:
        for tflite in opened:
            tflite.close()
        raise
    logging.getLogger(__name__).info(
        "model %s: detector %s (%s), refiner %s (%s)", model.name, detector_file.name,
        detector.info.precision, refiner_file.name, estimator.info.precision)
    return estimator
