"""Falls from tracked skeletons: pure logic, decided on real falls (docs/falls.md).

A fall is a person who was upright and is now on the floor. The picture of
"on the floor" depends on where the camera looks from: seen from the side a
fallen body lies flat; seen from a camera high up looking along the body it
is foreshortened and may even look upright, only lower and smaller. What all
views share is the *head coming down* by a large part of the person's
standing height, the body getting *shorter*, and often the torso tipping
over. So, per track and per frame (`measure`):

- **upright**: the torso within ``upright_deg`` of vertical, head above hips;
  upright frames give the *stance*: where the head was and how tall the person
  stood (the tallest upright extent of the last seconds);
- **low**: the head has come down by at least ``min_drop`` standing heights
  from the stance, or by half that with a lying shape (torso at least
  ``down_deg`` from vertical, or a body wider than tall, or a body at most
  ``LOW_HEIGHT`` of the standing height).

Three ways a fall is raised, each in the event's ``cause``:

1. ``fall_seen``: the person goes from upright to low within ``window_s``
   (the descent), then is low on most frames (``MIN_LOW_SHARE``) for
   ``confirm_s`` without standing up again (``STAND_UP_S`` of upright frames).
   Keypoints flicker after a landing: the decision is a share of frames, not
   every frame.
2. ``down``: the descent was not seen (too slow, occluded, missed frames), but
   someone seen upright before is low on most frames for ``down_s``.
3. ``lost_low``: a descent was seen, then the track was lost (behind furniture,
   out of the bottom of the frame) and nobody stood up there: raised once the
   confirmation time has passed, with a lower confidence.

Nothing is raised for a person anchored in a ``lying_ok`` zone (a bed, a
sofa). A fall stays on until that person is upright again for ``clear_s``
(``fall_cleared``, ``recovered``) or it is acknowledged. A track lost and found
again where it was (a body changing shape fast can make the tracker lose it)
carries on the old track's history and its fall.

Every method takes the frame's monotonic time (durations) and wall time
(only copied into events); nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .constants import PART_IDS

if TYPE_CHECKING:
    from .config import FallConfig

#: What the detector raises events through (events.EventStage gives it one): type, wall
#: time, monotonic time, track id, zone, the type's fields -> the event (with its `id`).
Emit = Callable[[str, float, float, int, "str | None", dict], Any]

FALL_DETECTED = "fall_detected"
FALL_CLEARED = "fall_cleared"
#: Why a fall was raised (the event's ``cause``).
CAUSE_SEEN, CAUSE_DOWN, CAUSE_LOST = "fall_seen", "down", "lost_low"
CAUSES = (CAUSE_SEEN, CAUSE_DOWN, CAUSE_LOST)

# Body facts, not tunables (docs/falls.md says where each comes from).
#: Without a torso, a body this much wider than tall lies down...
LYING_ASPECT = 1.2
#: ... and with a tipped torso, a body stretched out over at least this share of its
#: standing height (crouched, bent over to tie a shoe, it is more compact).
LYING_MIN_LENGTH = 0.6
#: Where the head is not found, it is this many standing heights above the shoulders.
HEAD_ABOVE_SHOULDERS = 0.12
#: With a lying shape, a head this share of min_drop down is low already.
LYING_DROP_SHARE = 0.75
#: Bent over, the head comes down (to the hips, or below them with the torso past
#: HEAD_DOWN_DEG) but the hips stay up: a tipped body whose hips came down by less than
#: MIN_HIP_DROP standing heights and whose head by less than BENT_MAX_DROP is bent over.
#: (With the torso past HEAD_DOWN_DEG, whatever the head: touching the toes.)
HEAD_DOWN_DEG = 120.0
MIN_HIP_DROP = 0.1
BENT_MAX_DROP = 0.75
#: Lying with the head only LYING_DROP_SHARE of the way down counts as low when the
#: hips came down by this many standing heights (on a bed they hardly do).
LYING_HIP_DROP = 0.15
#: A frame needs this many keypoints to say anything about the body.
MIN_POINTS = 4

# Decision rules (docs/falls.md: measured on the development set).
#: Share of frames that must be low while a fall is confirmed (keypoints flicker).
MIN_LOW_SHARE = 0.6
#: A confirmation that ends without enough low frames starts again this many times
#: while the person is low (a fall in stages: to the knees, then to the floor).
MAX_RESTARTS = 2
#: Upright frames spanning this long are someone standing up again: no fall.
STAND_UP_S = 0.5
#: The standing height is the tallest upright extent of this many seconds before the stance...
STANCE_S = 3.0
#: ... and a stance frame stands at least this share of it...
STANDING_SHARE = 0.85
#: ... and the head's place is its highest of the stance frames of this many seconds.
STANCE_TOP_S = 1.0
#: A lost track's fall passes to a new track whose box centre lies in the old box grown
#: by this share of the body's length (standing).
HANDOVER_GROWTH = 0.5
#: History of a track unseen this long is forgotten (active falls and pending
#: lost-low candidates are kept).
FORGET_AFTER_S = 10.0

_HEAD = [PART_IDS[p] for p in ("nose", "leftEye", "rightEye", "leftEar", "rightEar")]
_SHOULDERS = [PART_IDS["leftShoulder"], PART_IDS["rightShoulder"]]
_HIPS = [PART_IDS["leftHip"], PART_IDS["rightHip"]]


@dataclass(frozen=True, slots=True)
class Body:
    """One person in one frame as fall detection sees them (frame pixels, y down)."""

    top_y: float  # the head, else the shoulders, else the top of the body
    hip_y: float | None
    height: float  # vertical extent of the keypoints found
    width: float
    torso_deg: float | None  # hips to shoulders from vertical: 0 upright, 90 level, 180 upside down
    head_found: bool


def measure(xy: np.ndarray, scores: np.ndarray, min_score: float) -> Body | None:
    """A `Body` from one pose (xy (17, 2), scores (17,)); None with fewer than MIN_POINTS keypoints."""
    ok = np.asarray(scores) >= min_score
    if int(ok.sum()) < MIN_POINTS:
        return None
    xy = np.asarray(xy, np.float64)
    pts = xy[ok]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)

    def mid(parts: list[int]) -> np.ndarray | None:
        have = ok[parts]
        return xy[parts][have].mean(axis=0) if have.any() else None

    head, shoulders, hips = mid(_HEAD), mid(_SHOULDERS), mid(_HIPS)
    torso = None
    if shoulders is not None and hips is not None:
        dx, dy = float(shoulders[0] - hips[0]), float(shoulders[1] - hips[1])
        if dx or dy:
            torso = math.degrees(math.atan2(abs(dx), -dy))
    height = float(y1 - y0)
    if head is not None:
        top = float(head[1])
    elif shoulders is not None:
        top = float(shoulders[1]) - HEAD_ABOVE_SHOULDERS * height
    else:
        top = float(y0)
    return Body(top, None if hips is None else float(hips[1]), height, float(x1 - x0), torso, head is not None)


@dataclass(frozen=True, slots=True)
class Stance:
    """Where a person stood: the head's and the hips' y, the standing height (pixels), and when."""

    t: float
    top_y: float
    height: float
    hip_y: float | None = None


@dataclass(frozen=True, slots=True)
class FallState:
    """A fall that is on: who, where, since when, and the event that raised it."""

    event_id: str
    track_id: int
    zone: str | None
    since_wall: float
    confidence: float


@dataclass
class _Candidate:
    stance: Stance
    t_low: float  # first low frame
    cause: str = CAUSE_SEEN
    low: int = 0  # frames low since t_low
    seen: int = 0  # frames seen since t_low
    up_since: float | None = None  # start of the current run of upright frames
    drop: float = 0.0  # largest drop seen, standing heights
    torso: list[float] = field(default_factory=list)
    restarts: int = 0  # confirmations started again (a fall in stages)
    in_lying_zone: int = 0  # frames since t_low anchored in a lying_ok zone


@dataclass
class _Track:
    last_seen: float
    box: np.ndarray  # last box, normalised
    size: float = 0.0  # the longer side of the box when last seen standing, normalised
    upright: deque = field(default_factory=deque)  # (t, top_y, height, hip_y) of recent upright frames
    stance: Stance | None = None  # the last stance seen, however old (for `down`)
    candidate: _Candidate | None = None
    low_since: float | None = None  # start of the current low spell (for `down`)
    low_frames: int = 0
    spell_frames: int = 0
    up_since: float | None = None  # while a fall is on: upright since


class FallDetector:
    """Per-track fall detection (see the module doc). Feed it every frame."""

    def __init__(self, config: FallConfig, emit: Emit):
        self.config = config
        self.emit = emit
        self._tracks: dict[int, _Track] = {}
        self.active: dict[int, FallState] = {}  # by the track id that currently carries it

    # --- per frame ---------------------------------------------------------------

    def update(
        self,
        ids: Sequence[int],
        bodies: Sequence[Body | None],
        boxes: np.ndarray,
        zones: Sequence[str | None],
        lying_ok: Sequence[bool],
        now: float,
        wall: float,
    ) -> list[Any]:
        """One frame: track ids with their measured body (None: too little found),
        normalised box (N, 4), zone and whether lying is normal where they are."""
        events: list[Any] = []
        present = set(ids)
        for i, tid in enumerate(ids):
            track = self._tracks.get(tid)
            if track is None:
                track = self._tracks[tid] = self._inherit(tid, boxes[i], present, now)
            track.last_seen, track.box = now, boxes[i]
            body = bodies[i]
            if body is None:
                continue
            if tid in self.active:
                events += self._while_fallen(tid, track, body, now, wall)
                continue
            event = self._watch(tid, track, body, zones[i], lying_ok[i], now, wall)
            if event is not None:
                events.append(event)
        for tid, track in list(self._tracks.items()):
            if tid in present:
                continue
            cand = track.candidate
            if cand is not None and tid not in self.active and now - cand.t_low >= self.config.confirm_s:
                track.candidate = None
                if cand.seen and cand.low >= MIN_LOW_SHARE * cand.seen:  # lost while down
                    cand.cause = CAUSE_LOST
                    events.append(self._detected(tid, track, cand, None, now, wall))
            if (now - track.last_seen > FORGET_AFTER_S and tid not in self.active
                    and track.candidate is None):
                del self._tracks[tid]
        return events

    def acknowledge(self, now: float, wall: float) -> list[Any]:
        """Clear every fall that is on (a person has seen to it)."""
        return [self._cleared(tid, "acknowledged", now, wall) for tid in list(self.active)]

    # --- the rules ---------------------------------------------------------------

    def _upright(self, body: Body) -> bool:
        return (body.torso_deg is not None and body.torso_deg <= self.config.upright_deg
                and (body.hip_y is None or body.top_y < body.hip_y))

    def _drop(self, body: Body, stance: Stance) -> float:
        """How far the head came down from the stance, in standing heights."""
        return (body.top_y - stance.top_y) / max(stance.height, 1.0)

    def _low(self, body: Body, stance: Stance) -> bool:
        """On the floor, or on the way there: the head well down, and not merely bent over
        (bending brings the head down, not the hips)."""
        cfg = self.config
        scale = max(stance.height, 1.0)
        drop = self._drop(body, stance)
        hip_drop = (None if body.hip_y is None or stance.hip_y is None
                    else (body.hip_y - stance.hip_y) / scale)
        tipped = body.torso_deg is not None and body.torso_deg >= cfg.down_deg
        if (tipped and hip_drop is not None and hip_drop < MIN_HIP_DROP
                and (body.torso_deg >= HEAD_DOWN_DEG or drop < BENT_MAX_DROP)):
            return False  # hips still up: bent over
        if drop >= cfg.min_drop:
            return True
        if body.torso_deg is not None:  # a tipped torso on a body that is not curled up
            lying = tipped and body.width >= LYING_MIN_LENGTH * scale
        else:  # no torso: the shape of what was found
            lying = body.width >= LYING_ASPECT * max(body.height, 1.0)
        # Lying with the head part of the way down: on the floor only if the hips came
        # down too (on a bed or a sofa they hardly do).
        return (lying and drop >= LYING_DROP_SHARE * cfg.min_drop
                and (hip_drop is None or hip_drop >= LYING_HIP_DROP))

    def _stance(self, track: _Track, now: float) -> Stance | None:
        """Where the person last stood, within `window_s`: the last upright frame that is
        also tall (at least STANDING_SHARE of the tallest upright extent of the STANCE_S
        before it). A body going down with its torso still vertical (knees giving way) is
        upright but not tall: it does not move the stance down with it."""
        for t, top, height, hip in reversed(track.upright):
            if now - t > self.config.window_s:
                return None
            tallest = max(h for u, _, h, _ in track.upright if 0 <= t - u <= STANCE_S)
            if height >= STANDING_SHARE * tallest:
                # The head's highest point of the last second standing: a descent's first
                # frames can still look upright and tall.
                recent = [(u_top, u_hip) for u, u_top, h, u_hip in track.upright
                          if 0 <= t - u <= STANCE_TOP_S and h >= STANDING_SHARE * tallest]
                top, hip = min(recent, key=lambda r: r[0])
                return Stance(t, top, tallest, hip)
        return None

    def _watch(self, tid: int, track: _Track, body: Body, zone: str | None, lying_ok: bool,
               now: float, wall: float) -> Any:
        cfg = self.config
        cand = track.candidate
        stance = None
        if self._upright(body):
            track.upright.append((now, body.top_y, body.height, body.hip_y))
            while track.upright and now - track.upright[0][0] > STANCE_S + cfg.window_s:
                track.upright.popleft()
            stance = track.stance = self._stance(track, now)
            if stance is not None and stance.t == now:  # standing: the body's length
                track.size = float(np.max(track.box[2:] - track.box[:2]))
        elif cand is None:
            stance = self._stance(track, now)
        if cand is None and stance is not None and stance.t < now and self._low(body, stance):
            cand = track.candidate = _Candidate(stance, now)
        if cand is not None:
            event = self._confirm(tid, track, cand, body, zone, lying_ok, now, wall)
            if event is not None or track.candidate is not None:
                track.low_since = None
                return event
        return self._person_down(tid, track, body, zone, lying_ok, now, wall)

    def _confirm(self, tid: int, track: _Track, cand: _Candidate, body: Body, zone: str | None,
                 lying_ok: bool, now: float, wall: float) -> Any:
        """A descent was seen: raise once the person stayed low for confirm_s."""
        cfg = self.config
        cand.seen += 1
        cand.in_lying_zone += lying_ok
        if self._low(body, cand.stance):
            cand.low += 1
            cand.drop = max(cand.drop, self._drop(body, cand.stance))
            if body.torso_deg is not None:
                cand.torso.append(body.torso_deg)
        if self._upright(body) and self._drop(body, cand.stance) < cfg.min_drop / 2:
            cand.up_since = now if cand.up_since is None else cand.up_since
            if now - cand.up_since >= STAND_UP_S:  # stood up again: not a fall
                track.candidate = None
                return None
        else:
            cand.up_since = None
        if now - cand.t_low < cfg.confirm_s:
            return None
        if cand.in_lying_zone * 2 >= cand.seen:  # down where lying is normal (a bed, a sofa)
            track.candidate = None
            return None
        if cand.low >= MIN_LOW_SHARE * cand.seen:
            track.candidate = None
            return self._detected(tid, track, cand, zone, now, wall)
        if self._low(body, cand.stance) and cand.restarts < MAX_RESTARTS:
            # Down in stages (to the knees, then the floor): the confirmation starts
            # again from this low frame, against the same stance.
            track.candidate = _Candidate(cand.stance, now, restarts=cand.restarts + 1, low=1, seen=1,
                                         drop=cand.drop, torso=cand.torso)
            return None
        track.candidate = None
        return None

    def _person_down(self, tid: int, track: _Track, body: Body, zone: str | None, lying_ok: bool,
                     now: float, wall: float) -> Any:
        """No descent seen, but someone seen upright before stays low for down_s."""
        stance = track.stance
        if stance is None or lying_ok:
            track.low_since = None
            return None
        low = self._low(body, stance)
        if track.low_since is None:
            if not low:
                return None
            track.low_since, track.low_frames, track.spell_frames = now, 0, 0
        track.spell_frames += 1
        track.low_frames += low
        if track.low_frames < MIN_LOW_SHARE * track.spell_frames:  # up again (or never really down)
            track.low_since = None
            return None
        if now - track.low_since < self.config.down_s:
            return None
        cand = _Candidate(stance, track.low_since, CAUSE_DOWN, track.low_frames, track.spell_frames,
                          drop=self._drop(body, stance))
        track.low_since = None
        return self._detected(tid, track, cand, zone, now, wall)

    def _while_fallen(self, tid: int, track: _Track, body: Body, now: float, wall: float) -> list[Any]:
        """A fall is on: it clears once the person is upright (and tall again) for clear_s."""
        stance = track.stance
        tall = stance is None or body.height >= (1 - self.config.min_drop) * stance.height
        if self._upright(body) and tall:
            track.up_since = now if track.up_since is None else track.up_since
            if now - track.up_since >= self.config.clear_s:
                return [self._cleared(tid, "recovered", now, wall)]
        else:
            track.up_since = None
        return []

    # --- events ------------------------------------------------------------------

    def _detected(self, tid: int, track: _Track, cand: _Candidate, zone: str | None,
                  now: float, wall: float) -> Any:
        cfg = self.config
        share = cand.low / cand.seen if cand.seen else 0.0
        depth = min(1.0, cand.drop / max(2 * cfg.min_drop, 1e-6))
        if cand.cause == CAUSE_SEEN:
            speed = 1.0 - min(1.0, max(0.0, (cand.t_low - cand.stance.t) / max(cfg.window_s, 1e-6)))
            confidence = 0.4 + 0.6 * (share + depth + speed) / 3
        elif cand.cause == CAUSE_DOWN:
            confidence = 0.3 + 0.5 * (share + depth) / 2
        else:
            confidence = 0.3 + 0.4 * (share + depth) / 2
        torso = float(np.median(cand.torso)) if cand.torso else 0.0
        event = self.emit(
            FALL_DETECTED, wall, now, tid, zone,
            {"confidence": round(min(1.0, confidence), 3), "torso_deg": round(torso, 1),
             "drop": round(float(cand.drop), 2), "cause": cand.cause},
        )
        self.active[tid] = FallState(event.id, tid, zone, wall, event.fields["confidence"])
        # The stance is used up: another fall (after a recovery or an acknowledgement)
        # needs the person seen standing again.
        track.upright.clear()
        track.stance, track.candidate, track.low_since, track.up_since = None, None, None, None
        return event

    def _cleared(self, tid: int, reason: str, now: float, wall: float) -> Any:
        fall = self.active.pop(tid)
        if tid in self._tracks:
            self._tracks[tid].up_since = None
        return self.emit(
            FALL_CLEARED, wall, now, fall.track_id, fall.zone,
            {"reason": reason, "fall_event_id": fall.event_id},
        )

    def _inherit(self, tid: int, box: np.ndarray, present: set[int], now: float) -> _Track:
        """The state for a track seen for the first time. A body changing shape fast
        (a fall) can make the tracker lose someone and find them again under a new id:
        a new track found where a lost track just was (its centre in the old box, grown)
        carries on that track's history, and its fall if it had one on. A track lost for
        longer (out of sight while going down) passes its history on to a new track found
        within a body's length of where it was (within FORGET_AFTER_S)."""
        centre = (box[:2] + box[2:]) / 2
        for old, track in sorted(self._tracks.items(), key=lambda kv: -kv[1].last_seen):
            if old in present or old == tid:
                continue
            ob = track.box
            length = max(float(np.max(ob[2:] - ob[:2])), track.size)  # the body's, standing
            if old in self.active or track.candidate is not None or now - track.last_seen <= self.config.window_s:
                reach = HANDOVER_GROWTH * length
            else:  # lost a while ago (the descent unseen): found down within a body's length
                reach = length
            if np.all(centre >= ob[:2] - reach) and np.all(centre <= ob[2:] + reach):
                del self._tracks[old]
                if old in self.active:
                    self.active[tid] = self.active.pop(old)
                return track
        return _Track(now, box)
