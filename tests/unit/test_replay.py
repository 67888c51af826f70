"""replay.py: recordings of poses messages in, the events a node would publish out."""

from __future__ import annotations

import io
import json

import jsonschema
import numpy as np
import pytest

from edgepose import messages
from edgepose.config import load_config
from edgepose.core import Frame, FrameResult, Message
from edgepose.errors import ExitCode, RecordingError
from edgepose.replay import RecordingWriter, parse_poses_message, read_recording, replay_file, replay_lines

from .synthetic import CANONICAL, fallen, person, poses_of

W, H = 640, 480
FPS = 10.0
T0 = 1_714_564_800.0


def recording(frames, *, v2_ids=None) -> list[bytes]:
    """poses messages as published for frames of people; v2_ids: per frame, ids to add."""
    lines = []
    for k, people in enumerate(frames):
        poses = poses_of(*people)
        det = FrameResult(Frame(np.zeros((H, W, 3), np.uint8), k, T0 + k / FPS), poses, 10.0, "m")
        payload = messages.poses_message(det, node_id="hall").payload
        if v2_ids is not None:
            obj = json.loads(payload)
            obj["v"] = 2
            boxes = poses.bounding_boxes(0.3) / np.array([W, H, W, H])
            for pose, tid, box in zip(obj["poses"], v2_ids[k], boxes):
                pose["id"] = tid
                pose["box"] = [round(float(b), 4) for b in box]
            payload = json.dumps(obj).encode()
        lines.append(payload)
    return lines


def visit(seconds_in=3.0, seconds_out=4.0):
    here = person(CANONICAL.xy, 200, (320, 430))
    return [[here]] * int(seconds_in * FPS) + [[]] * int(seconds_out * FPS)


def events_of(lines, config=None) -> list[dict]:
    out = [json.loads(line) for line in replay_lines(lines, config or load_config(None))]
    schema = messages.load_schema("events")
    for obj in out:
        jsonschema.Draft202012Validator(schema).validate(obj)
    return out


def test_v1_recording_is_tracked_and_gives_presence_events_in_order():
    events = events_of(recording(visit()))
    assert [(e["type"], e["zone"], e["track_id"]) for e in events] == [
        ("person_entered", None, 1), ("person_left", None, 1),
    ]
    assert [e["id"] for e in events] == ["hall-replay-1", "hall-replay-2"]
    # Entered after presence.enter_s (0.5 s), left presence.hold_s (3 s) after the last sighting.
    assert events[0]["ts"] == "2024-05-01T12:00:00.500Z"
    assert events[1]["ts"] == "2024-05-01T12:00:06.000Z"


def test_v2_recording_keeps_its_track_ids():
    frames = visit()
    ids = [[42] * len(people) for people in frames]
    events = events_of(recording(frames, v2_ids=ids))
    assert [(e["type"], e["track_id"]) for e in events] == [("person_entered", 42), ("person_left", 42)]


def test_v2_with_null_ids_is_tracked_by_replay():
    frames = visit()
    ids = [[None] * len(people) for people in frames]
    events = events_of(recording(frames, v2_ids=ids))
    assert [e["track_id"] for e in events] == [1, 1]


def test_a_recorded_fall_is_replayed_with_the_given_config(tmp_path):
    here = [person(CANONICAL.xy, 200, (320, 430))]
    frames = [here] * 20
    frames += [[person(fallen(CANONICAL.xy, 88 * (k / 6) ** 2), 200, (320, 430))] for k in range(1, 7)]
    frames += [[person(fallen(CANONICAL.xy, 88), 200, (320, 430))]] * 40
    lines = recording(frames)
    assert "fall_detected" in [e["type"] for e in events_of(lines)]
    off = tmp_path / "off.toml"
    off.write_text("[falls]\nenabled = false\n")
    assert "fall_detected" not in [e["type"] for e in events_of(lines, load_config(off))]


def test_exclusion_zones_apply_to_replays(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[zones]]\nname = "tv"\nkind = "exclusion"\npoints = [[0.3, 0.5], [0.7, 0.5], [0.7, 1], [0.3, 1]]\n')
    assert events_of(recording(visit()), load_config(cfg)) == []


def test_mosquitto_sub_verbose_lines_comments_and_blank_lines_are_read():
    lines = recording(visit(1.0, 0.0))
    text = ["# recorded on the hall node", ""] + [f"edgepose/hall/poses {line.decode()}" for line in lines]
    frames = list(read_recording(text))
    assert len(frames) == len(lines)
    assert frames[3].wall_time == pytest.approx(T0 + 0.3, abs=1e-3)
    assert frames[0].poses.xy[0, 0] == pytest.approx(person(CANONICAL.xy, 200, (320, 430))[0][0], abs=0.1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{not json", "line 2: not JSON"),
        (b'{"v": 9}', "line 2: not a poses message of a known version"),
        (b'{"v": 1, "node": "n"}', "line 2: missing"),
        (b"\xff\xfe", "line 2: not UTF-8"),
    ],
)
def test_a_bad_line_is_named_and_exits_65(line, message):
    good = recording(visit(0.1, 0.0))[0]
    with pytest.raises(RecordingError, match=message) as err:
        list(read_recording([good, line]))
    assert err.value.exit_code == ExitCode.DATA == 65


def test_parse_rejects_a_pose_without_its_keypoints():
    obj = json.loads(recording(visit(0.1, 0.0))[0])
    del obj["poses"][0]["keypoints"]["nose"]
    with pytest.raises(ValueError, match="pose 0"):
        parse_poses_message(obj)


def test_writer_records_only_poses_one_per_line_and_replays_the_same():
    frames = visit()
    lines = recording(frames)
    stream = io.BytesIO()
    writer = RecordingWriter(stream)
    for payload in lines:
        assert writer.write(Message("poses", payload))
        assert not writer.write(Message("person_count", b"1", qos=1, retain=True))
    assert writer.lines == len(lines)
    recorded = stream.getvalue().splitlines()
    assert recorded == lines
    assert events_of(recorded) == events_of(lines)


def test_clock_steps_in_a_recording_do_not_break_replay():
    lines = recording(visit())
    obj = json.loads(lines[10])
    obj["ts"] = "2024-05-01T11:00:00.000Z"  # an NTP step back, mid-recording
    lines[10] = json.dumps(obj).encode()
    assert [e["type"] for e in events_of(lines)] == ["person_entered", "person_left"]


def test_replay_file_writes_event_lines_and_names_an_unreadable_file(tmp_path):
    path = tmp_path / "hall.jsonl"
    path.write_bytes(b"\n".join(recording(visit())) + b"\n")
    out = io.StringIO()
    assert replay_file(str(path), load_config(None), out) == 2
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()] == ["person_entered", "person_left"]
    with pytest.raises(RecordingError, match="missing.jsonl: cannot read"):
        replay_file(str(tmp_path / "missing.jsonl"), load_config(None), io.StringIO())
