"""Skeleton overlays for snapshots, drawn with Pillow.

Annotators follow supervision's pattern: style goes to the constructor, data to
``annotate(image, poses)``, and each draws one thing so they chain::

    image = SkeletonAnnotator().annotate(image, poses)
    image = PointAnnotator().annotate(image, poses)

``annotate`` never changes the image it is given: it draws on an RGB copy and
returns that, so a frame shared with other stages stays untouched. A snapshot
is rare enough that the copy costs nothing worth saving.

``render_overlay`` draws on the frame itself or, for privacy
(``snapshots.privacy``), on a background that is not the camera picture: a plain
one, or the frame blurred until no face or body can be told apart.

Sizes follow the image's shorter side, so the same overlay reads on a 320 px
preview and on a 1920 px still; a keypoint scoring below ``min_score`` is not
drawn, nor any line touching it. Each person gets one colour from a fixed
palette, in the order of ``poses`` (cycled past the palette's end).
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .constants import DEFAULT_MIN_PART_SCORE, PART_NAMES, SKELETON_IDS
from .core import Poses

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]

#: Person colours: saturated, far apart in hue and lightness, readable on
#: photographs (after Sasha Trubetskoy's list of distinct colours).
PALETTE: tuple[RGB, ...] = (
    (255, 225, 25),  # yellow
    (0, 130, 200),  # blue
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (245, 130, 48),  # orange
    (70, 240, 240),  # cyan
    (240, 50, 230),  # magenta
    (145, 30, 180),  # purple
    (255, 255, 255),  # white (the dark outline keeps it visible on snow)
    (250, 190, 212),  # pink
)
#: Point outlines and text strokes: separate the colours from the picture.
OUTLINE_COLOUR: RGB = (0, 0, 0)

# Sizes as fractions of the image's shorter side (480 px: 3 px lines, 5 px
# points, 13 px text), never below MIN_SIZE_PX.
LINE_WIDTH_FRACTION = 1 / 160
POINT_RADIUS_FRACTION = 1 / 96
FONT_SIZE_FRACTION = 1 / 36
OUTLINE_FRACTION = 1 / 480
MIN_SIZE_PX = 1
#: Below this size Pillow's scalable default font is unreadable anyway.
MIN_FONT_PX = 9


def _scaled(image: Image.Image, fraction: float, minimum: int = MIN_SIZE_PX) -> int:
    return max(minimum, round(min(image.size) * fraction))


def _canvas(image: Image.Image) -> Image.Image:
    """An RGB copy to draw on (colours need RGB; the caller's image stays as it was)."""
    return image.convert("RGB") if image.mode != "RGB" else image.copy()


def person_colour(index: int, palette: tuple[RGB, ...] = PALETTE) -> RGB:
    return palette[index % len(palette)]


def _visible(poses: Poses, min_score: float) -> np.ndarray:
    """(N, 17) bool: keypoints to draw (score high enough, position finite)."""
    return (poses.scores >= min_score) & np.isfinite(poses.xy).all(axis=-1)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        log.debug("scalable default font unavailable; labels use the fixed bitmap font")
        return ImageFont.load_default()


class SkeletonAnnotator:
    """Lines between connected keypoints (constants.SKELETON_IDS) of each person."""

    def __init__(
        self,
        *,
        min_score: float = DEFAULT_MIN_PART_SCORE,
        line_width: int | None = None,  # None: scaled to the image
        palette: tuple[RGB, ...] = PALETTE,
        edges: tuple[tuple[int, int], ...] = SKELETON_IDS,
    ):
        self.min_score = min_score
        self.line_width = line_width
        self.palette = palette
        self.edges = edges

    def annotate(self, image: Image.Image, poses: Poses) -> Image.Image:
        out = _canvas(image)
        draw = ImageDraw.Draw(out)
        width = self.line_width or _scaled(out, LINE_WIDTH_FRACTION)
        halo = width + 2 * _scaled(out, OUTLINE_FRACTION)
        visible = _visible(poses, self.min_score)
        for i in range(len(poses)):
            lines = [
                tuple(poses.xy[i, a].tolist()) + tuple(poses.xy[i, b].tolist())
                for a, b in self.edges
                if visible[i, a] and visible[i, b]
            ]
            # A dark halo first, so a yellow line still shows on a white wall.
            for line in lines:
                draw.line(line, fill=OUTLINE_COLOUR, width=halo)
            for line in lines:
                draw.line(line, fill=person_colour(i, self.palette), width=width)
        return out


class PointAnnotator:
    """Filled, outlined circles on each keypoint."""

    def __init__(
        self,
        *,
        min_score: float = DEFAULT_MIN_PART_SCORE,
        radius: int | None = None,  # None: scaled to the image
        palette: tuple[RGB, ...] = PALETTE,
        outline: RGB = OUTLINE_COLOUR,
    ):
        self.min_score = min_score
        self.radius = radius
        self.palette = palette
        self.outline = outline

    def annotate(self, image: Image.Image, poses: Poses) -> Image.Image:
        out = _canvas(image)
        draw = ImageDraw.Draw(out)
        r = self.radius or _scaled(out, POINT_RADIUS_FRACTION)
        outline_width = _scaled(out, OUTLINE_FRACTION)
        visible = _visible(poses, self.min_score)
        for i, j in zip(*np.nonzero(visible)):
            x, y = poses.xy[i, j].tolist()
            draw.ellipse(
                (x - r, y - r, x + r, y + r),
                fill=person_colour(int(i), self.palette),
                outline=self.outline,
                width=outline_width,
            )
        return out


Box = tuple[float, float, float, float]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True, slots=True)
class Label:
    """One part name placed on the image: its text, colour and box (x0, y0, x1, y1)."""

    text: str
    colour: RGB
    box: Box


class LabelAnnotator:
    """Part names beside keypoints, in the person's colour with a dark stroke.

    Labels never cover each other: the most confident keypoints are labelled first,
    each in the first free place around its point (right, left, above, below, then
    the corners), inside the image where one is; a keypoint with no free place left
    keeps its point and colour but no name (two wrists side by side would otherwise
    read "rightWristWrist").
    """

    def __init__(
        self,
        *,
        min_score: float = DEFAULT_MIN_PART_SCORE,
        font_size: int | None = None,  # None: scaled to the image
        palette: tuple[RGB, ...] = PALETTE,
        names: tuple[str, ...] = PART_NAMES,
    ):
        self.min_score = min_score
        self.font_size = font_size
        self.palette = palette
        self.names = names

    def _font_for(self, image: Image.Image):
        return _font(self.font_size or _scaled(image, FONT_SIZE_FRACTION, MIN_FONT_PX))

    def layout(self, image: Image.Image, poses: Poses) -> list[Label]:
        """Where each label goes (pure: nothing is drawn)."""
        draw = ImageDraw.Draw(image)
        font = self._font_for(image)
        # Clear of the point drawn by PointAnnotator at its default size.
        gap = _scaled(image, POINT_RADIUS_FRACTION) + _scaled(image, OUTLINE_FRACTION)
        stroke = _scaled(image, OUTLINE_FRACTION)
        width, height = image.size
        visible = _visible(poses, self.min_score)
        order = sorted(zip(*np.nonzero(visible)), key=lambda ij: -float(poses.scores[ij]))
        placed: list[Label] = []
        for i, j in order:
            x, y = poses.xy[i, j].tolist()
            text = self.names[j]
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
            w, h = right - left, bottom - top
            spots = ((x + gap, y - h / 2), (x - gap - w, y - h / 2), (x - w / 2, y - gap - h),
                     (x - w / 2, y + gap), (x + gap, y - gap - h), (x + gap, y + gap),
                     (x - gap - w, y - gap - h), (x - gap - w, y + gap))
            boxes = [(sx, sy, sx + w, sy + h) for sx, sy in spots]
            inside = [b for b in boxes if b[0] >= 0 and b[1] >= 0 and b[2] <= width and b[3] <= height]
            free = [b for b in inside or boxes if not any(_overlap(b, other.box) for other in placed)]
            if free:
                placed.append(Label(text, person_colour(int(i), self.palette), free[0]))
        return placed

    def annotate(self, image: Image.Image, poses: Poses) -> Image.Image:
        out = _canvas(image)
        draw = ImageDraw.Draw(out)
        font = self._font_for(out)
        stroke = _scaled(out, OUTLINE_FRACTION)
        for label in self.layout(out, poses):
            left, top, _, _ = draw.textbbox((0, 0), label.text, font=font, stroke_width=stroke)
            draw.text(
                (label.box[0] - left, label.box[1] - top),  # the text's own box lands on label.box
                label.text,
                fill=label.colour,
                font=font,
                stroke_width=stroke,
                stroke_fill=OUTLINE_COLOUR,
            )
        return out


#: Zone colours by what the zone does: occupancy blue, exclusion grey, lying allowed green.
ZONE_COLOURS: dict[str, RGB] = {
    "occupancy": (0, 130, 200),
    "exclusion": (128, 128, 128),
    "lying_ok": (60, 180, 75),
}
#: Opacity of a zone's fill (0-255): the picture stays readable underneath.
ZONE_FILL_ALPHA = 48


class ZoneAnnotator:
    """Zones (zones.Zone, corners in fractions of the frame) as tinted, outlined polygons
    with their names: occupancy blue, exclusion grey, lying allowed (bed, sofa) green.

    Draw zones first, so skeletons stay on top of them. `poses` is accepted for
    chaining like the other annotators and not used.
    """

    def __init__(
        self,
        zones,
        *,
        line_width: int | None = None,  # None: scaled to the image
        font_size: int | None = None,
        colours: dict[str, RGB] = ZONE_COLOURS,
        fill_alpha: int = ZONE_FILL_ALPHA,
        labels: bool = True,
    ):
        self.zones = list(zones)
        self.line_width = line_width
        self.font_size = font_size
        self.colours = colours
        self.fill_alpha = fill_alpha
        self.labels = labels

    def colour(self, zone) -> RGB:
        if zone.lying_ok:
            return self.colours["lying_ok"]
        return self.colours[zone.kind]

    def annotate(self, image: Image.Image, poses: Poses | None = None) -> Image.Image:
        out = _canvas(image)
        if not self.zones:
            return out
        width, height = out.size
        layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        line = self.line_width or _scaled(out, LINE_WIDTH_FRACTION)
        for zone in self.zones:
            corners = [(float(x) * width, float(y) * height) for x, y in np.asarray(zone.polygon)]
            draw.polygon(corners, fill=self.colour(zone) + (self.fill_alpha,))
        out = Image.alpha_composite(out.convert("RGBA"), layer).convert("RGB")
        draw = ImageDraw.Draw(out)
        size = self.font_size or _scaled(out, FONT_SIZE_FRACTION, MIN_FONT_PX)
        font = _font(size)
        stroke = _scaled(out, OUTLINE_FRACTION)
        for zone in self.zones:
            corners = [(float(x) * width, float(y) * height) for x, y in np.asarray(zone.polygon)]
            draw.line(corners + corners[:1], fill=self.colour(zone), width=line, joint="curve")
            if self.labels:
                # The name just inside the top-left-most corner.
                x, y = min(corners, key=lambda c: (c[1], c[0]))
                draw.text(
                    (x + line + 2, y + line + 2),
                    zone.name + (" (lying ok)" if zone.lying_ok else "")
                    + (" (ignored)" if zone.kind == "exclusion" else ""),
                    fill=self.colour(zone),
                    font=font,
                    stroke_width=stroke,
                    stroke_fill=OUTLINE_COLOUR,
                )
        return out


class BoxAnnotator:
    """An outline around each person (the model's box, or the extent of the keypoints
    scoring at least ``min_score``): where a body is when the picture does not show it."""

    def __init__(
        self,
        *,
        min_score: float = DEFAULT_MIN_PART_SCORE,
        line_width: int | None = None,  # None: scaled to the image
        palette: tuple[RGB, ...] = PALETTE,
    ):
        self.min_score = min_score
        self.line_width = line_width
        self.palette = palette

    def annotate(self, image: Image.Image, poses: Poses) -> Image.Image:
        out = _canvas(image)
        draw = ImageDraw.Draw(out)
        width = max(1, (self.line_width or _scaled(out, LINE_WIDTH_FRACTION)) // 2)
        pad = _scaled(out, POINT_RADIUS_FRACTION)
        for i, (x0, y0, x1, y1) in enumerate(poses.bounding_boxes(self.min_score).tolist()):
            if not all(np.isfinite((x0, y0, x1, y1))):
                continue
            draw.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), outline=person_colour(i, self.palette),
                           width=width)
        return out


#: ``snapshots.privacy``: what a snapshot shows behind the overlay. "off": the camera
#: picture; "skeleton": a plain background; "blur": the picture blurred beyond recognition.
PRIVACY_MODES = ("off", "skeleton", "blur")
#: The plain background: dark, so every palette colour and zone tint reads on it.
PLAIN_BACKGROUND: RGB = (36, 40, 48)
#: "blur" keeps this many cells along the picture's shorter side (48 px each at 480 px:
#: a face is one or two cells, a body a few), smoothed back to full size: where the
#: light and the furniture are, not who is there.
BLUR_CELLS = 10
#: ...and moved this far toward the plain background, so the overlay stands out.
BLUR_DIM = 0.45


def overlay_background(rgb: np.ndarray, privacy: str = "off") -> Image.Image:
    """What the overlay is drawn on: the frame ("off"), a plain image of its size
    ("skeleton"), or the frame reduced to BLUR_CELLS cells across its shorter side,
    smoothed back up and dimmed ("blur")."""
    if privacy not in PRIVACY_MODES:
        raise ValueError(f"privacy must be one of {', '.join(PRIVACY_MODES)}, got {privacy!r}")
    height, width = rgb.shape[:2]
    if privacy == "skeleton":
        return Image.new("RGB", (width, height), PLAIN_BACKGROUND)
    image = Image.fromarray(rgb, "RGB")
    if privacy == "off":
        return image
    scale = BLUR_CELLS / min(width, height)
    cells = (max(1, round(width * scale)), max(1, round(height * scale)))
    smooth = image.resize(cells, Image.Resampling.BOX).resize((width, height), Image.Resampling.BICUBIC)
    # Bicubic leaves faint ridges along the cell grid: a blur of half a cell removes them.
    smooth = smooth.filter(ImageFilter.GaussianBlur(min(width, height) / BLUR_CELLS / 2))
    return Image.blend(smooth, Image.new("RGB", (width, height), PLAIN_BACKGROUND), BLUR_DIM)


def render_overlay(
    rgb: np.ndarray,
    poses: Poses,
    *,
    labels: bool = True,
    min_score: float = DEFAULT_MIN_PART_SCORE,
    zones=(),
    privacy: str = "off",
) -> Image.Image:
    """A frame with zones (zones.Zone, if any), skeletons, points and (optionally)
    part names drawn on it; with `privacy` other than "off" (`PRIVACY_MODES`), drawn
    with a box around each person on a background that is not the camera picture.

    rgb: (H, W, 3) uint8, the frame the poses were found in (not modified).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {rgb.shape} {rgb.dtype}")
    image = overlay_background(rgb, privacy)
    annotators: list = [
        ZoneAnnotator(zones, labels=labels),
        *([BoxAnnotator(min_score=min_score)] if privacy != "off" else []),
        SkeletonAnnotator(min_score=min_score),
        PointAnnotator(min_score=min_score),
    ]
    if labels:
        annotators.append(LabelAnnotator(min_score=min_score))
    for annotator in annotators:
        image = annotator.annotate(image, poses)
    return image


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG bytes of an image, for files and MQTT alike (Pillow advises quality <= 95)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
