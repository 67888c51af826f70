"""Where a frame's result goes, and the snapshot stage.

    mqtt.py       MqttSink: poses (PosesPolicy), events, person_count and state
    stats.py      StatsSink: the retained stats message on a timer (CPU temperature too)
    snapshots.py  SnapshotStage (a stage: its file name rides on the result), its policy and writer
    recording.py  Recorder: run --record, the published poses as a recording
    base.py       BaseSink: the optional parts of the Sink protocol (pipeline.py)

Everything here that runs on the stages' thread only decides and hands over:
MQTT publishing goes to the MQTT client's queues, snapshots and recordings to
threads of their own.
"""

from __future__ import annotations

from .base import BaseSink, Publish
from .mqtt import MqttSink, PosesPolicy
from .recording import Recorder
from .snapshots import SnapshotStage
from .stats import FIRST_STATS_S, StatsSink

__all__ = ["BaseSink", "FIRST_STATS_S", "MqttSink", "PosesPolicy", "Publish", "Recorder", "SnapshotStage",
           "StatsSink"]
