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

Falls: `falls.FallDetector`, per track, from the skeleton (falls.py says how).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .config import FallConfig, PresenceConfig
from .core import Poses
from .falls import FALL_CLEARED, FALL_DETECTED, FallDetector, FallState, measure
from .zones import Zone, zone_membership

__all__ = [
    "EVENT_KINDS",
    "EVENT_TYPES",
    "Event",
    "EventIds",
    "EventEntity",
    "EventKind",
    "EventStage",
    "EventsResult",
    "FallDetector",
    "FallState",
    "Presence",
    "SceneState",
]

PERSON_ENTERED = "person_entered"
PERSON_LEFT = "person_left"

# --- event types: what the rest of the node does with each --------------------------------


@dataclass(frozen=True, slots=True)
class EventEntity:
    """A Home Assistant ``event`` entity on ``events`` (mqtt/discovery.py), shared by the
    event types that name it. `feature` is the discovery switch that announces it
    (``presence`` or ``falls``). `zoned`: one entity for the whole frame (events
    without a zone) and one more per occupancy zone; else one for every event."""

    key: str  # its component key; zoned ones also get zone_<zone>_<key>
    name: str
    icon: str
    feature: str
    zoned: bool = False


@dataclass(frozen=True, slots=True)
class EventKind:
    """One event type. `critical`: a full outbox drops it last (outbox.PRIORITY_CRITICAL,
    else PRIORITY_EVENT). `snapshot`: raising it takes a snapshot of that frame whatever
    the cooldown, with this reason in the file name, and the event carries the file
    name (``snapshot``); None: no snapshot. `entity`: where Home Assistant shows it."""

    type: str
    entity: EventEntity
    critical: bool = False
    snapshot: str | None = None


PRESENCE_ENTITY = EventEntity("presence_event", "Presence", "mdi:account-arrow-right", "presence", zoned=True)
FALL_ENTITY = EventEntity("fall_event", "Fall event", "mdi:human-handsdown", "falls")

#: Every event type, in the order Home Assistant lists them. A new type is a row here
#: (and an entity, if it needs one of its own), its fields in the events schema (a new
#: "v", messages.SCHEMA_VERSIONS), and the code that raises it.
EVENT_KINDS: dict[str, EventKind] = {kind.type: kind for kind in (
    EventKind(PERSON_ENTERED, PRESENCE_ENTITY),
    EventKind(PERSON_LEFT, PRESENCE_ENTITY),
    EventKind(FALL_DETECTED, FALL_ENTITY, critical=True, snapshot="fall"),
    EventKind(FALL_CLEARED, FALL_ENTITY),
)}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_KINDS)


def event_types(entity: EventEntity) -> tuple[str, ...]:
    """The event types an entity takes, in `EVENT_KINDS` order."""
    return tuple(kind.type for kind in EVENT_KINDS.values() if kind.entity == entity)


PRESENCE_EVENT_TYPES: tuple[str, ...] = event_types(PRESENCE_ENTITY)
FALL_EVENT_TYPES: tuple[str, ...] = event_types(FALL_ENTITY)


def snapshot_reason(events: Sequence[Event]) -> str | None:
    """The reason of the first of `events` whose type wants a snapshot, or None."""
    return next((EVENT_KINDS[e.type].snapshot for e in events if EVENT_KINDS[e.type].snapshot), None)


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
        if self.type not in EVENT_KINDS:
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
    snapshot: bool  # an event that wants a snapshot was raised (EventKind.snapshot): take this frame


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
        self.falls = FallDetector(falls, self._event) if falls.enabled else None
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
            bodies = [measure(poses.xy[i], poses.scores[i], min_score) for i in range(len(ids))]
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
            events.extend(self.falls.update(ids, bodies, boxes, zone_of, lying, now, wall))
        return self._result(events)

    def acknowledge(self, now: float, wall: float) -> EventsResult:
        events = self.falls.acknowledge(now, wall) if self.falls else []
        return self._result(events)

    def _result(self, events: list[Event]) -> EventsResult:
        state = self.state()
        changed = self._decided and state != self._state
        if self._decided:
            self._state = state
        snapshot = snapshot_reason(events) is not None
        return EventsResult(tuple(events), state, changed, snapshot)

    def _event(self, kind: str, wall: float, now: float, tid: int | None, zone: str | None,
               fields: Mapping[str, Any]) -> Event:
        """A new event with the next id (the fall detector raises its events through this)."""
        return Event(self.ids.next(), kind, wall, now, tid, zone, fields)

    def _presence_event(
        self, kind: str, tid: int, zone: str | None, count: int, now: float, wall: float
    ) -> Event:
        return self._event(kind, wall, now, tid, zone, {"person_count": count})
