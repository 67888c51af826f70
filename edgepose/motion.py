"""Motion gating: skip inference on frames where nothing changed and nobody is around.

Pure numpy, no I/O and no clock: the caller passes each frame (RGB, or a Y plane such
as picamera2's lores YUV420 stream) and its monotonic capture time.

The cheap part is a small grey image: block means over cells of the frame (about 64x48
cells), luma from integer weights. A cell has changed when it differs from a slowly
adapting background by more than ``pixel_threshold`` grey levels; the scene moved when
at least ``min_changed`` of the cells changed. The background follows the scene with a
time constant (not a per-frame rate), so slow movement is caught at any frame rate,
and a global brightness shift (auto exposure, a cloud) is subtracted before cells are
compared.

``MotionGate`` turns that into a decision per frame. A frame that moved always runs.
While someone was seen in the last ``hold_s`` and the scene moves, every frame runs;
once nothing moves, the model runs every ``still_interval_s`` (short enough that a
still person keeps their track and stays present), and every frame again while two
inferences in a row disagree on how many people there are. With nobody seen, it
runs every ``idle_interval_s``, so that someone who appears without moving is still
found within one interval.

Cost per frame (thread CPU time, the lowest of 5 passes over 300 frames of a real
768x576 clip, on the shared 2-core development machine under load): 1.5 ms from RGB,
0.4 ms from a Y plane; the decision itself on the 64x48 grid is about 0.1-0.2 ms.
Replaying that clip after 30 s of its own empty background (10 fps, sensor noise
added): 15 of the 300 static frames were inferred (the first, then one every 2 s),
and the first person was reported on the clip's first frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: BT.601 luma in 8-bit fixed point: (77 R + 150 G + 29 B) / 256 (the weights sum to 256).
LUMA_WEIGHTS = (77, 150, 29)

#: Default grid of the small grey image (cells across, cells down).
DEFAULT_GRID = (64, 48)


def _block_size(height: int, width: int, grid: tuple[int, int]) -> int:
    """Square cells: the largest block that still gives at least ``grid`` cells."""
    cols, rows = grid
    return max(1, min(width // cols, height // rows))


def _block_sum(plane: np.ndarray, block: int) -> np.ndarray:
    """Sum of each block x block cell of a 2-D (or 3-D, channels last) uint8 array.

    Rows first, over whole contiguous rows (channels flattened in): numpy adds block
    rows of W*C bytes at a time into uint16 (255 * block fits for block <= 257), which
    is 2-3x cheaper than one reduction over a 4-D strided view. Then the columns of
    the small result."""
    height, width = plane.shape[:2]
    channels = plane.shape[2] if plane.ndim == 3 else 1
    rows, cols = height // block, width // block
    if block > 257:
        raise ValueError(f"cell of {block} px is too large")
    flat = np.ascontiguousarray(plane[: rows * block]).reshape(rows, block, width * channels)
    down = flat.sum(axis=1, dtype=np.uint16)[:, : cols * block * channels]
    sums = down.reshape(rows, cols, block, channels).sum(axis=2, dtype=np.uint32)
    return sums if plane.ndim == 3 else sums[..., 0]


def grey_from_rgb(rgb: np.ndarray, grid: tuple[int, int] = DEFAULT_GRID) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> small (rows, cols) uint8 grey image of block means.

    Block sums first, luma second: the weights are applied to ~3k cells, not to every
    pixel. Edges that do not fill a whole cell are dropped."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {rgb.shape}")
    block = _block_size(rgb.shape[0], rgb.shape[1], grid)
    sums = _block_sum(rgb, block)  # (rows, cols, 3) uint32
    r, g, b = LUMA_WEIGHTS
    luma = sums[..., 0] * r + sums[..., 1] * g + sums[..., 2] * b
    denominator = 256 * block * block
    return ((luma + denominator // 2) // denominator).astype(np.uint8)


def grey_from_y(y: np.ndarray, grid: tuple[int, int] = DEFAULT_GRID) -> np.ndarray:
    """(H, W) uint8 luma plane (e.g. the Y of YUV420, row padding already cut off) ->
    small (rows, cols) uint8 grey image of block means."""
    if y.ndim != 2:
        raise ValueError(f"expected an (H, W) Y plane, got shape {y.shape}")
    block = _block_size(y.shape[0], y.shape[1], grid)
    area = block * block
    return ((_block_sum(y, block) + area // 2) // area).astype(np.uint8)


def changed_fraction(background: np.ndarray, grey: np.ndarray, pixel_threshold: int,
                     compensate_brightness: bool = True) -> float:
    """Fraction of cells of ``grey`` that differ from ``background`` by more than
    ``pixel_threshold`` grey levels (after removing the median difference, when
    ``compensate_brightness``: a uniform exposure change moves every cell alike)."""
    diff = grey.astype(np.float32) - background
    if compensate_brightness:
        diff -= np.median(diff)
    return float(np.count_nonzero(np.abs(diff) > pixel_threshold)) / diff.size


#: While someone is tracked and the scene moves, every frame runs whatever it shows, so
#: the grey copy is only needed to keep the background current and to notice when the
#: scene has come to rest: at most this often (the background follows the scene with
#: a time constant of its own, so fewer updates give the same background). Saves the
#: grey copy on most frames of a busy scene (about 1.3 ms each at 768x576, in the
#: capture-to-publish path). Once the scene is still, every frame needs it again:
#: the first one that changes must run at once.
TRACKING_REFRESH_S = 0.2


@dataclass(frozen=True)
class MotionSettings:
    """The gate's knobs (the config's ``[motion]`` table maps onto these)."""

    pixel_threshold: int = 12        # grey levels (0..255) a cell must move by
    min_changed: float = 0.005       # fraction of cells that must change (0.005 of 64x48 = 15 cells)
    background_tau_s: float = 1.0    # how fast the background follows the scene
    idle_interval_s: float = 2.0     # with no motion and nobody seen: one inference every this
    hold_s: float = 3.0              # after someone was seen: follow them for this long
    still_interval_s: float = 0.5    # ...at one inference every this while nothing moves
    grid: tuple[int, int] = DEFAULT_GRID
    compensate_brightness: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.pixel_threshold <= 255:
            raise ValueError("pixel_threshold must be 0..255")
        if not 0.0 < self.min_changed <= 1.0:
            raise ValueError("min_changed must be in (0, 1]")
        if (self.background_tau_s <= 0 or self.idle_interval_s <= 0 or self.still_interval_s <= 0
                or self.hold_s < 0):
            raise ValueError("background_tau_s, idle_interval_s and still_interval_s must be > 0, hold_s >= 0")
        if min(self.grid) < 1:
            raise ValueError("grid must be at least 1x1")


class MotionDetector:
    """Changed-cell fraction of each frame against a background that adapts with a
    time constant (exponential moving average, weight 1 - exp(-dt / tau))."""

    def __init__(self, settings: MotionSettings = MotionSettings()) -> None:
        self.settings = settings
        self._background: np.ndarray | None = None
        self._last_mono: float | None = None

    def reset(self) -> None:
        """Forget the background (a new source, a camera that reconnected)."""
        self._background = None
        self._last_mono = None

    def update(self, grey: np.ndarray, now: float) -> float:
        """Compare ``grey`` with the background, then fold it in. Returns the fraction
        of changed cells; 1.0 for the first frame or after the image size changed."""
        s = self.settings
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey.astype(np.float32)
            self._last_mono = now
            return 1.0
        fraction = changed_fraction(self._background, grey, s.pixel_threshold, s.compensate_brightness)
        dt = max(0.0, now - (self._last_mono if self._last_mono is not None else now))
        alpha = 1.0 - math.exp(-dt / s.background_tau_s)
        self._background += alpha * (grey.astype(np.float32) - self._background)
        self._last_mono = now
        return fraction


@dataclass(frozen=True)
class GateDecision:
    """Whether to run inference on this frame, and why (for stats and logs)."""

    run: bool
    #: Runs: "first", "motion", "tracking" (someone seen, the scene moving), "recheck"
    #: (someone seen, still, the last two counts differ), "still_interval", "interval".
    #: Skips: "still" (someone seen, nothing moved), "idle" (nobody seen, nothing moved).
    reason: str
    motion: float     # fraction of changed cells (0..1; 0 where not measured)


#: Decision reasons that keep a frame from the model.
SKIP_REASONS = ("idle", "still")


class MotionGate:
    """Per-frame inference decision. Call ``decide`` for every frame, run the model when
    ``run`` is true, then ``observe`` the number of people it found."""

    def __init__(self, settings: MotionSettings = MotionSettings()) -> None:
        self.settings = settings
        self.detector = MotionDetector(settings)
        self.reset()

    def reset(self) -> None:
        self.detector.reset()
        self._last_run: float | None = None
        self._last_seen: float | None = None
        self._last_image: float | None = None  # capture time of the last grey image decided on
        self._moving = True  # the last grey image measured showed motion
        self._counts: tuple[int | None, int | None] = (None, None)  # people found by the last two runs

    def needs_image(self, now: float) -> bool:
        """Whether ``decide`` for a frame captured at ``now`` needs its grey image: always,
        except while tracking a moving scene, when the background was refreshed less
        than TRACKING_REFRESH_S ago (reads of a bool and two floats: safe from another
        thread)."""
        last_image = self._last_image
        return not (self._moving and self.tracking(now) and last_image is not None
                    and now - last_image < TRACKING_REFRESH_S)

    def expects_to_run(self, now: float) -> bool:
        """Whether a frame captured at ``now`` will almost surely run: someone is seen and
        the scene moves (a still scene runs only now and then)."""
        return self._moving and self.tracking(now)

    def decide_rgb(self, rgb: np.ndarray, now: float) -> GateDecision:
        return self.decide(grey_from_rgb(rgb, self.settings.grid), now)

    def decide_y(self, y: np.ndarray, now: float) -> GateDecision:
        return self.decide(grey_from_y(y, self.settings.grid), now)

    def decide(self, grey: np.ndarray | None, now: float) -> GateDecision:
        """``grey``: the small image from ``grey_from_rgb``/``grey_from_y``, or None where
        ``needs_image(now)`` says it is not needed; ``now``: the frame's monotonic capture
        time. The background is updated from every image, run or not, so it is current
        when tracking ends."""
        s = self.settings
        if grey is None:
            if self.needs_image(now):
                raise ValueError("a grey image is needed unless needs_image() says otherwise")
            motion = 0.0  # not measured: a tracked, moving scene runs every frame
        else:
            motion = self.detector.update(grey, now)
            self._last_image = now
            self._moving = motion >= s.min_changed
        tracking = self.tracking(now)
        since = None if self._last_run is None else now - self._last_run
        if since is None:
            reason = "first"
        elif self._moving:
            reason = "tracking" if tracking and grey is None else "motion"
        elif tracking:
            if self._counts[0] != self._counts[1]:
                reason = "recheck"  # a count that changed with nothing moving: a miss or a flicker
            elif since >= s.still_interval_s:
                reason = "still_interval"
            else:
                return GateDecision(False, "still", motion)
        elif since >= s.idle_interval_s:
            reason = "interval"
        else:
            return GateDecision(False, "idle", motion)
        self._last_run = now
        return GateDecision(True, reason, motion)

    def tracking(self, now: float) -> bool:
        """True while someone was seen within ``hold_s`` of ``now``: the gate follows them
        (every moving frame, a still scene every ``still_interval_s``)."""
        last_seen = self._last_seen
        return last_seen is not None and now - last_seen < self.settings.hold_s

    def observe(self, now: float, people: int) -> None:
        """After an inference on the frame captured at ``now``: ``people`` poses kept
        (after the score threshold). Someone seen keeps the gate following for ``hold_s``."""
        self._counts = (self._counts[1], people)
        if people > 0:
            self._last_seen = now if self._last_seen is None else max(self._last_seen, now)
