"""The one image reader: every still image edgepose reads goes through `read_rgb`.

Orientation: a JPEG's EXIF orientation tag is applied, so a phone photo is
read upright, as a person sees it, by `detect`, `eval`, `bench` and image-folder
sources alike (poses then match the picture a viewer opens). COCO's photos,
which the TF.js reference and the dev-set figures use, carry no rotation tag,
so for them stored and upright pixels are the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import FrameError

#: Image files edgepose reads from folders, matched case-insensitively.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_rgb(path: Path | str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, upright as its EXIF orientation says.

    Raises FrameError naming the file when it cannot be read or decoded.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Pillow reports missing and undecodable files as OSError
        # (UnidentifiedImageError, "image file is truncated"), some broken headers as SyntaxError.
        raise FrameError(f"{path.name}: cannot read image: {exc}") from exc


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def expand_images(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the images in them."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        paths.extend(list_images(path) if path.is_dir() else [path])
    return paths
