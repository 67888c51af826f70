"""Record and replay ``poses`` messages: tune zones, presence and falls without a camera.

Recording format
----------------
JSON Lines (UTF-8): one ``poses`` message per line, exactly as published on
``<prefix>/<node>/poses`` (see ``edgepose/schemas/poses*.schema.json``), which
is what ``mosquitto_sub -t 'edgepose/<node>/poses' > FILE`` writes. Also read:

- ``mosquitto_sub -v`` output, ``<topic> <payload>`` per line (the topic is dropped);
- blank lines and lines starting with ``#`` (comments), skipped;
- every poses schema version edgepose has published: v1 (no track ids, so replay
  tracks the people itself) and v2 (v1 plus per-pose ``"id"``, the track id or
  null, and ``"box"``, ``[x0, y0, x1, y1]`` in 0..1; when every pose of a
  message has an id, those ids are used as they are).

Time comes from each message's ``ts`` (capture time, milliseconds): the
replay's monotonic clock is ``ts`` minus the first message's ``ts``, never
going backwards (a clock step in the recording holds time still instead).

`replay_lines` runs the same stages as the daemon, with a given config:
exclusion zones -> tracker (only for messages without ids) -> events
(presence per node and zone, falls) and the smoother, and yields the
``events`` messages it would publish, one JSON document per line
(`edgepose.messages.event_message`). `RecordingWriter` writes the recording
format from the messages the daemon publishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import numpy as np

from .config import Config
from .constants import NUM_PARTS, PART_NAMES, TOPIC_POSES
from .core import Message, Poses
from .errors import RecordingError
from .events import Event, EventIds, EventStage
from .messages import event_message
from .smoothing import Smoother
from .tracking import Tracker
from .zones import Zone, ZoneFilter

__all__ = [
    "RecordedFrame",
    "RecordingWriter",
    "ReplayPipeline",
    "parse_poses_message",
    "read_recording",
    "replay_file",
    "replay_lines",
]

#: Event ids in a replay: ``<node>-replay-<n>``.
REPLAY_BOOT = "replay"


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One recorded poses message, back in frame pixels."""

    node: str
    wall_time: float  # epoch seconds from "ts"
    seq: int
    width: int
    height: int
    poses: Poses  # track_ids set only when every pose had an id (v2)


def parse_poses_message(payload: dict[str, Any]) -> RecordedFrame:
    """A decoded poses message (v1 or v2) as frame-pixel Poses; ValueError naming what is wrong."""
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    version = payload.get("v")
    if version not in (1, 2):
        raise ValueError(f"not a poses message of a known version (v = {version!r})")
    try:
        width, height = int(payload["width"]), int(payload["height"])
        wall = _parse_ts(payload["ts"])
        node = str(payload["node"])
        seq = int(payload.get("frame", 0))
        pose_list = payload["poses"]
    except KeyError as exc:
        raise ValueError(f"missing {exc.args[0]!r}") from None
    if width < 1 or height < 1 or not isinstance(pose_list, list):
        raise ValueError("bad width, height or poses")
    n = len(pose_list)
    xy = np.zeros((n, NUM_PARTS, 2), np.float32)
    scores = np.zeros((n, NUM_PARTS), np.float32)
    pose_scores = np.zeros((n,), np.float32)
    ids: list[int | None] = []
    boxes: list[list[float] | None] = []
    for i, pose in enumerate(pose_list):
        try:
            keypoints = pose["keypoints"]
            pose_scores[i] = float(pose["score"])
            for j, name in enumerate(PART_NAMES):
                kp = keypoints[name]
                xy[i, j] = (float(kp["x"]) * width, float(kp["y"]) * height)
                scores[i, j] = float(kp["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"pose {i}: bad or missing keypoint data ({exc})") from None
        ids.append(pose.get("id"))
        boxes.append(pose.get("box"))
    track_ids = None
    if n and all(isinstance(t, int) and t >= 1 for t in ids):
        track_ids = np.asarray(ids, np.int64)
    box_array = None
    if n and all(isinstance(b, list) and len(b) == 4 for b in boxes):
        box_array = (np.asarray(boxes, np.float32) * np.array([width, height, width, height], np.float32))
    return RecordedFrame(node, wall, seq, width, height, Poses(xy, scores, pose_scores, box_array, track_ids))


def _parse_ts(ts: Any) -> float:
    if not isinstance(ts, str):
        raise ValueError(f"ts must be a string, got {ts!r}")
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"ts is not an ISO 8601 time: {ts!r}") from None


def read_recording(lines: Iterable[str | bytes]) -> Iterator[RecordedFrame]:
    """Recorded frames from the lines of a recording; RecordingError names the bad line."""
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                raise RecordingError(f"line {number}: not UTF-8 text") from None
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith("{"):  # mosquitto_sub -v: "<topic> <payload>"
            _, _, text = text.partition(" ")
            text = text.strip()
        try:
            yield parse_poses_message(json.loads(text))
        except json.JSONDecodeError as exc:
            raise RecordingError(f"line {number}: not JSON ({exc.msg})") from None
        except ValueError as exc:
            raise RecordingError(f"line {number}: {exc}") from None


class ReplayPipeline:
    """The daemon's stages after estimation, for recorded frames (see the module doc).

    The daemon wires the same objects in the same order: ZoneFilter.process ->
    Tracker.process -> EventStage.process (unsmoothed: falls need the true
    speed) and Smoother.process (what is published and drawn).
    """

    def __init__(self, config: Config, node_id: str | None = None):
        self.config = config
        zones = [Zone.from_config(z) for z in config.zones]
        self.exclusion = ZoneFilter(zones, config.tracking.min_part_score)
        self.tracker = Tracker(config.tracking)
        self.smoother = Smoother(config.smoothing, config.tracking.min_part_score)
        self.zones = zones
        self.node_id = node_id
        self.stage: EventStage | None = None
        self._t0: float | None = None
        self._mono = 0.0

    def process(self, frame: RecordedFrame) -> tuple[Poses, list[Event]]:
        """(smoothed tracked poses, events) for one recorded frame."""
        if self.stage is None:
            self.node_id = self.node_id or frame.node
            self.stage = EventStage(
                self.config.presence, self.config.falls, self.zones, EventIds(self.node_id, REPLAY_BOOT)
            )
        if self._t0 is None:
            self._t0 = frame.wall_time
        self._mono = max(self._mono, frame.wall_time - self._t0)
        now = self._mono
        poses = self.exclusion.process(frame.poses, frame.width, frame.height)
        if poses.track_ids is None or len(poses) == 0:
            poses = self.tracker.process(poses.replace(track_ids=None), now)
        result = self.stage.process(poses, frame.width, frame.height, now, frame.wall_time)
        smoothed = self.smoother.process(poses, now, frame.width, frame.height)
        return smoothed, list(result.events)


def replay_lines(lines: Iterable[str | bytes], config: Config) -> Iterator[str]:
    """The events a node with `config` would publish for a recording, as JSON Lines.

    The CLI's ``edgepose replay FILE [--config C]`` is::

        for line in replay_lines(open(FILE, "rb"), load_config(C)):
            print(line)

    (RecordingError -> exit 65, naming the line.)
    """
    pipeline = ReplayPipeline(config)
    for frame in read_recording(lines):
        _, events = pipeline.process(frame)
        for event in events:
            yield event_message(event, node_id=pipeline.node_id or frame.node).payload.decode("utf-8")


def replay_file(path: str, config: Config, out: IO[str]) -> int:
    """``edgepose replay FILE``: the events of recording `path` ("-": standard input)
    as JSON Lines on `out`, flushed per event; returns how many. For the CLI::

        p = sub.add_parser("replay", help="events a config would raise on a recording of poses")
        p.add_argument("file"); p.add_argument("--config")
        ... return 0 after replay_file(args.file, load_config(args.config), sys.stdout)

    RecordingError (exit 65) for an unreadable file or a bad line, naming it.
    """
    import sys

    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from None
    count = 0
    try:
        for line in replay_lines(stream, config):
            out.write(line + "\n")
            out.flush()
            count += 1
    except OSError as exc:
        raise RecordingError(f"{path}: read failed: {exc.strerror or exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return count


class RecordingWriter:
    """Writes the recording format: every ``poses`` message's payload as one line.

    Give it every message the node publishes (``write`` ignores other topics);
    it flushes per line so a recording cut short by a power cut loses at most
    the last line. The daemon's MQTT sink would call it beside publishing
    (an option of ``run``, e.g. ``--record FILE``), on the sink's thread.
    """

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.lines = 0

    def write(self, message: Message) -> bool:
        if message.topic != TOPIC_POSES:
            return False
        payload = bytes(message.payload)
        if b"\n" in payload:  # compact JSON never has one; refuse rather than corrupt the file
            raise ValueError("a poses payload with a newline cannot be one line of a recording")
        self.stream.write(payload + b"\n")
        self.stream.flush()
        self.lines += 1
        return True
