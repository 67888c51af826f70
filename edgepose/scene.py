"""The stages between estimation and the sinks: who is where, and what happened.

    (motion gate) -> model -> exclusion zones -> tracker -> events (presence, falls) -> smoother

Each is a `pipeline.ResultStage` around the pure logic of zones.py,
tracking.py, events.py and smoothing.py. `scene_stages` is the one place
that puts them in order, for the daemon and for `edgepose replay` alike.
Events see the tracked but unsmoothed poses (a fall needs its true speed);
what is published and drawn is smoothed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from .config import Config, MotionConfig
from .core import Frame, FrameResult
from .events import EVENT_KINDS, PRESENCE_EVENT_TYPES, EventIds, EventStage, snapshot_reason
from .falls import FALL_DETECTED
from .motion import SKIP_REASONS, MotionGate, MotionSettings, grey_from_rgb
from .smoothing import Smoother
from .tracking import Tracker
from .zones import Zone, ZoneFilter

log = logging.getLogger(__name__)

#: The command name (from cmd/ack_fall) that acknowledges a fall.
ACK_FALL = "ack_fall"
#: `FrameResult.snapshot` set by the events stage when a fall was raised: take this frame.
FALL_SNAPSHOT = EVENT_KINDS[FALL_DETECTED].snapshot
#: How long a presence event waits for the state file to hold who is counted (on the
#: stages' thread, never the camera's): bounded, so a failing card delays, never stops.
PRESENCE_WRITE_WAIT_S = 1.0


class ExclusionStage:
    """Drops people anchored in an exclusion zone (a poster, a TV)."""

    def __init__(self, zones: list[Zone], min_score: float):
        self._filter = ZoneFilter(zones, min_score)

    def process(self, result: FrameResult) -> FrameResult:
        frame = result.frame
        return result.replace(poses=self._filter.process(result.poses, frame.width, frame.height))


class TrackStage:
    """Gives every person an id that stays with them across frames (monotonic capture time)."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def process(self, result: FrameResult) -> FrameResult:
        if result.frame.scene_cut:  # other people: nobody continues a track of the last scene
            self.tracker.reset()
        return result.replace(poses=self.tracker.process(result.poses, result.frame.captured_mono))


class EventsStage:
    """Debounced presence per node and zone, and falls; `ack_fall` clears an active fall.

    What an acknowledgement raises between frames rides on the next frame's
    result, so events leave in the order they happened, from one thread.
    `remember(presence)` is called with `Presence.remember` after every presence
    event and at close (the daemon keeps it in its state file); `answer(command,
    cleared)` is told at once how many falls an ``ack_fall`` cleared (the daemon
    publishes the reply).
    """

    def __init__(self, stage: EventStage, *, remember: Callable[[dict], None] | None = None,
                 answer: Callable[[str, int], None] | None = None):
        self.stage = stage
        self._remember = remember
        self._answer = answer
        self._pending: tuple = ()
        self._pending_state = False
        self.acks_without_fall = 0  # ack_fall commands that found no fall on (for stats)

    def process(self, result: FrameResult) -> FrameResult:
        frame = result.frame
        out = self.stage.process(result.poses, frame.width, frame.height, frame.captured_mono, frame.captured_at)
        events, changed = self._pending + out.events, self._pending_state or out.state_changed
        self._pending, self._pending_state = (), False
        if self._remember is not None and any(e.type in PRESENCE_EVENT_TYPES for e in out.events):
            self._remember(self.stage.presence.remember())
        return result.replace(events=events, state=out.state, state_changed=changed,
                              snapshot=snapshot_reason(out.events))

    def command(self, name: str, now: float, wall: float) -> bool:
        if name != ACK_FALL:
            return False
        out = self.stage.acknowledge(now, wall)
        self._pending += out.events
        self._pending_state = self._pending_state or out.state_changed
        if out.events:
            log.info("ack_fall: %d fall(s) acknowledged", len(out.events))
        else:
            self.acks_without_fall += 1
            log.info("ack_fall: no fall is on; nothing to acknowledge")
        if self._answer is not None:
            self._answer(ACK_FALL, len(out.events))
        return True

    def close(self) -> None:
        """Who is counted now, for the next start."""
        if self._remember is not None:
            self._remember(self.stage.presence.remember())


class SmoothStage:
    """One Euro filter per track and keypoint: published and drawn poses stop jittering."""

    def __init__(self, smoother: Smoother):
        self.smoother = smoother

    def process(self, result: FrameResult) -> FrameResult:
        frame = result.frame
        return result.replace(
            poses=self.smoother.process(result.poses, frame.captured_mono, frame.width, frame.height)
        )


class MotionGateStage:
    """The pipeline's gate (before the model) and, after it, what the gate must learn:
    how many people the model found (outside exclusion zones). Both run on the
    inference thread (the daemon runs the stages up to the gate inline), so every
    decision knows the frame before."""

    def __init__(self, config: MotionConfig):
        self.gate = MotionGate(MotionSettings(
            pixel_threshold=config.pixel_threshold, min_changed=config.min_changed,
            background_tau_s=config.background_tau_s, idle_interval_s=config.idle_interval_s,
            hold_s=config.hold_s, still_interval_s=config.still_interval_s,
        ))
        self.reasons: dict[str, int] = {}  # decisions by reason, for logs and tests

    @property
    def skipped(self) -> int:
        """Frames kept from the model."""
        return sum(self.reasons.get(reason, 0) for reason in SKIP_REASONS)

    def prepare(self, frame: Frame) -> Frame:
        """The frame with its small grey copy, when the gate will need it: pure, so the
        capture thread makes it ahead of inference (a 768x576 frame costs about 1.3 ms,
        more with the model running)."""
        if not self.gate.needs_image(frame.captured_mono):
            return frame
        return dataclasses.replace(frame, motion_grey=self._grey(frame))

    def _grey(self, frame: Frame):
        return grey_from_rgb(frame.model_image, self.gate.settings.grid)

    def expects_to_run(self, now: float) -> bool:
        """Someone was seen lately and the scene moves, so every frame runs (reads of a
        bool and a float: safe from the capture thread)."""
        return self.gate.expects_to_run(now)

    def admit(self, frame: Frame) -> bool:
        grey = frame.motion_grey
        if grey is None and self.gate.needs_image(frame.captured_mono):  # not made ahead
            grey = self._grey(frame)
        decision = self.gate.decide(grey, frame.captured_mono)
        reason, run = ("scene_cut", True) if frame.scene_cut else (decision.reason, decision.run)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        return run

    def process(self, result: FrameResult) -> FrameResult:
        self.gate.observe(result.frame.captured_mono, len(result.poses))
        return result


def _remember_durably(memory) -> Callable[[dict], None]:
    """Who is counted, put in the state file and on disk before the event that changed
    it is sent: a crash just after a person_entered cannot make the next start announce
    that person again."""

    def remember(value: dict) -> None:
        memory.put("presence", value)
        memory.flush(PRESENCE_WRITE_WAIT_S)

    return remember


def scene_stages(config: Config, node_id: str, boot: str, gate: MotionGateStage | None = None, *,
                 memory=None, answer: Callable[[str, int], None] | None = None) -> list:
    """The stages after estimation, in order. `boot` makes event ids unique per start;
    `gate` (the pipeline's motion gate) learns who was seen after the exclusion zones;
    the stages up to and including it must run before the gate's next decision.
    `memory` (a statefile.StateFile): who was counted before a restart is counted
    again, and who is counted now is kept there; `answer`: see `EventsStage`."""
    zones = [Zone.from_config(z) for z in config.zones]
    min_score = config.tracking.min_part_score
    recall = memory.get("presence") if memory is not None else None
    if not isinstance(recall, dict):
        recall = None
    last_id = recall.get("last_id", 0) if recall else 0
    first_id = last_id + 1 if isinstance(last_id, int) and last_id > 0 else 1
    remember = _remember_durably(memory) if memory is not None else None
    return [
        ExclusionStage(zones, min_score),
        *([gate] if gate is not None else []),
        TrackStage(Tracker(config.tracking, first_id=first_id)),
        EventsStage(EventStage(config.presence, config.falls, zones, EventIds(node_id, boot), recall=recall),
                    remember=remember, answer=answer),
        SmoothStage(Smoother(config.smoothing, min_score)),
    ]
