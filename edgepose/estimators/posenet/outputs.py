"""PoseNet's outputs, however the file lays them out, as one `PoseNetOutputs`.

Three layouts exist: edgepose's own models (heatmaps, offsets, forward and
backward displacements, in any order), Coral's raw-output models (the two
displacement tensors fused into 64 "mid offsets"), and Coral's models with
the PosenetDecoderOp appended (poses already decoded). Tensors are told apart
by channel count, never by name or position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...constants import NUM_PARTS
from ...core import Poses
from ...errors import ModelError
from .constants import (
    DISPLACEMENT_CHANNELS,
    HEATMAP_CHANNELS,
    INPUT_SCALE,
    INPUT_SHIFT,
    MID_OFFSET_CHANNELS,
    OFFSET_CHANNELS,
)


@dataclass(frozen=True, slots=True)
class PoseNetOutputs:
    """Raw PoseNet outputs for one image, dequantised, channels last.

    Offsets and displacements are in model-input pixels; channel layout is
    PoseNet's: y for every part (or edge) first, then x.
    """

    heatmaps: np.ndarray  # (h, w, 17) float32 logits (sigmoid not yet applied)
    offsets: np.ndarray  # (h, w, 34) float32
    displacements_fwd: np.ndarray  # (h, w, 32) float32, parent -> child
    displacements_bwd: np.ndarray  # (h, w, 32) float32, child -> parent
    output_stride: int


def input_lut(dtype: type, quantization: tuple[float, int]) -> np.ndarray:
    """Value to store in the input tensor for each 8-bit pixel value 0..255 (MobileNet's -1..1)."""
    real = np.arange(256, dtype=np.float64) * INPUT_SCALE + INPUT_SHIFT
    if dtype == np.float32:
        return real.astype(np.float32)
    scale, zero_point = quantization
    info = np.iinfo(dtype)
    quantized = np.round(real / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(dtype)


@dataclass(frozen=True, slots=True)
class RawLayout:
    """Positions (in output order) of a raw-output PoseNet's tensors."""

    heatmaps: int
    offsets: int
    fwd: int  # for Coral models: the 64-channel mid offsets
    bwd: int | None  # None when fwd and bwd share one mid-offset tensor

    def read(self, outputs: list[np.ndarray], output_stride: int) -> PoseNetOutputs:
        fwd = outputs[self.fwd]
        if self.bwd is None:  # Coral: [fwd y, fwd x, bwd y, bwd x] x 16 edges
            fwd, bwd = fwd[..., :DISPLACEMENT_CHANNELS], fwd[..., DISPLACEMENT_CHANNELS:]
        else:
            bwd = outputs[self.bwd]
        return PoseNetOutputs(outputs[self.heatmaps], outputs[self.offsets], fwd, bwd, output_stride)


def identify_raw_outputs(details: list[dict]) -> RawLayout:
    """Find heatmaps/offsets/displacements by channel count (17/34/32/32 or 17/34/64)."""
    by_channels: dict[int, list[int]] = {}
    for position, d in enumerate(details):
        by_channels.setdefault(int(d["shape"][-1]), []).append(position)
    names = ", ".join(f"{d['name']}{list(d['shape'])}" for d in details)
    heat = by_channels.get(HEATMAP_CHANNELS, [])
    offs = by_channels.get(OFFSET_CHANNELS, [])
    if len(heat) != 1 or len(offs) != 1:
        raise ModelError(
            "not a raw-output PoseNet: expected one 17-channel heatmap and one 34-channel "
            f"offset output, got {names}"
        )
    mids = by_channels.get(MID_OFFSET_CHANNELS, [])
    disps = by_channels.get(DISPLACEMENT_CHANNELS, [])
    if len(mids) == 1 and not disps:
        return RawLayout(heat[0], offs[0], mids[0], None)
    if len(disps) == 2 and not mids:
        first, second = disps
        if "bwd" in details[first]["name"] or "fwd" in details[second]["name"]:
            first, second = second, first
        return RawLayout(heat[0], offs[0], first, second)
    raise ModelError(
        "not a raw-output PoseNet: expected two 32-channel displacement outputs (forward, "
        f"backward) or one 64-channel mid-offset output, got {names}"
    )


@dataclass(frozen=True, slots=True)
class DecodedLayout:
    """Coral's PosenetDecoderOp outputs: keypoints (K,17,2) y-x, scores (K,17), (K,), count."""

    keypoints: int
    scores: int
    pose_scores: int
    count: int

    def read(self, outputs: list[np.ndarray]) -> Poses:
        """Poses in model-input pixels."""
        count = int(np.asarray(outputs[self.count]).reshape(-1)[0])
        yx = np.asarray(outputs[self.keypoints], np.float32)[:count]
        return Poses(
            xy=np.ascontiguousarray(yx[..., ::-1]),
            scores=np.asarray(outputs[self.scores], np.float32)[:count],
            pose_scores=np.asarray(outputs[self.pose_scores], np.float32)[:count],
        )


def identify_decoded_outputs(details: list[dict]) -> DecodedLayout | None:
    """The decoder op's layout, or None when these are not its four outputs."""
    if len(details) != 4 or not any(
        len(d["shape"]) == 4 and list(d["shape"][-2:]) == [NUM_PARTS, 2] for d in details
    ):
        return None
    by_rank: dict[int, int] = {}
    for position, d in enumerate(details):
        by_rank.setdefault(len(d["shape"]), position)
    count = min(range(4), key=lambda p: len(details[p]["shape"]))
    return DecodedLayout(by_rank[4], by_rank[3], by_rank[2], count)
