"""Presence and falls from tracked poses: what a home wants to know, not raw keypoints.

Pure logic: every method takes the frame's monotonic time (for durations) and
wall-clock time (only copied into events), and nothing here reads a clock,
a file or the network.

Presence (`Presence`): a track must be seen for ``presence.enter_s`` before
the person counts as entered, and may go unseen for ``presence.hold_s`` before
they count as left, so a missed frame or two changes nothing. When the tracker
loses someone and finds them again under a new id before the hold runs out, the
new track quietly takes over the old one's place (no left/entered pair, the
count stays), and the person keeps the id they entered with: every
``person_left`` carries the id of a ``person_entered``.

Zones follow the people of the frame, so a zone never counts someone the frame
does not: each person counted in the frame is in the set of occupancy zones
their anchor lies in, and moves to another set as a whole, once it has held for
``enter_s`` when they arrive somewhere and for ``hold_s`` when they only leave
zones (still in view). Where zones do not overlap, a person is in at most one,
so the zone counts add up to at most the frame's count. A person out of view
keeps their zones until they leave the frame.

A restart need not lie either: `Presence.remember` gives who is counted (their
ids and zones), `Presence.recall` puts them back at the next start as if just
seen, so people still there are taken over by their new tracks without a new
``person_entered``, and people gone get their ``person_left`` once the hold
runs out. `EventStage` reports no state until the first ``enter_s`` of a run
has passed, so a cold start never publishes an empty room it has not looked at.

Falls (`FallDetector`), per track, from the skeleton:

1. Posture each frame: the torso angle (hip mid-point to shoulder mid-point,
   0 = upright, 90 = horizontal) and the whole-body angle (feet, or knees, to
   shoulders). *Upright*: torso within ``upright_deg`` of vertical. *Down*:
   torso and whole body at least ``down_deg`` from vertical (the box aspect
   stands in for the body when no feet or knees were found, and for both when
   the torso was not found).
2. A candidate: a down frame with upright frames at most ``window_s``
   before it, the body centre (mid-hips) having dropped since then by at
   least ``min_drop`` times the height the hips had above the feet.
3. Confirmed after ``confirm_s`` with no upright frame in between and most
   frames down: ``fall_detected``, unless the person is anchored in a
   ``lying_ok`` zone (a bed, a sofa).
4. The fall stays on until that person is seen upright for ``clear_s``
   (``fall_cleared``, reason ``recovered``) or `acknowledge` is called
   (reason ``acknowledged``). If the track is lost while down, the fall stays
   on and passes to the next new track found where the person lay (so does
   the history of a track lost mid-fall: a body changing shape fast can make
   the tracker lose it).

Why the everyday look-alikes do not fire: bending over (tying shoes) tips the
torso but not the whole body (the feet stay under the shoulders) and the hips
hardly drop; sitting down drops the hips but keeps the torso upright; lying
down slowly takes longer than ``window_s`` from upright to down, or happens
from sitting (no drop); lying in a ``lying_ok`` zone is expected; walking past
stays upright; several people are followed each by their own track. What it
cannot see: a fall behind furniture or out of frame (no skeleton), a fall
straight towards or away from the camera (the body barely looks horizontal in
the picture), a slow slide to the floor, and a fall that ends sitting up.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .config import FallConfig, PresenceConfig
from .constants import PART_IDS
from .core import Poses
from .zones import Zone, zone_membership

__all__ = [
    "EVENT_TYPES",
    "Event",
    "EventIds",
    "EventStage",
    "EventsResult",
    "FallDetector",
    "FallState",
    "Posture",
    "Presence",
    "SceneState",
    "posture",
]

PERSON_ENTERED = "person_entered"
PERSON_LEFT = "person_left"
FALL_DETECTED = "fall_detected"
FALL_CLEARED = "fall_cleared"
EVENT_TYPES: tuple[str, ...] = (PERSON_ENTERED, PERSON_LEFT, FALL_DETECTED, FALL_CLEARED)
PRESENCE_EVENT_TYPES: tuple[str, ...] = (PERSON_ENTERED, PERSON_LEFT)
FALL_EVENT_TYPES: tuple[str, ...] = (FALL_DETECTED, FALL_CLEARED)

# Posture facts (not tunables): a box this much wider than tall is a body lying
# down, this much taller than wide a body standing, when angles cannot be had.
DOWN_ASPECT = 1.3
UPRIGHT_ASPECT = 0.7
#: A standing person's hips are about this many torso lengths above their feet
#: (the scale when no feet were found), and their box about this many torsos tall.
HIP_HEIGHT_IN_TORSOS = 1.6
BOX_HEIGHT_IN_TORSOS = 3.0
#: Fraction of frames between a candidate and its confirmation that must be down.
MIN_DOWN_FRACTION = 0.5
#: A lost track's fall passes to a new track whose box centre lies in the old box grown by this.
HANDOVER_GROWTH = 0.5
#: Fall history of a track unseen this long is forgotten (active falls are kept).
FORGET_AFTER_S = 10.0

_SHOULDERS = [PART_IDS["leftShoulder"], PART_IDS["rightShoulder"]]
_HIPS = [PART_IDS["leftHip"], PART_IDS["rightHip"]]
_KNEES = [PART_IDS["leftKnee"], PART_IDS["rightKnee"]]
_ANKLES = [PART_IDS["leftAnkle"], PART_IDS["rightAnkle"]]


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Something a subscriber acts on; becomes one message on ``events`` (QoS 1, never retained).

    `id` is unique per node and boot, so a subscriber can drop a redelivered
    duplicate. `zone` None means the whole frame (the node). `fields` holds the
    type's own values (read-only).
    """

    id: str
    type: str
    wall_time: float  # time.time(): for the message
    mono_time: float  # time.monotonic(): for ordering and durations
    track_id: int | None
    zone: str | None
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


class EventIds:
    """Event ids ``<node>-<boot>-<n>``: unique as long as `boot` differs per start.

    The caller chooses `boot` (the daemon: a random token, or the boot time in
    milliseconds; replay: "replay"), so this stays free of clocks and randomness.
    """

    def __init__(self, node_id: str, boot: str):
        self.prefix = f"{node_id}-{boot}-"
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count}"


# --- presence -----------------------------------------------------------------------


@dataclass
class _Person:
    """Someone counted: `id` is the track id they entered with, kept for their
    ``person_left`` when another track takes their place."""

    id: int
    track: int | None  # the track that carries them now (None: recalled, not yet found)
    last_seen: float
    zones: frozenset[str] = frozenset()  # the occupancy zones they count in
    moving: frozenset[str] | None = None  # zones seen since `moving_since`, not yet counted
    moving_since: float = 0.0


@dataclass
class _Arrival:
    """A track seen, not yet counted."""

    first: float
    last: float
    zones: frozenset[str]
    zones_since: float


class Presence:
    """Debounced people in the frame and in its occupancy zones: see the module doc.

    ``update(seen, now)`` takes every track in the frame, each with the set of zone
    names its anchor lies in; returns [(event type, person id, zone or None for the
    frame, people in that area after it)], in order: entries, zone moves, exits.
    """

    def __init__(self, config: PresenceConfig, zones: Sequence[str] = ()):
        self.enter_s = config.enter_s
        self.hold_s = config.hold_s
        self.zones = tuple(zones)
        self.people: dict[int, _Person] = {}  # by person id, in the order they entered
        self._carrier: dict[int, int] = {}  # track id -> person id
        self._candidates: dict[int, _Arrival] = {}  # track id -> seen, not yet counted

    @property
    def count(self) -> int:
        return len(self.people)

    def zone_count(self, zone: str) -> int:
        return sum(zone in p.zones for p in self.people.values())

    def update(self, seen: Mapping[int, frozenset[str]], now: float) -> list[tuple[str, int, str | None, int]]:
        out: list[tuple[str, int, str | None, int]] = []
        for tid, zones in seen.items():
            pid = self._carrier.get(tid)
            if pid is None and tid in self.people:
                # A person's own track is back after another track took their place:
                # that one was someone else (two tracks in view are two people).
                pid = self._reclaim(tid, seen, now)
            if pid is not None:
                self.people[pid].last_seen = now
                continue
            cand = self._candidates.get(tid)
            if cand is None:
                self._candidates[tid] = _Arrival(now, now, zones, now)
            else:
                cand.last = now
                if zones != cand.zones:
                    cand.zones, cand.zones_since = zones, now
        for tid, cand in list(self._candidates.items()):
            if tid not in seen and now - cand.last > self.enter_s:  # a flicker, not a person
                del self._candidates[tid]
        for tid, cand in sorted(self._candidates.items(), key=lambda kv: kv[1].first):
            if tid not in seen or now - cand.first < self.enter_s:
                continue
            del self._candidates[tid]
            # Someone unseen all the while this track was seen (or recalled, not yet found).
            lost = [p for p in self.people.values() if p.track is None or p.last_seen < cand.first]
            if lost:  # the tracker lost someone and found them again: same person, same id
                person = max(lost, key=lambda p: p.last_seen)
                if person.track is not None:
                    self._carrier.pop(person.track, None)
                person.track, person.last_seen = tid, now
            else:
                person = self.people[tid] = _Person(tid, tid, now)
                out.append((PERSON_ENTERED, tid, None, len(self.people)))
            self._carrier[tid] = person.id
            person.moving, person.moving_since = cand.zones, cand.zones_since
        for tid, zones in seen.items():
            pid = self._carrier.get(tid)
            if pid is None:
                continue
            person = self.people[pid]
            if zones == person.zones:
                person.moving = None
                continue
            if zones != person.moving:
                person.moving, person.moving_since = zones, now
            wait = self.enter_s if zones - person.zones else self.hold_s  # arriving, or only leaving
            if now - person.moving_since >= wait:
                out += self._move(person, zones)
        for person in list(self.people.values()):
            if now - person.last_seen > self.hold_s:
                out += self._move(person, frozenset())
                del self.people[person.id]
                if person.track is not None:
                    self._carrier.pop(person.track, None)
                out.append((PERSON_LEFT, person.id, None, len(self.people)))
        return out

    def _reclaim(self, tid: int, seen: Mapping[int, frozenset[str]], now: float) -> int:
        """Track `tid` carries its person `tid` again; the track that had taken its place
        starts over as a newcomer (a candidate from now)."""
        person = self.people[tid]
        if person.track is not None:
            self._carrier.pop(person.track, None)
            if person.track in seen:
                zones = seen[person.track]
                self._candidates[person.track] = _Arrival(now, now, zones, now)
        person.track = tid
        self._carrier[tid] = tid
        return tid

    def _move(self, person: _Person, zones: frozenset[str]) -> list[tuple[str, int, str | None, int]]:
        """One person's zones change as a whole: left ones first, then entered ones."""
        old, person.zones, person.moving = person.zones, zones, None
        out: list[tuple[str, int, str | None, int]] = []
        for name in self.zones:
            if name in old and name not in zones:
                out.append((PERSON_LEFT, person.id, name, self.zone_count(name)))
        for name in self.zones:
            if name in zones and name not in old:
                out.append((PERSON_ENTERED, person.id, name, self.zone_count(name)))
        return out

    def remember(self) -> dict[str, Any]:
        """Who is counted, as plain JSON values, for `recall` after a restart."""
        return {
            "people": [{"id": p.id, "zones": [z for z in self.zones if z in p.zones]} for p in self.people.values()],
            "last_id": max([p.id for p in self.people.values()] + list(self._carrier), default=0),
        }

    def recall(self, memory: Mapping[str, Any], now: float) -> None:
        """Count again the people of `remember`, as if seen at `now`: a new track takes
        each one over (no new entry), or they leave once the hold runs out. Zones no
        longer configured are dropped; a damaged memory is ignored entry by entry."""
        for item in memory.get("people", ()) if isinstance(memory, Mapping) else ():
            try:
                pid = int(item["id"])
                zones = frozenset(z for z in item.get("zones", ()) if z in self.zones)
            except (KeyError, TypeError, ValueError):
                continue
            if pid > 0 and pid not in self.people:
                self.people[pid] = _Person(pid, None, now, zones)


# --- posture and falls ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Posture:
    """How one person's body lies in one frame (angles in degrees from vertical)."""

    state: str  # "upright" | "down" | "between" | "unknown"
    torso_deg: float | None
    body_deg: float | None
    centre_y: float  # frame pixels, mid-hips (or box centre)
    scale: float  # frame pixels: height of the hips above the feet (or as guessed from the torso or box)


def _mid(xy: np.ndarray, ok: np.ndarray, parts: list[int]) -> np.ndarray | None:
    have = ok[parts]
    if not have.any():
        return None
    return xy[parts][have].mean(axis=0)


def _angle_from_vertical(bottom: np.ndarray, top: np.ndarray) -> float | None:
    """0 when `top` is straight above `bottom` (image y grows downwards), 90 level, 180 below."""
    dx, dy = float(top[0] - bottom[0]), float(top[1] - bottom[1])
    if dx == 0 and dy == 0:
        return None
    return math.degrees(math.atan2(abs(dx), -dy))


def posture(
    xy: np.ndarray, scores: np.ndarray, *, min_score: float, upright_deg: float, down_deg: float
) -> Posture:
    """The posture of one pose, xy (17, 2) frame pixels and scores (17,)."""
    xy = np.asarray(xy, np.float64)
    ok = np.asarray(scores) >= min_score
    if not ok.any():
        return Posture("unknown", None, None, 0.0, 1.0)
    pts = xy[ok]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    box_w, box_h = x1 - x0, y1 - y0
    aspect = box_w / box_h if box_h > 0 else math.inf
    shoulders, hips = _mid(xy, ok, _SHOULDERS), _mid(xy, ok, _HIPS)
    feet = _mid(xy, ok, _ANKLES)
    if feet is None:
        feet = _mid(xy, ok, _KNEES)
    torso_deg = body_deg = None
    if shoulders is not None and hips is not None:
        torso_deg = _angle_from_vertical(hips, shoulders)
    if shoulders is not None and feet is not None:
        body_deg = _angle_from_vertical(feet, shoulders)
    if torso_deg is not None:
        torso = float(np.hypot(*(shoulders - hips)))
        scale = HIP_HEIGHT_IN_TORSOS * torso
        if feet is not None and feet[1] - hips[1] > 0.5 * torso:
            scale = float(feet[1] - hips[1])
        centre_y = float(hips[1])
        body_down = body_deg >= down_deg if body_deg is not None else aspect >= DOWN_ASPECT
        if torso_deg <= upright_deg:
            state = "upright"
        elif torso_deg >= down_deg and body_down:
            state = "down"
        else:
            state = "between"
    else:
        scale = max(box_h, box_w) / BOX_HEIGHT_IN_TORSOS * HIP_HEIGHT_IN_TORSOS
        centre_y = float((y0 + y1) / 2)
        if box_h <= 0 or box_w <= 0 or len(pts) < 4:
            state = "unknown"
        elif aspect >= DOWN_ASPECT:
            state = "down"
        elif aspect <= UPRIGHT_ASPECT:
            state = "upright"
        else:
            state = "between"
    return Posture(state, torso_deg, body_deg, centre_y, max(scale, 1.0))


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
    t: float
    t_up: float
    drop: float


@dataclass
class _FallTrack:
    samples: deque  # of (t, Posture)
    last_seen: float
    box: np.ndarray  # last box, normalised
    candidate: _Candidate | None = None
    up_since: float | None = None


class FallDetector:
    """Per-track fall state machine (see the module doc). Feed it every frame."""

    def __init__(self, config: FallConfig):
        self.config = config
        self._tracks: dict[int, _FallTrack] = {}
        self.active: dict[int, FallState] = {}  # by the track id that currently carries it

    def update(
        self,
        ids: Sequence[int],
        postures: Sequence[Posture],
        boxes: np.ndarray,
        zones: Sequence[str | None],
        lying_ok: Sequence[bool],
        now: float,
        wall: float,
        new_id: "EventIds",
    ) -> list[Event]:
        """One frame: track ids with their posture, normalised box (N, 4), zone and lying_ok."""
        cfg = self.config
        events: list[Event] = []
        present = set(ids)
        for i, tid in enumerate(ids):
            track = self._tracks.get(tid)
            if track is None:
                track = self._tracks[tid] = self._inherit(tid, boxes[i], present, now)
            track.last_seen, track.box = now, boxes[i]
            p = postures[i]
            track.samples.append((now, p))
            while track.samples and now - track.samples[0][0] > cfg.window_s + cfg.confirm_s:
                track.samples.popleft()

            if tid in self.active:
                if p.state == "upright":
                    track.up_since = now if track.up_since is None else track.up_since
                    if now - track.up_since >= cfg.clear_s:
                        events.append(self._cleared(tid, "recovered", now, wall, new_id))
                elif p.state != "unknown":
                    track.up_since = None
                continue
            if track.candidate is not None:
                cand = track.candidate
                if p.state == "upright":
                    track.candidate = None
                elif now - cand.t >= cfg.confirm_s:
                    track.candidate = None
                    since = [s for t, s in track.samples if t >= cand.t]
                    down = sum(s.state == "down" for s in since)
                    if down >= MIN_DOWN_FRACTION * len(since) and not lying_ok[i]:
                        events.append(self._detected(tid, cand, since, zones[i], now, wall, new_id))
                continue
            if p.state == "down":
                cand = self._candidate(track, now, p)
                if cand is not None:
                    track.candidate = cand
                    if cfg.confirm_s == 0 and not lying_ok[i]:
                        track.candidate = None
                        events.append(self._detected(tid, cand, [p], zones[i], now, wall, new_id))
        for tid, track in list(self._tracks.items()):
            if tid not in present:
                if now - track.last_seen > cfg.window_s:
                    track.candidate = None  # unconfirmed, and no longer seen: dropped
                if now - track.last_seen > FORGET_AFTER_S and tid not in self.active:
                    del self._tracks[tid]
        return events

    def acknowledge(self, now: float, wall: float, new_id: "EventIds") -> list[Event]:
        """Clear every fall that is on (a person has seen to it)."""
        return [self._cleared(tid, "acknowledged", now, wall, new_id) for tid in list(self.active)]

    def _candidate(self, track: _FallTrack, now: float, p: Posture) -> _Candidate | None:
        """A fall starts here if the person was upright within the window and the hips
        dropped far enough: from the highest upright hips in the window, in the largest
        upright hip height (a body already folding has lower hips and a smaller one)."""
        cfg = self.config
        upright = [(t, s) for t, s in track.samples if now - t <= cfg.window_s and s.state == "upright"]
        if not upright:
            return None
        top = min(s.centre_y for _, s in upright)
        scale = max(s.scale for _, s in upright)
        drop = (p.centre_y - top) / scale
        return _Candidate(now, upright[-1][0], drop) if drop >= cfg.min_drop else None

    def _detected(
        self, tid: int, cand: _Candidate, since: list[Posture], zone: str | None,
        now: float, wall: float, new_id: EventIds,
    ) -> Event:
        cfg = self.config
        torso = [s.torso_deg for s in since if s.torso_deg is not None]
        angle = float(np.mean(torso)) if torso else cfg.down_deg
        horizontal = min(angle, 180.0 - angle) if angle > 90 else angle
        span = max(90.0 - cfg.down_deg, 1e-6)
        a = min(1.0, max(0.0, 0.5 + 0.5 * (horizontal - cfg.down_deg) / span))
        d = min(1.0, cand.drop / max(2.0 * cfg.min_drop, 1e-6))
        s = 0.5 + 0.5 * min(1.0, max(0.0, 1.0 - (cand.t - cand.t_up) / cfg.window_s))
        confidence = round(float(a + d + s) / 3.0, 3)
        event = Event(
            new_id.next(), FALL_DETECTED, wall, now, tid, zone,
            {"confidence": confidence, "torso_deg": round(angle, 1), "drop": round(float(cand.drop), 2)},
        )
        self.active[tid] = FallState(event.id, tid, zone, wall, confidence)
        self._tracks[tid].up_since = None
        return event

    def _cleared(self, tid: int, reason: str, now: float, wall: float, new_id: EventIds) -> Event:
        fall = self.active.pop(tid)
        if tid in self._tracks:
            self._tracks[tid].up_since = None
        return Event(
            new_id.next(), FALL_CLEARED, wall, now, fall.track_id, fall.zone,
            {"reason": reason, "fall_event_id": fall.event_id},
        )

    def _inherit(self, tid: int, box: np.ndarray, present: set[int], now: float) -> _FallTrack:
        """The state for a track seen for the first time. A body changing shape fast
        (a fall) can make the tracker lose someone and find them again under a new id:
        a new track found where a lost track just was (its centre in the old box, grown)
        carries on that track's history, and its fall if it had one on."""
        for old, track in list(self._tracks.items()):
            if old in present or old == tid:
                continue
            if old not in self.active and now - track.last_seen > self.config.window_s:
                continue
            ob = track.box
            half = HANDOVER_GROWTH * (ob[2:] - ob[:2]) / 2
            centre = (box[:2] + box[2:]) / 2
            if np.all(centre >= ob[:2] - half) and np.all(centre <= ob[2:] + half):
                del self._tracks[old]
                if old in self.active:
                    self.active[tid] = self.active.pop(old)
                return track
        return _FallTrack(deque(), now, box)


# --- the stage ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SceneState:
    """The debounced state the retained topics and Home Assistant follow."""

    person_count: int
    zones: tuple[tuple[str, int], ...]  # (occupancy zone name, person count), config order
    falls: tuple[FallState, ...]

    @property
    def occupied(self) -> bool:
        return self.person_count > 0

    @property
    def fall(self) -> bool:
        return bool(self.falls)


@dataclass(frozen=True, slots=True)
class EventsResult:
    events: tuple[Event, ...]
    state: SceneState
    #: Publish the retained state (and person count) again. False until the first
    #: ``enter_s`` of the run has passed: until then the retained state stands.
    state_changed: bool
    snapshot: bool  # a fall was raised: take a snapshot of this frame


class EventStage:
    """Presence per node and zone, and falls, from tracked poses (after the exclusion filter).

    ``process(poses, width, height, now, wall)``: `poses` must carry track ids.
    ``acknowledge(now, wall)``: the ``cmd/ack_fall`` command.
    `recall`: what `Presence.remember` gave before a restart, counted again from
    the first frame.
    """

    def __init__(
        self,
        presence: PresenceConfig,
        falls: FallConfig,
        zones: Sequence[Zone],
        ids: EventIds,
        *,
        recall: Mapping[str, Any] | None = None,
    ):
        self.ids = ids
        self.zones = [z for z in zones if z.kind == "occupancy"]
        self.falls_config = falls
        self.presence = Presence(presence, [z.name for z in self.zones])
        self.falls = FallDetector(falls) if falls.enabled else None
        self._state: SceneState | None = None
        self._recall = recall
        self._first_frame: float | None = None
        self._decided = False  # the first enter_s of the run has passed

    def state(self) -> SceneState:
        return SceneState(
            self.presence.count,
            tuple((z.name, self.presence.zone_count(z.name)) for z in self.zones),
            tuple(self.falls.active.values()) if self.falls else (),
        )

    def process(self, poses: Poses, width: int, height: int, now: float, wall: float) -> EventsResult:
        if poses.track_ids is None:
            raise ValueError("EventStage needs tracked poses (run the Tracker first)")
        if self._first_frame is None:
            self._first_frame = now
            if self._recall:
                self.presence.recall(self._recall, now)
            self._recall = None
        self._decided = self._decided or now - self._first_frame >= self.presence.enter_s
        ids = [int(t) for t in poses.track_ids]
        min_score = self.falls_config.min_part_score
        inside = zone_membership(poses, self.zones, width, height, min_score)  # (N, Z)
        seen = {
            tid: frozenset(z.name for k, z in enumerate(self.zones) if inside[i, k])
            for i, tid in enumerate(ids)
        }
        events = [
            self._presence_event(kind, tid, zone, count, now, wall)
            for kind, tid, zone, count in self.presence.update(seen, now)
        ]
        if self.falls is not None:
            cfg = self.falls_config
            postures = [
                posture(poses.xy[i], poses.scores[i], min_score=min_score,
                        upright_deg=cfg.upright_deg, down_deg=cfg.down_deg)
                for i in range(len(ids))
            ]
            # Exclusion zones never get here (ZoneFilter ran first): every zone is an occupancy one.
            zone_of = [
                next((z.name for k, z in enumerate(self.zones) if inside[i, k]), None)
                for i in range(len(ids))
            ]
            lying = [
                any(inside[i, k] and z.lying_ok for k, z in enumerate(self.zones))
                for i in range(len(ids))
            ]
            boxes = np.asarray(poses.bounding_boxes(min_score), np.float64) / np.array(
                [width, height, width, height], np.float64
            )
            events.extend(self.falls.update(ids, postures, boxes, zone_of, lying, now, wall, self.ids))
        return self._result(events)

    def acknowledge(self, now: float, wall: float) -> EventsResult:
        events = self.falls.acknowledge(now, wall, self.ids) if self.falls else []
        return self._result(events)

    def _result(self, events: list[Event]) -> EventsResult:
        state = self.state()
        changed = self._decided and state != self._state
        if self._decided:
            self._state = state
        snapshot = any(e.type == FALL_DETECTED for e in events)
        return EventsResult(tuple(events), state, changed, snapshot)

    def _presence_event(
        self, kind: str, tid: int, zone: str | None, count: int, now: float, wall: float
    ) -> Event:
        return Event(self.ids.next(), kind, wall, now, tid, zone, {"person_count": count})
