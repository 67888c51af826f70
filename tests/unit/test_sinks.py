"""sinks.py and the events stage's adapter: what goes out, and when."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime

import jsonschema
import numpy as np

from edgepose import messages
from edgepose.config import FallConfig, PresenceConfig
from edgepose.core import Frame, FrameResult, Poses
from edgepose.events import EventIds, EventStage
from edgepose.sinks import PosesPolicy
from edgepose.scene import ACK_FALL, EventsStage
from edgepose.sinks import FIRST_STATS_S, MqttSink, StatsSink


def result(seq: int, t: float) -> FrameResult:
    frame = Frame(np.zeros((48, 64, 3), np.uint8), seq=seq, captured_at=1.7e9 + t, captured_mono=t)
    return FrameResult(frame, Poses.empty().replace(track_ids=np.zeros(0, np.int64)), 1.0, "m")


def test_no_count_or_state_before_the_events_stage_has_decided():
    """A cold start leaves the retained count and state alone until enter_s has passed."""
    sent = []
    sink = MqttSink(lambda m: sent.append(m) or True, node_id="n", poses_policy=PosesPolicy("off"), expiry_s=None)
    events = EventsStage(EventStage(PresenceConfig(enter_s=0.5), FallConfig(), [], EventIds("n", "b")))
    for k in range(5):
        sink.consume(events.process(result(k, k / 10)))
    assert sent == []
    sink.consume(events.process(result(5, 0.5)))
    assert [m.topic for m in sent] == ["state", "person_count"] and sent[1].payload == b"0"


def test_the_first_stats_come_soon_after_the_start_then_every_interval():
    sent = []
    figures = {k: 0 for k in messages.STATS_FIELDS} | {"accelerator": "cpu", "runtime": "r", "precision": "int8",
                                                      "threads": 1, "model": "m", "source_state": "ok",
                                                      "source_error": None, "mqtt_connected": True}
    for key in ("fps", "inference_ms_p50", "inference_ms_p95", "frames", "uptime_s", "cpu_temp_c", "started_at"):
        figures.pop(key)
    t0 = time.monotonic()
    sink = StatsSink(lambda m: sent.append(m) or True, interval_s=60.0, figures=lambda: figures, started_at=t0)
    sink.tick(t0)
    sink.tick(t0 + FIRST_STATS_S - 0.1)
    assert sent == []
    sink.tick(t0 + FIRST_STATS_S)
    sink.tick(t0 + FIRST_STATS_S + 30)
    assert len(sent) == 1
    sink.tick(t0 + FIRST_STATS_S + 60)
    assert len(sent) == 2
    started = json.loads(sent[0].payload)["started_at"]
    assert abs(datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() - time.time()) < 60


def test_ack_fall_with_no_fall_on_is_logged_counted_and_answered(caplog):
    answers = []
    stage = EventsStage(EventStage(PresenceConfig(), FallConfig(), [], EventIds("n", "b")),
                        answer=lambda command, cleared: answers.append((command, cleared)))
    with caplog.at_level(logging.INFO, logger="edgepose.scene"):
        assert stage.command(ACK_FALL, 1.0, 1.7e9)
        assert stage.command(ACK_FALL, 2.0, 1.7e9 + 1)
    assert stage.acks_without_fall == 2 and answers == [(ACK_FALL, 0), (ACK_FALL, 0)]
    assert caplog.text.count("ack_fall: no fall is on; nothing to acknowledge") == 2
    reply = messages.reply_message(ACK_FALL, "no_fall", now=1.7e9, falls_cleared=0)
    assert (reply.topic, reply.qos, reply.retain) == ("reply", 1, False)
    jsonschema.validate(json.loads(reply.payload), messages.load_schema("reply"))


def test_who_is_present_is_handed_to_the_state_file_on_each_presence_event_and_at_close():
    kept = []
    stage = EventsStage(EventStage(PresenceConfig(enter_s=0.0), FallConfig(), [], EventIds("n", "b")),
                        remember=kept.append)
    frame = result(0, 0.0)
    person = frame.replace(poses=Poses(np.full((1, 17, 2), 20.0, np.float32), np.full((1, 17), 0.9, np.float32),
                                       np.full(1, 0.9, np.float32), track_ids=np.array([7])))
    stage.process(person)
    stage.process(result(1, 0.1))  # nobody in view, within the hold: nothing new to keep
    assert kept == [{"people": [{"id": 7, "zones": []}], "last_id": 7}]
    stage.close()
    assert len(kept) == 2
