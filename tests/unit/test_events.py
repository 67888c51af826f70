"""events.py: debounced presence, the fall state machine, event and state messages."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from edgepose import messages
from edgepose.config import FallConfig, PresenceConfig
from edgepose.core import Poses
from edgepose.events import Event, EventIds, EventStage, Presence, SceneState
from edgepose.falls import measure
from edgepose.tracking import Tracker
from edgepose.zones import Zone

from .synthetic import CANONICAL, bend, crumpled, fallen, lerp, person, poses_of, sit_chair, squat

W, H = 640, 480
FPS = 10.0
BASE = CANONICAL.xy
WALL0 = 1_714_564_800.0


def validate(kind: str, payload: bytes) -> dict:
    obj = json.loads(payload)
    jsonschema.Draft202012Validator(messages.load_schema(kind)).validate(obj)
    return obj


class Scene:
    """Tracker + EventStage driven by frames of unit skeletons, at 10 frames a second."""

    def __init__(self, presence=PresenceConfig(), falls=FallConfig(), zones=()):
        self.tracker = Tracker()
        self.stage = EventStage(presence, falls, list(zones), EventIds("hall", "boot1"))
        self.t = 0.0
        self.events: list[Event] = []
        self.results = []

    def frame(self, *people: tuple[np.ndarray, np.ndarray]) -> list[Event]:
        poses = self.tracker.process(poses_of(*people), self.t)
        result = self.stage.process(poses, W, H, self.t, WALL0 + self.t)
        self.results.append(result)
        self.events.extend(result.events)
        self.t = round(self.t + 1 / FPS, 6)
        return list(result.events)

    def hold(self, seconds: float, *people) -> list[Event]:
        out = []
        for _ in range(int(round(seconds * FPS))):
            out += self.frame(*people)
        return out

    def motion(self, seconds: float, pose_at, height=200, feet=(320, 430)) -> list[Event]:
        """pose_at(u) for u from 0 to 1 over `seconds`."""
        out = []
        n = int(round(seconds * FPS))
        for k in range(1, n + 1):
            out += self.frame(person(pose_at(k / n), height, feet))
        return out

    def types(self) -> list[tuple[str, str | None]]:
        return [(e.type, e.zone) for e in self.events]


def standing(feet=(320, 430), height=200):
    return person(BASE, height, feet)


# --- events and ids --------------------------------------------------------------------


def test_event_ids_are_unique_per_node_and_boot():
    ids = EventIds("hall", "b7")
    assert [ids.next() for _ in range(3)] == ["hall-b7-1", "hall-b7-2", "hall-b7-3"]


def test_event_is_frozen_with_read_only_fields():
    e = Event("i", "person_entered", 1.0, 2.0, 3, None, {"person_count": 1})
    with pytest.raises(AttributeError):
        e.type = "person_left"  # type: ignore[misc]
    with pytest.raises(TypeError):
        e.fields["person_count"] = 2  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown event type"):
        Event("i", "party", 1.0, 2.0, 3, None)


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("person_entered", {"person_count": 1}),
        ("person_left", {"person_count": 0}),
        ("fall_detected", {"confidence": 0.8, "torso_deg": 85.0, "drop": 0.9, "cause": "fall_seen",
                           "snapshot": "x.jpg"}),
        ("fall_cleared", {"reason": "recovered", "fall_event_id": "hall-b-1"}),
    ],
)
def test_event_messages_are_qos1_never_retained_and_validate(kind, fields):
    event = Event("hall-b-2", kind, WALL0 + 0.1234, 5.0, 3, "bed", fields)
    msg = messages.event_message(event, node_id="hall")
    assert (msg.topic, msg.qos, msg.retain) == ("events", 1, False)
    obj = validate("events", msg.payload)
    assert obj["id"] == "hall-b-2" and obj["type"] == kind and obj["ts"] == "2024-05-01T12:00:00.123Z"
    assert obj["track_id"] == 3 and obj["zone"] == "bed"


def test_events_schema_refuses_fields_of_another_type():
    event = Event("x", "person_entered", WALL0, 0.0, 1, None, {"confidence": 0.5})
    with pytest.raises(jsonschema.ValidationError):
        validate("events", messages.event_message(event, node_id="hall").payload)


def test_state_message_is_retained_and_validates():
    state = SceneState(2, (("bed", 1), ("door", 0)), ())
    msg = messages.state_message(state, now=WALL0)
    assert (msg.topic, msg.qos, msg.retain) == ("state", 1, True)
    obj = validate("state", msg.payload)
    assert obj["zones"] == {"bed": {"person_count": 1, "occupied": True}, "door": {"person_count": 0, "occupied": False}}
    assert obj["occupied"] is True and obj["fall"] is False


# --- presence -----------------------------------------------------------------------------


NOWHERE = frozenset()


def test_presence_enters_after_enter_s_and_leaves_after_hold_s():
    p = Presence(PresenceConfig(enter_s=0.5, hold_s=3.0))
    assert p.update({1: NOWHERE}, 0.0) == []
    assert p.update({1: NOWHERE}, 0.4) == []
    assert p.update({1: NOWHERE}, 0.5) == [("person_entered", 1, None, 1)]
    assert p.update({}, 3.4) == []
    assert p.update({}, 3.6) == [("person_left", 1, None, 0)]


def test_a_one_frame_false_detection_never_enters():
    p = Presence(PresenceConfig(enter_s=0.5, hold_s=3.0))
    events = p.update({1: NOWHERE}, 0.0)
    for k in range(1, 30):
        events += p.update({}, k / FPS)
    assert events == [] and p.count == 0


def test_missed_frames_do_not_make_anyone_leave():
    scene = Scene()
    scene.hold(1.0, standing())
    for _ in range(10):  # every third frame missed, and two in a row now and then
        scene.frame(standing())
        scene.frame()
        scene.frame()
    assert scene.types() == [("person_entered", None)]
    assert scene.results[-1].state.person_count == 1


def test_count_and_state_follow_the_debounced_presence_not_each_frame():
    scene = Scene(PresenceConfig(enter_s=0.5, hold_s=2.0))
    scene.frame(standing())
    assert scene.results[-1].state.person_count == 0  # not yet: enter_s
    scene.hold(0.6, standing())
    assert scene.results[-1].state.person_count == 1
    changed = [r.state_changed for r in scene.results]
    assert changed.count(True) == 1  # the first decision (enter_s after the start): the entry
    scene.hold(1.9)
    assert scene.results[-1].state.person_count == 1  # still within hold_s
    scene.hold(0.3)
    assert scene.results[-1].state.person_count == 0
    assert scene.types() == [("person_entered", None), ("person_left", None)]


def test_no_state_is_reported_before_the_first_enter_s_of_a_run():
    """A cold start keeps the retained state until it has looked for enter_s: the first
    state reported already counts the person in view, never an empty room."""
    scene = Scene(PresenceConfig(enter_s=0.5, hold_s=2.0))
    scene.hold(0.5, standing())
    assert [r.state_changed for r in scene.results] == [False] * 5
    scene.frame(standing())  # 0.5 s after the first frame
    first = scene.results[-1]
    assert first.state_changed and first.state.person_count == 1
    assert scene.types() == [("person_entered", None)]


def test_two_people_enter_and_leave_in_order_with_counts():
    scene = Scene(PresenceConfig(enter_s=0.3, hold_s=1.0))
    a, b = standing((200, 430)), standing((450, 430))
    scene.hold(1.0, a)
    scene.hold(1.0, a, b)
    scene.hold(1.5, b)
    scene.hold(1.5)
    counts = [(e.type, e.fields["person_count"]) for e in scene.events]
    assert counts == [("person_entered", 1), ("person_entered", 2), ("person_left", 1), ("person_left", 0)]
    first_id = scene.events[0].track_id
    assert scene.events[2].track_id == first_id  # the first to come is the first to go


def test_a_new_track_for_the_same_person_within_the_hold_is_no_new_visit():
    presence = PresenceConfig(enter_s=0.3, hold_s=3.0)
    p = Presence(presence)
    p.update({1: NOWHERE}, 0.0)
    assert p.update({1: NOWHERE}, 0.3) == [("person_entered", 1, None, 1)]
    # Track 1 is lost; the tracker finds the person again as track 2.
    assert p.update({2: NOWHERE}, 1.5) == []
    assert p.update({2: NOWHERE}, 1.8) == []  # takes over track 1's place: no entry, no exit later
    assert p.count == 1
    # They leave under the id they entered with, not the track's.
    assert p.update({}, 5.0) == [("person_left", 1, None, 0)]


def test_zone_presence_has_its_own_events_and_counts():
    door = Zone("door", "occupancy", False, "feet", np.array([[0.0, 0.0], [0.4, 0.0], [0.4, 1.0], [0.0, 1.0]]))
    scene = Scene(PresenceConfig(enter_s=0.3, hold_s=0.5), zones=[door])
    scene.hold(1.0, standing((100, 430)))  # in the door zone
    scene.hold(1.0, standing((150, 430)))
    scene.hold(2.0, standing((500, 430)))  # walked out of the zone, still in view
    assert scene.types() == [("person_entered", None), ("person_entered", "door"), ("person_left", "door")]
    assert scene.results[-1].state.zones == (("door", 0),)
    assert scene.results[-1].state.person_count == 1


def check_consistent(events: list[tuple[str, int, str | None]]) -> None:
    """Per (id, area): entered, left, entered, ... never a left without its entry."""
    inside: set[tuple[int, str | None]] = set()
    for kind, pid, zone in events:
        key = (pid, zone)
        if kind == "person_entered":
            assert key not in inside, f"{key} entered twice"
            inside.add(key)
        else:
            assert key in inside, f"{key} left without having entered"
            inside.discard(key)


@pytest.mark.parametrize("seed", range(40))
def test_presence_events_and_counts_agree_with_themselves_whatever_the_tracker_does(seed):
    """Random people flickering, lost and found under new track ids, walking between two
    zones that tile the frame: every left follows an entry of the same id and area, no
    zone counts more than the frame, the zones together never more than the frame."""
    rng = np.random.default_rng(seed)
    p = Presence(PresenceConfig(enter_s=0.3, hold_s=1.0), ["left", "right"])
    people: dict[int, str] = {}  # track id -> zone of a person in view
    next_track, events = 1, []
    counts: dict[str | None, int] = {None: 0, "left": 0, "right": 0}  # as the events tell it
    for step in range(400):
        now = step / FPS
        if rng.random() < 0.05 and len(people) < 4:
            people[next_track] = str(rng.choice(["left", "right"]))
            next_track += 1
        for tid in list(people):
            r = rng.random()
            if r < 0.01:
                del people[tid]  # walks out
            elif r < 0.03:  # the tracker loses them and finds them again under a new id
                people[next_track] = people.pop(tid)
                next_track += 1
            elif r < 0.08:
                people[tid] = "right" if people[tid] == "left" else "left"
        seen = {tid: frozenset([zone]) for tid, zone in people.items() if rng.random() > 0.2}
        for kind, pid, zone, count in p.update(seen, now):
            events.append((kind, pid, zone))
            counts[zone] += 1 if kind == "person_entered" else -1
            assert count == counts[zone], f"step {step}: {kind} {pid} {zone} says {count}"
        assert counts == {None: p.count, "left": p.zone_count("left"), "right": p.zone_count("right")}
        left, right = p.zone_count("left"), p.zone_count("right")
        assert left + right <= p.count, f"step {step}: zones {left} + {right} > frame {p.count}"
    check_consistent(events)
    assert any(k == "person_left" and z is None for k, _, z in events), "the scenario must exercise exits"


def test_a_track_seen_beside_the_one_it_took_over_from_is_someone_else():
    p = Presence(PresenceConfig(enter_s=0.3, hold_s=3.0))
    events = []
    for k in range(4):
        events += p.update({1: NOWHERE}, k / FPS)
    for k in range(4, 8):  # track 1 unseen; track 2 appears: taken for the same person
        events += p.update({2: NOWHERE}, k / FPS)
    assert p.count == 1
    for k in range(8, 12):  # track 1 is back beside track 2: two people
        events += p.update({1: NOWHERE, 2: NOWHERE}, k / FPS)
    for k in range(12, 60):
        events += p.update({}, k / FPS)
    assert [e[:3] for e in events] == [
        ("person_entered", 1, None), ("person_entered", 2, None),
        ("person_left", 1, None), ("person_left", 2, None),
    ]


def test_a_person_walking_between_tiling_zones_is_counted_once():
    left = Zone("left", "occupancy", False, "feet", np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]))
    right = Zone("right", "occupancy", False, "feet", np.array([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]))
    scene = Scene(PresenceConfig(enter_s=0.3, hold_s=2.0), zones=[left, right])
    for k in range(60):  # 6 s from the left edge to the right edge, and back
        x = 60 + 520 * (k / 59)
        scene.frame(standing((x, 430)))
    for k in range(60):
        scene.frame(standing((580 - 520 * (k / 59), 430)))
    for r in scene.results:
        zones = dict(r.state.zones)
        assert zones["left"] + zones["right"] <= r.state.person_count, r.state
    assert scene.types() == [
        ("person_entered", None), ("person_entered", "left"),
        ("person_left", "left"), ("person_entered", "right"),
        ("person_left", "right"), ("person_entered", "left"),
    ]


def test_a_person_found_again_under_a_new_track_leaves_with_the_id_they_entered_with():
    scene = Scene(PresenceConfig(enter_s=0.3, hold_s=3.0))
    scene.hold(1.0, standing((200, 430)))
    scene.hold(1.5)  # lost for longer than the tracker's max age, not the hold
    scene.hold(1.0, standing((260, 430)))  # a new track: the same person
    scene.hold(4.0)
    (entered,) = [e for e in scene.events if e.type == "person_entered"]
    (left,) = [e for e in scene.events if e.type == "person_left"]
    assert left.track_id == entered.track_id


def test_who_was_present_is_remembered_across_a_restart():
    """The next run counts the remembered people from its first frame: no person_entered
    for someone still in view, and a person_left (their old id) for someone gone, once
    the hold has run out from the restart."""
    door = Zone("door", "occupancy", False, "feet", np.array([[0.0, 0.0], [0.4, 0.0], [0.4, 1.0], [0.0, 1.0]]))
    presence = PresenceConfig(enter_s=0.5, hold_s=2.0)
    before = Scene(presence, zones=[door])
    before.hold(2.0, standing((100, 430)), standing((500, 430)))
    memory = before.stage.presence.remember()
    assert sorted(memory["people"], key=lambda m: m["id"]) == [{"id": 1, "zones": ["door"]}, {"id": 2, "zones": []}]
    memory = json.loads(json.dumps(memory))  # what the state file gives back

    after = Scene(presence, zones=[door])
    after.tracker = Tracker(first_id=memory["last_id"] + 1)
    after.stage = EventStage(presence, FallConfig(), [door], EventIds("hall", "boot2"), recall=memory)
    after.hold(5.0, standing((100, 430)))  # the one by the door is still there; the other left
    states = [r.state for r in after.results if r.state_changed]
    assert states[0].person_count == 2 and dict(states[0].zones) == {"door": 1}, "no empty room at start"
    assert after.types() == [("person_left", None)]
    assert after.events[0].track_id == 2 and after.results[-1].state.person_count == 1


def test_a_damaged_memory_is_ignored_entry_by_entry():
    p = Presence(PresenceConfig(), ["bed"])
    p.recall({"people": [{"id": 4, "zones": ["bed", "gone"]}, {"id": "x"}, "junk", {"zones": []}]}, 0.0)
    assert p.count == 1 and p.zone_count("bed") == 1
    p.recall("not a mapping", 0.0)  # type: ignore[arg-type]
    assert p.count == 1


def test_event_stage_needs_track_ids():
    stage = EventStage(PresenceConfig(), FallConfig(), [], EventIds("n", "b"))
    with pytest.raises(ValueError, match="tracked"):
        stage.process(poses_of(standing()), W, H, 0.0, WALL0)


# --- body measurements --------------------------------------------------------------------


def body_of(unit):
    xy, scores = person(unit, 200, (320, 430))
    return measure(xy, scores, 0.3)


def test_a_standing_body_is_tall_with_the_head_on_top_and_the_torso_vertical():
    b = body_of(BASE)
    assert b.torso_deg < 5 and b.head_found and b.top_y < b.hip_y
    assert 180 < b.height <= 200 and b.width < b.height / 2


def test_a_fallen_body_lies_level_and_a_bent_one_has_its_head_below_the_hips():
    assert 80 < body_of(fallen(BASE, 90)).torso_deg < 100
    assert 80 < body_of(fallen(BASE, -85)).torso_deg < 100
    bent = body_of(bend(BASE, 150))
    assert bent.torso_deg > 120 and bent.top_y > bent.hip_y


def test_without_a_head_the_top_is_guessed_from_the_shoulders_and_too_little_is_nothing():
    xy, scores = person(BASE, 200, (320, 430))
    scores[:5] = 0.0  # no head parts
    b = measure(xy, scores, 0.3)
    assert not b.head_found and b.top_y < xy[5:7, 1].mean()
    assert measure(xy, np.zeros(17), 0.3) is None


# --- falls (hand-made skeleton; test_fall_dataset.py runs the COCO ones) -----------------


def fall(scene: Scene, seconds: float = 0.6, deg: float = 88.0) -> list[Event]:
    return scene.motion(seconds, lambda u: fallen(BASE, deg * u * u))


def test_a_fall_is_raised_after_the_confirmation_period_with_track_zone_and_confidence():
    room = Zone("living", "occupancy", False, "centre", np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    scene = Scene(falls=FallConfig(confirm_s=2.0), zones=[room])
    scene.hold(2.0, standing())
    assert fall(scene) == []
    down = person(fallen(BASE, 88.0), 200, (320, 430))
    assert scene.hold(1.5, down) == []  # not yet: confirming
    events = scene.hold(1.0, down)
    (event,) = [e for e in events if e.type == "fall_detected"]
    assert event.track_id == scene.events[0].track_id and event.zone == "living"
    assert 0.5 <= event.fields["confidence"] <= 1.0
    assert scene.results[-1].state.fall and scene.results[-1].snapshot is False
    assert any(r.snapshot for r in scene.results)  # the frame of the fall asks for a snapshot
    validate("events", messages.event_message(event, node_id="hall").payload)
    validate("state", messages.state_message(scene.results[-1].state).payload)


def test_the_fall_stays_on_while_down_and_clears_when_upright_again():
    scene = Scene(falls=FallConfig(confirm_s=1.0, clear_s=2.0))
    scene.hold(2.0, standing())
    fall(scene)
    down = person(fallen(BASE, 88.0), 200, (320, 430))
    scene.hold(30.0, down)
    detected = [e for e in scene.events if e.type == "fall_detected"]
    assert len(detected) == 1 and scene.results[-1].state.fall
    scene.motion(2.0, lambda u: fallen(BASE, 88.0 * (1 - u)))  # gets up slowly (upright for the last 0.7 s)
    scene.hold(1.0, standing())
    assert not any(e.type == "fall_cleared" for e in scene.events)  # upright, but not for clear_s yet
    scene.hold(1.0, standing())
    (cleared,) = [e for e in scene.events if e.type == "fall_cleared"]
    assert cleared.fields == {"reason": "recovered", "fall_event_id": detected[0].id}
    assert not scene.results[-1].state.fall


def test_a_fall_can_be_acknowledged_and_is_not_raised_again_while_still_down():
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    fall(scene)
    down = person(fallen(BASE, 88.0), 200, (320, 430))
    scene.hold(1.5, down)
    result = scene.stage.acknowledge(scene.t, WALL0 + scene.t)
    (cleared,) = result.events
    assert cleared.type == "fall_cleared" and cleared.fields["reason"] == "acknowledged"
    assert result.state_changed and not result.state.fall
    scene.hold(10.0, down)
    assert [e.type for e in scene.events].count("fall_detected") == 1
    assert scene.stage.acknowledge(scene.t, WALL0).events == ()  # nothing on: nothing to clear


def test_a_fall_followed_by_getting_up_within_the_confirmation_is_not_raised():
    scene = Scene(falls=FallConfig(confirm_s=2.0))
    scene.hold(2.0, standing())
    fall(scene)
    scene.hold(0.5, person(fallen(BASE, 88.0), 200, (320, 430)))
    scene.motion(0.8, lambda u: fallen(BASE, 88.0 * (1 - u)))
    scene.hold(3.0, standing())
    assert not any(e.type.startswith("fall") for e in scene.events)


def test_no_fall_in_a_lying_ok_zone():
    bed = Zone("bed", "occupancy", True, "centre", np.array([[0.4, 0.7], [1.0, 0.7], [1.0, 1.0], [0.4, 1.0]]))
    scene = Scene(falls=FallConfig(confirm_s=1.0), zones=[bed])
    scene.hold(2.0, standing())
    fall(scene, deg=88.0)  # flops onto the bed to the right, as fast as a fall
    scene.hold(5.0, person(fallen(BASE, 88.0), 200, (320, 430)))
    assert not any(e.type.startswith("fall") for e in scene.events)
    assert scene.results[-1].state.zones == (("bed", 1),)


@pytest.mark.parametrize(
    ("name", "seconds", "pose_at"),
    [
        ("lying down slowly", 6.0, lambda u: fallen(BASE, 88.0 * u)),
        ("bending over", 0.6, lambda u: bend(BASE, 95.0 * u)),
        ("squatting to tie shoes", 0.8, lambda u: bend(squat(BASE, 0.5 * u), 65.0 * u)),
        ("sitting down", 0.8, lambda u: lerp(BASE, sit_chair(BASE), u)),
        ("knees giving way, staying upright", 0.5, lambda u: lerp(BASE, crumpled(BASE), u)),
    ],
)
def test_everyday_movements_are_not_falls(name, seconds, pose_at):
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    scene.motion(seconds, pose_at)
    final = person(pose_at(1.0), 200, (320, 430))
    scene.hold(8.0, final)
    assert not any(e.type.startswith("fall") for e in scene.events), name


def test_a_track_lost_mid_fall_passes_its_history_and_fall_to_the_new_track():
    scene = Scene(falls=FallConfig(confirm_s=1.0, clear_s=1.0))
    scene.hold(2.0, standing())
    fall(scene)
    down = person(fallen(BASE, 88.0), 200, (320, 430))
    scene.hold(2.0, down)
    first = [e for e in scene.events if e.type == "fall_detected"][0]
    scene.hold(2.0)  # lost from view: longer than the tracker's max age
    scene.hold(1.0, down)  # found again where they lay, under a new track id
    assert scene.results[-1].state.fall
    scene.motion(1.0, lambda u: fallen(BASE, 88.0 * (1 - u)))
    scene.hold(1.5, standing())
    (cleared,) = [e for e in scene.events if e.type == "fall_cleared"]
    assert cleared.fields["fall_event_id"] == first.id and cleared.fields["reason"] == "recovered"


def test_falls_disabled_raise_nothing():
    scene = Scene(falls=FallConfig(enabled=False, confirm_s=0.0))
    scene.hold(2.0, standing())
    fall(scene)
    scene.hold(5.0, person(fallen(BASE, 88.0), 200, (320, 430)))
    assert not any(e.type.startswith("fall") for e in scene.events)
    assert scene.stage.acknowledge(scene.t, WALL0).events == ()


def test_empty_frames_keep_the_stage_going():
    stage = EventStage(PresenceConfig(), FallConfig(), [], EventIds("n", "b"))
    result = stage.process(Poses.empty().replace(track_ids=np.zeros(0, np.int64)), W, H, 0.0, WALL0)
    assert result.events == () and result.state.person_count == 0


# --- the rules built on real falls (falls.py) ---------------------------------------------


def detected(scene: Scene) -> list[Event]:
    return [e for e in scene.events if e.type == "fall_detected"]


def test_a_fall_seen_says_so_with_how_far_the_head_came_down():
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    fall(scene)
    scene.hold(1.5, person(fallen(BASE, 88.0), 200, (320, 430)))
    (event,) = detected(scene)
    assert event.fields["cause"] == "fall_seen" and 0.8 <= event.fields["drop"] <= 1.1
    assert 80 <= event.fields["torso_deg"] <= 95
    validate("events", messages.event_message(event, node_id="hall").payload)


def test_a_collapse_with_the_torso_still_upright_does_not_move_the_stance_down_with_it():
    """Knees giving way first (the torso stays vertical while the head drops), then the
    body tips over onto the floor: the stance is where the person stood, not where the
    collapse had got to, so the whole drop counts."""
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    scene.motion(0.4, lambda u: lerp(BASE, crumpled(BASE), u))
    scene.motion(0.4, lambda u: lerp(crumpled(BASE), fallen(BASE, 88.0), u))
    scene.hold(2.0, person(fallen(BASE, 88.0), 200, (320, 430)))
    (event,) = detected(scene)
    assert event.fields["drop"] >= 0.8


def test_a_body_lying_along_the_cameras_view_is_found_by_its_head_coming_down():
    """Seen from a camera high up, someone falling towards it ends head first and
    foreshortened: not level in the picture, but the head came far down, hips too."""
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    towards = BASE.copy()
    towards[:, 1] = -BASE[:, 1] * 0.45 - 0.1  # head nearest the camera, at the bottom
    scene.motion(0.6, lambda u: lerp(BASE, towards, u * u))
    scene.hold(2.0, person(towards, 200, (320, 430)))
    (event,) = detected(scene)
    assert event.fields["cause"] == "fall_seen" and event.fields["torso_deg"] > 120


def test_bending_over_with_the_head_below_the_hips_is_no_fall():
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    scene.motion(0.6, lambda u: bend(BASE, 150.0 * u))  # touching the toes
    scene.hold(8.0, person(bend(BASE, 150.0), 200, (320, 430)))
    assert not detected(scene)


def test_someone_found_down_after_the_descent_was_missed_raises_a_fall_after_down_s():
    scene = Scene(falls=FallConfig(confirm_s=1.0, down_s=5.0))
    scene.hold(2.0, standing())
    scene.hold(3.0)  # out of sight while going down (longer than window_s)
    down = person(fallen(BASE, 88.0), 200, (320, 430))
    scene.hold(4.5, down)
    assert not detected(scene)  # not yet
    scene.hold(1.0, down)
    (event,) = detected(scene)
    assert event.fields["cause"] == "down" and event.fields["confidence"] < 0.85


def test_lying_down_where_lying_is_normal_is_no_fall_even_after_down_s():
    bed = Zone("bed", "occupancy", True, "centre", np.array([[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]))
    scene = Scene(falls=FallConfig(confirm_s=1.0, down_s=5.0), zones=[bed])
    scene.hold(2.0, standing())
    scene.hold(3.0)
    scene.hold(10.0, person(fallen(BASE, 88.0), 200, (320, 430)))
    assert not detected(scene)


def test_a_fall_followed_by_the_person_vanishing_is_raised_as_lost_low():
    """Fallen behind the sofa: the descent was seen, then nobody is seen, and nobody
    stood up there; raised once the confirmation time has passed."""
    scene = Scene(falls=FallConfig(confirm_s=1.5))
    scene.hold(2.0, standing())
    fall(scene)
    scene.hold(0.3, person(fallen(BASE, 88.0), 200, (320, 430)))
    scene.hold(3.0)  # gone
    (event,) = detected(scene)
    assert event.fields["cause"] == "lost_low" and event.fields["confidence"] <= 0.7


def test_a_fall_in_stages_is_raised_once_the_person_is_on_the_floor():
    """To the knees, a pause there, then to the floor: the first confirmation ends with
    too few low frames, and starts again while the person is low."""
    scene = Scene(falls=FallConfig(confirm_s=1.0))
    scene.hold(2.0, standing())
    kneel = crumpled(BASE)
    scene.motion(0.4, lambda u: lerp(BASE, fallen(BASE, 70.0), u))  # tips, catches themself
    scene.motion(0.2, lambda u: lerp(fallen(BASE, 70.0), kneel, u))
    scene.hold(0.8, person(kneel, 200, (320, 430)))
    scene.motion(0.4, lambda u: lerp(kneel, fallen(BASE, 88.0), u))
    scene.hold(3.0, person(fallen(BASE, 88.0), 200, (320, 430)))
    assert len(detected(scene)) == 1
