"""How much a snapshot resembles a camera frame, as numbers a test can hold a line on.

Two correlations (Pearson, -1..1) between grey versions of the two pictures, the
snapshot resized to the frame's aspect first:

- ``coarse``: both reduced to 64x48 block means: the picture as a whole (a
  snapshot drawn on the frame itself scores about 0.9 or more; a plain background
  with a skeleton on it about 0);
- ``detail``: both at 256 px across minus their own blur (radius 3 px): edges and
  texture, what makes a face or a body recognisable (a real snapshot again about
  0.9; a picture blurred to a few cells about 0, whatever its colours).

A snapshot that hides the camera picture must stay low on ``detail`` whatever the
privacy mode, and low on ``coarse`` too when its background is plain.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

COARSE_SIZE = (64, 48)
DETAIL_WIDTH = 256
DETAIL_BLUR_PX = 3


@dataclass(frozen=True)
class Resemblance:
    coarse: float
    detail: float


def _grey(image: Image.Image | np.ndarray | bytes | Path) -> Image.Image:
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, Path):
        image = Image.open(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image.convert("L")


def _r(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _detail(grey: Image.Image, size: tuple[int, int]) -> np.ndarray:
    small = grey.resize(size, Image.Resampling.BOX)
    return np.asarray(small, np.float64) - np.asarray(small.filter(ImageFilter.GaussianBlur(DETAIL_BLUR_PX)),
                                                      np.float64)


def resemblance(snapshot, frame) -> Resemblance:
    """`snapshot`, `frame`: JPEG bytes, a path, a PIL image or an RGB array."""
    snap, cam = _grey(snapshot), _grey(frame)
    coarse = _r(np.asarray(snap.resize(COARSE_SIZE, Image.Resampling.BOX)),
                np.asarray(cam.resize(COARSE_SIZE, Image.Resampling.BOX)))
    size = (DETAIL_WIDTH, max(1, round(DETAIL_WIDTH * cam.height / cam.width)))
    detail = _r(_detail(snap, size), _detail(cam, size))
    return Resemblance(round(coarse, 3), round(detail, 3))


def closest(snapshot, frames) -> Resemblance:
    """The highest of each measure against any of `frames` (the snapshot's own frame
    among them, when it is not known which one it was)."""
    found = [resemblance(snapshot, frame) for frame in frames]
    return Resemblance(max(r.coarse for r in found), max(r.detail for r in found))


#: A snapshot drawn on the camera picture scores above these (demo photos: coarse
#: 0.94-0.99, detail 0.77-0.92); one that hides it must stay below.
COARSE_MAX = 0.3  # plain background only: "blur" keeps the light and layout on purpose
DETAIL_MAX = 0.15
