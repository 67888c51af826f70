"""`MqttSink`: a frame's result as MQTT messages, and `PosesPolicy`: which frames' poses go out.

Runs on the stages' thread and only decides and hands over: the MQTT client
queues (mqtt/delivery.py), events go to the disk outbox where there is one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..constants import DEFAULT_MIN_PART_SCORE
from ..core import FrameResult, Message, Poses
from ..messages import event_message, person_count_message, poses_message, state_message
from .base import BaseSink, Publish


class MqttSink(BaseSink):
    """`poses` (per `mqtt.poses_mode`), `events`, and the retained `person_count` and
    `state`: the debounced scene where the events stage runs, else the raw count.

    The debounced scene goes out only once the events stage has decided it
    (`FrameResult.state_changed`): until then, the values retained from before a
    restart stand, rather than an empty room nobody has looked at yet."""

    def __init__(self, publish: Publish, *, node_id: str, poses_policy: PosesPolicy, expiry_s: int | None,
                 send_event: Callable[[Any, Message], bool] | None = None,
                 wall_clock: Callable[[], float] = time.time):
        self._publish = publish
        #: (event, its message) -> queued; the disk outbox where there is one.
        self._send_event = send_event or (lambda event, message: publish(message))
        self._node_id = node_id
        self._policy = poses_policy
        self._expiry_s = expiry_s
        self._wall_clock = wall_clock
        self._last_count: int | None = None

    def consume(self, result: FrameResult) -> None:
        frame, poses = result.frame, result.poses
        if self._policy.should_publish(frame.captured_mono, poses, frame.width, frame.height):
            self._publish(poses_message(result, node_id=self._node_id, expiry_s=self._expiry_s))
        for event in result.events:
            self._send_event(event, event_message(event, node_id=self._node_id))
        if result.state is not None:
            if not result.state_changed:
                return
            self._publish(state_message(result.state, now=self._wall_clock()))
            count = result.state.person_count
        else:
            count = len(poses)
        if count != self._last_count:
            self._publish(person_count_message(count))
            self._last_count = count


# --- when to publish poses ---------------------------------------------------------

POSES_MODES: tuple[str, ...] = ("every_frame", "on_change", "interval", "off")

#: on_change: a pose "moved" when a keypoint moved more than this fraction of
#: the frame (along x as a fraction of the width, or y of the height).
DEFAULT_MOVE_FRACTION = 0.02


@dataclass
class PosesPolicy:
    """Decides, frame by frame, whether the poses go out.

    - ``every_frame``: always.
    - ``interval``: the first frame, then once `interval_s` has passed since the
      last publication.
    - ``on_change``: the first frame; then when the person count differs from
      the last *published* frame, or when some pose moved: a current pose
      moved when no pose of the last published frame has all their shared
      confident keypoints (score >= `min_part_score` in both) within
      `move_fraction` of the frame of each other. A pose with no confident
      keypoint in common with any published pose counts as moved. Comparing
      with the last published frame (not the previous frame) means slow drift
      is reported once it adds up.
    - ``off``: never.

    Pure: the caller passes `now`; the policy keeps only what its mode
    compares with (the time, or the poses, it last published).
    """

    mode: str = "every_frame"
    interval_s: float = 1.0
    move_fraction: float = DEFAULT_MOVE_FRACTION
    min_part_score: float = DEFAULT_MIN_PART_SCORE
    _last_at: float | None = field(default=None, init=False, repr=False)  # interval
    _last_xy: np.ndarray | None = field(default=None, init=False, repr=False)  # on_change: (N, 17, 2), 0..1
    _last_ok: np.ndarray | None = field(default=None, init=False, repr=False)  # on_change: (N, 17) bool

    def __post_init__(self) -> None:
        if self.mode not in POSES_MODES:
            raise ValueError(f"poses mode must be one of {', '.join(POSES_MODES)}, got {self.mode!r}")
        if self.mode == "interval" and not self.interval_s > 0:
            raise ValueError(f"poses interval must be > 0 s, got {self.interval_s}")

    def should_publish(self, now: float, poses: Poses, width: int, height: int) -> bool:
        """True when these poses (frame pixels of a `width` x `height` frame) should
        be published at `now` (seconds, any monotonic clock); remembers them if so.
        Only ``on_change`` looks at the poses: the other modes cost nothing per frame."""
        if self.mode == "every_frame":
            return True
        if self.mode == "off":
            return False
        if self.mode == "interval":
            if self._last_at is not None and now - self._last_at < self.interval_s:
                return False
            self._last_at = now
            return True
        xy = np.asarray(poses.xy, dtype=np.float64) / np.array([width, height], dtype=np.float64)
        ok = np.asarray(poses.scores) >= self.min_part_score
        if self._last_xy is not None and not self._changed(xy, ok):
            return False
        self._last_xy, self._last_ok = xy, ok
        return True

    def _changed(self, xy: np.ndarray, ok: np.ndarray) -> bool:
        assert self._last_xy is not None and self._last_ok is not None
        if xy.shape[0] != self._last_xy.shape[0]:
            return True
        for i in range(xy.shape[0]):
            if not any(
                self._close(xy[i], ok[i], self._last_xy[j], self._last_ok[j])
                for j in range(self._last_xy.shape[0])
            ):
                return True
        return False

    def _close(self, a: np.ndarray, a_ok: np.ndarray, b: np.ndarray, b_ok: np.ndarray) -> bool:
        shared = a_ok & b_ok  # (17,)
        if not shared.any():
            return False
        return float(np.abs(a[shared] - b[shared]).max()) <= self.move_fraction
