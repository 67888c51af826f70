"""Overlay annotators: what gets drawn where, in which colour, at which size; and the
privacy backgrounds, which must not resemble the camera picture."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgepose.constants import DEFAULT_MIN_PART_SCORE, NUM_PARTS, PART_IDS
from edgepose.core import Poses
from edgepose.images import list_images
from edgepose.overlay import (
    PALETTE,
    PLAIN_BACKGROUND,
    PRIVACY_MODES,
    BoxAnnotator,
    LabelAnnotator,
    PointAnnotator,
    SkeletonAnnotator,
    encode_jpeg,
    overlay_background,
    person_colour,
    render_overlay,
)
from edgepose.sources import demo_dir
from ..resemblance import COARSE_MAX, DETAIL_MAX, resemblance

GREY = (128, 128, 128)


def blank(width: int = 200, height: int = 160) -> Image.Image:
    return Image.new("RGB", (width, height), GREY)


def one_person(points: dict[str, tuple[float, float]], score: float = 0.9) -> Poses:
    xy = np.zeros((1, NUM_PARTS, 2), np.float32)
    scores = np.zeros((1, NUM_PARTS), np.float32)
    for name, (x, y) in points.items():
        xy[0, PART_IDS[name]] = (x, y)
        scores[0, PART_IDS[name]] = score
    return Poses(xy, scores, np.array([score], np.float32))


def stack(*poses: Poses) -> Poses:
    return Poses(
        np.concatenate([p.xy for p in poses]),
        np.concatenate([p.scores for p in poses]),
        np.concatenate([p.pose_scores for p in poses]),
    )


def pixel(image: Image.Image, x: float, y: float) -> tuple[int, int, int]:
    return image.getpixel((int(x), int(y)))


def test_point_is_drawn_in_the_person_colour_at_the_keypoint():
    poses = one_person({"nose": (50, 40)})
    out = PointAnnotator().annotate(blank(), poses)
    assert pixel(out, 50, 40) == PALETTE[0]
    assert pixel(out, 150, 120) == GREY


def test_skeleton_line_joins_two_scored_keypoints():
    poses = one_person({"leftShoulder": (40, 80), "rightShoulder": (160, 80)})
    out = SkeletonAnnotator().annotate(blank(), poses)
    assert pixel(out, 100, 80) == PALETTE[0]  # midway along the line
    assert pixel(out, 100, 20) == GREY


def test_two_persons_get_different_colours():
    poses = stack(one_person({"nose": (40, 40)}), one_person({"nose": (150, 100)}))
    out = PointAnnotator().annotate(blank(), poses)
    first, second = pixel(out, 40, 40), pixel(out, 150, 100)
    assert first == person_colour(0) and second == person_colour(1)
    assert first != second


def test_palette_cycles_past_its_end():
    assert person_colour(len(PALETTE)) == person_colour(0)
    assert len(set(PALETTE)) == len(PALETTE)


def test_low_score_keypoints_and_their_lines_are_not_drawn():
    poses = one_person({"leftShoulder": (40, 80), "rightShoulder": (160, 80)}, score=0.3)
    image = blank()
    out = render_overlay(np.asarray(image), poses, min_score=0.5)
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_line_needs_both_ends_above_min_score():
    poses = one_person({"leftShoulder": (40, 80), "rightShoulder": (160, 80)})
    poses.scores[0, PART_IDS["rightShoulder"]] = 0.1
    out = SkeletonAnnotator(min_score=0.5).annotate(blank(), poses)
    assert np.array_equal(np.asarray(out), np.asarray(blank()))


@pytest.mark.parametrize("size", [(320, 240), (1920, 1080), (257, 353)])
def test_output_size_equals_input(size):
    poses = one_person({"nose": (10, 10), "leftEye": (20, 12)})
    out = render_overlay(np.full((size[1], size[0], 3), 90, np.uint8), poses)
    assert out.size == size and out.mode == "RGB"


def test_labels_on_and_off_differ():
    poses = one_person({"leftShoulder": (40, 60), "rightShoulder": (120, 60)})
    rgb = np.asarray(blank())
    with_labels = np.asarray(render_overlay(rgb, poses, labels=True))
    without = np.asarray(render_overlay(rgb, poses, labels=False))
    assert not np.array_equal(with_labels, without)
    # The label sits to the right of its point, where nothing else is drawn.
    right_of_point = (slice(50, 70), slice(48, 110))
    assert (with_labels[right_of_point] != without[right_of_point]).any()


def test_annotate_leaves_its_input_untouched_and_chains():
    image = blank()
    before = np.asarray(image).copy()
    poses = one_person({"leftShoulder": (40, 80), "rightShoulder": (160, 80)})
    out = LabelAnnotator().annotate(
        PointAnnotator().annotate(SkeletonAnnotator().annotate(image, poses), poses), poses
    )
    assert np.array_equal(np.asarray(image), before)
    assert out is not image


def test_render_overlay_does_not_modify_the_frame():
    rgb = np.full((120, 160, 3), 77, np.uint8)
    render_overlay(rgb, one_person({"nose": (80, 60)}))
    assert (rgb == 77).all()


def test_sizes_grow_with_the_shorter_side():
    def drawn_pixels(short: int) -> int:
        size = (short * 4 // 3, short)
        poses = one_person({"nose": (short / 2, short / 2)})
        out = PointAnnotator().annotate(Image.new("RGB", size, GREY), poses)
        return int((np.asarray(out) != GREY).any(axis=-1).sum())

    small, large = drawn_pixels(320), drawn_pixels(1920)
    assert large > 20 * small  # area grows with the square of the radius


def test_annotate_accepts_non_rgb_images():
    out = PointAnnotator().annotate(Image.new("L", (64, 64), 0), one_person({"nose": (32, 32)}))
    assert out.mode == "RGB" and pixel(out, 32, 32) == PALETTE[0]


def test_empty_poses_draw_nothing():
    rgb = np.asarray(blank())
    assert np.array_equal(np.asarray(render_overlay(rgb, Poses.empty())), rgb)


def test_encode_jpeg_round_trips():
    data = encode_jpeg(blank(), 85)
    assert data[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(data)).size == (200, 160)


def test_encode_jpeg_rejects_quality_out_of_range():
    with pytest.raises(ValueError):
        encode_jpeg(blank(), 0)


def _overlapping(labels) -> list[tuple[str, str]]:
    return [(a.text, b.text) for k, a in enumerate(labels) for b in labels[k + 1:]
            if a.box[0] < b.box[2] and b.box[0] < a.box[2] and a.box[1] < b.box[3] and b.box[1] < a.box[3]]


def test_labels_of_two_nearby_keypoints_do_not_overlap():
    """The bug: a wrist drawn just left of a hip read "rightWristWrist"."""
    image = blank(320, 240)
    poses = one_person({"rightWrist": (100, 120), "rightHip": (112, 121), "rightElbow": (106, 110)})
    labels = LabelAnnotator().layout(image, poses)
    assert sorted(label.text for label in labels) == ["rightElbow", "rightHip", "rightWrist"]
    assert not _overlapping(labels)
    assert all(0 <= l.box[0] and l.box[2] <= 320 and 0 <= l.box[1] and l.box[3] <= 240 for l in labels)


def test_a_lone_label_sits_right_of_its_point_and_is_drawn_in_its_box():
    image = blank(320, 240)
    (label,) = LabelAnnotator().layout(image, one_person({"nose": (60, 100)}))
    assert label.box[0] > 60 and label.box[1] < 100 < label.box[3]
    drawn = np.asarray(LabelAnnotator().annotate(image, one_person({"nose": (60, 100)})))
    changed = np.argwhere((drawn != np.asarray(image)).any(axis=-1))
    x0, y0, x1, y1 = label.box
    assert changed[:, 1].min() >= int(x0) and changed[:, 1].max() <= x1 + 1
    assert changed[:, 0].min() >= int(y0) and changed[:, 0].max() <= y1 + 1


def test_crowded_labels_are_left_out_rather_than_drawn_over_each_other():
    """Eight people's keypoints piled on one spot: some names are dropped, none overlap."""
    image = blank(320, 240)
    crowd = stack(*[one_person({name: (150 + k, 120 + k) for name in PART_IDS}) for k in range(8)])
    labels = LabelAnnotator().layout(image, crowd)
    assert 0 < len(labels) < 8 * NUM_PARTS and not _overlapping(labels)


def test_no_label_overlaps_another_on_the_demo_photos():
    from edgepose.config import load_config
    from edgepose.errors import EdgePoseError
    from edgepose.estimators import open_estimator
    from edgepose.images import read_rgb
    from edgepose.sources import demo_dir, list_images

    config = load_config(None)
    try:
        estimator = open_estimator(config.model, config.decode)
    except EdgePoseError as exc:  # no TF Lite runtime here
        pytest.skip(str(exc))
    for photo in list_images(demo_dir()):
        rgb = read_rgb(photo)
        labels = LabelAnnotator().layout(Image.fromarray(rgb), estimator.estimate_still(rgb))
        assert labels and not _overlapping(labels), photo.name


# --- privacy: the overlay without the camera picture -----------------------------------------


def standing(x: float, top: float, height: float) -> Poses:
    """A hand-made standing person: head at `top`, feet at `top + height`."""
    h = height
    return one_person({
        "nose": (x, top + 0.05 * h), "leftEye": (x - 0.02 * h, top + 0.03 * h), "rightEye": (x + 0.02 * h, top + 0.03 * h),
        "leftShoulder": (x - 0.12 * h, top + 0.2 * h), "rightShoulder": (x + 0.12 * h, top + 0.2 * h),
        "leftElbow": (x - 0.15 * h, top + 0.38 * h), "rightElbow": (x + 0.15 * h, top + 0.38 * h),
        "leftWrist": (x - 0.16 * h, top + 0.52 * h), "rightWrist": (x + 0.16 * h, top + 0.52 * h),
        "leftHip": (x - 0.08 * h, top + 0.55 * h), "rightHip": (x + 0.08 * h, top + 0.55 * h),
        "leftKnee": (x - 0.08 * h, top + 0.77 * h), "rightKnee": (x + 0.08 * h, top + 0.77 * h),
        "leftAnkle": (x - 0.08 * h, top + 0.98 * h), "rightAnkle": (x + 0.08 * h, top + 0.98 * h),
    })


def demo_frames() -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in list_images(demo_dir())]


@pytest.mark.parametrize("privacy", PRIVACY_MODES)
def test_a_private_snapshot_does_not_resemble_the_frame_and_a_plain_one_does(privacy):
    """Every demo photo with two people drawn on it, JPEG-encoded as snapshots are: "off"
    resembles its photo (the control the thresholds are set against), "skeleton" and
    "blur" do not (tests/resemblance.py says how this is measured)."""
    for rgb in demo_frames():
        h, w = rgb.shape[:2]
        poses = stack(standing(0.3 * w, 0.2 * h, 0.7 * h), standing(0.7 * w, 0.1 * h, 0.8 * h))
        jpeg = encode_jpeg(render_overlay(rgb, poses, privacy=privacy), 85)
        found = resemblance(jpeg, rgb)
        if privacy == "off":
            assert found.coarse > 2 * COARSE_MAX and found.detail > 3 * DETAIL_MAX, found
        else:
            assert found.detail < DETAIL_MAX, found
            if privacy == "skeleton":
                assert found.coarse < COARSE_MAX, found


def test_privacy_backgrounds():
    rgb = demo_frames()[0]
    h, w = rgb.shape[:2]
    plain = np.asarray(overlay_background(rgb, "skeleton"))
    assert plain.shape == rgb.shape and (plain == PLAIN_BACKGROUND).all()
    assert np.array_equal(np.asarray(overlay_background(rgb, "off")), rgb)
    blurred = np.asarray(overlay_background(rgb, "blur"), np.int16)
    assert blurred.shape == rgb.shape
    # No more detail than a few cells: neighbouring pixels hardly differ anywhere.
    assert np.abs(np.diff(blurred, axis=1)).max() <= 8 and np.abs(np.diff(blurred, axis=0)).max() <= 8
    with pytest.raises(ValueError):
        overlay_background(rgb, "none")


def test_private_snapshots_draw_a_box_around_each_person():
    poses = standing(100, 20, 120)
    image = render_overlay(np.full((160, 200, 3), 128, np.uint8), poses, labels=False, privacy="skeleton")
    x0, y0, x1, y1 = poses.bounding_boxes(DEFAULT_MIN_PART_SCORE)[0]
    colour = person_colour(0)
    assert pixel(image, (x0 + x1) / 2, y0 - 2) == colour  # the top edge, just outside the head
    assert pixel(image, 5, 5) == PLAIN_BACKGROUND
    boxed = BoxAnnotator().annotate(blank(), poses)
    assert pixel(boxed, (x0 + x1) / 2, y1 + 2) == colour
    off = render_overlay(np.full((160, 200, 3), 128, np.uint8), poses, labels=False)
    assert pixel(off, (x0 + x1) / 2, y0 - 2) == GREY, "no box on the camera picture"
