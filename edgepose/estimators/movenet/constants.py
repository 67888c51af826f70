"""MoveNet facts: input sizes, output layout and TF.js pose-detection 2.1.3's settings.

The reference values are those of ``@tensorflow-models/pose-detection`` 2.1.3
(``movenet/constants.ts`` and ``crop_utils.ts``); edgepose reproduces them first
and departs from them only where the dev photos said so (docs/benchmarks.md).
"""

from __future__ import annotations

#: Registry names -> model file stem (models/movenet_<stem>_<precision>.tflite).
MODEL_STEMS: dict[str, str] = {
    "movenet-lightning": "lightning",
    "movenet-thunder": "thunder",
    "movenet-multipose": "multipose",
}
PRECISIONS: tuple[str, ...] = ("float16", "int8")

#: File of each build in models/: filled with the stem above and the precision.
MODEL_FILE = "movenet_{stem}_{precision}.tflite"
#: model.quantized -> the bundled build's precision.
QUANTIZED_PRECISION = {True: "int8", False: "float16"}

#: Single-pose models take a fixed square input of this side.
SINGLEPOSE_INPUT_SIDE: dict[str, int] = {"movenet-lightning": 192, "movenet-thunder": 256}

# --- single-pose crop (crop_utils.ts) -------------------------------------------
#: A keypoint counts for the crop (and for the pose score) when it scores above this.
MIN_CROP_KEYPOINT_SCORE = 0.2
#: Half the crop side is at least this times the torso's largest extent from the hip centre...
TORSO_EXPANSION = 1.9
#: ... and this times the whole body's (keypoints above MIN_CROP_KEYPOINT_SCORE).
BODY_EXPANSION = 1.2
#: Low-pass filter on the crop corners from frame to frame (new = a*x + (1-a)*old).
CROP_FILTER_ALPHA = 0.9
#: Poses scoring below this are dropped (and a single-pose detector resets its crop).
DEFAULT_MIN_POSE_SCORE = 0.25

#: Single-pose first crops (model.first_crop): TF.js's centred square, or the whole
#: frame padded to a square.
FIRST_CROPS: tuple[str, ...] = ("centre", "letterbox")

#: Passes over a still image (``detect``, ``eval``): the first pass finds the
#: person from TF.js's first crop, each further pass runs on the crop derived
#: from the previous pass's keypoints. Three: best or tied best on the dev photos
#: for both models and both builds, above TF.js's two passes (docs/benchmarks.md).
STILL_IMAGE_PASSES = 3
#: Most passes a config may ask for (each costs one invoke per still image).
STILL_IMAGE_PASSES_MAX = 8

# --- MultiPose -----------------------------------------------------------------
#: Input sides must be multiples of this.
MULTIPOSE_DIVISOR = 32
#: The reference resizes the frame so that its long side is this (multiPoseMaxDimension).
MULTIPOSE_REFERENCE_LONG_SIDE = 256
#: edgepose's default long side (model.multipose_long_side): the smallest at which
#: the int8 build does not score below TF.js's float model at 256 on the dev
#: photos (docs/benchmarks.md).
MULTIPOSE_DEFAULT_LONG_SIDE = 320
#: Long sides a config may ask for (a bound, not a recommendation).
MULTIPOSE_LONG_SIDE_MIN = 128
MULTIPOSE_LONG_SIDE_MAX = 1024
#: Output rows: per instance 17 x (y, x, score), then box ymin, xmin, ymax, xmax, then score.
MULTIPOSE_MAX_INSTANCES = 6
MULTIPOSE_INSTANCE_SIZE = 56
MULTIPOSE_BOX_INDEX = 51
MULTIPOSE_SCORE_INDEX = 55
