"""statefile.py: what a node remembers across restarts, written atomically off the frame path."""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from edgepose.mqtt.discovery import device_info
from edgepose.config import Config, load_config
from edgepose.constants import NUM_PARTS
from edgepose.core import Frame, FrameResult, Poses
from edgepose.events import PERSON_ENTERED
from edgepose.scene import scene_stages
from edgepose.statefile import VERSION, StateFile


def test_what_is_put_is_there_after_a_restart(tmp_path):
    path = tmp_path / "state" / "edgepose-state.json"
    memory = StateFile(path)
    assert memory.get("presence") is None
    memory.put("presence", {"people": [{"id": 3, "zones": ["bed"]}], "last_id": 3})
    memory.put("discovery", [{"topic": "t", "payload": {"components": {}}}])
    memory.close()
    assert json.loads(path.read_text())["v"] == VERSION
    again = StateFile(path)
    assert again.get("presence") == {"people": [{"id": 3, "zones": ["bed"]}], "last_id": 3}
    assert again.get("discovery")[0]["topic"] == "t"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left behind"


def test_the_same_value_is_not_written_again(tmp_path):
    memory = StateFile(tmp_path / "s.json")
    memory.put("presence", {"people": []})
    assert memory.flush()
    memory.put("presence", {"people": []})
    assert memory.flush()
    memory.close()
    assert memory.writes == 1


def test_a_damaged_or_foreign_file_is_an_empty_memory(tmp_path, caplog):
    for text in ("{not json", '{"v": 99, "presence": {}}', "[1, 2]", "\udcff"):
        path = tmp_path / "s.json"
        path.write_text(text, errors="surrogateescape")
        with caplog.at_level(logging.WARNING, logger="edgepose.statefile"):
            assert StateFile(path).get("presence") is None
        assert "starting with no memory" in caplog.text
        caplog.clear()


def test_an_unwritable_place_is_logged_once_and_never_raises(tmp_path, caplog):
    (tmp_path / "file").write_text("not a folder")
    memory = StateFile(tmp_path / "file" / "s.json")
    with caplog.at_level(logging.WARNING, logger="edgepose.statefile"):
        for n in range(3):
            memory.put("presence", {"n": n})
            assert memory.flush()
        memory.close()
    assert caplog.text.count("cannot write it") == 1 and memory.writes == 0
    assert memory.get("presence") == {"n": 2}, "still remembered for this run"


def test_no_path_remembers_within_the_run_only(tmp_path):
    memory = StateFile(None)
    memory.put("presence", {"n": 1})
    assert memory.get("presence") == {"n": 1}
    memory.close()


def test_device_info_reads_the_pi_device_tree(tmp_path):
    tree = tmp_path / "device-tree"
    tree.mkdir()
    (tree / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    (tree / "serial-number").write_bytes(b"f00dcafe12345678\x00")
    config = load_config(None, {"node.configuration_url": "https://hall.lan/"})
    assert device_info(config, tree) == {"hw_version": "Raspberry Pi 5 Model B Rev 1.0",
                                         "serial_number": "f00dcafe12345678",
                                         "configuration_url": "https://hall.lan/"}
    assert device_info(load_config(None), tmp_path / "none") == {}


def test_who_entered_is_on_disk_before_the_event_leaves_the_stages(tmp_path, monkeypatch):
    """A crash just after a person_entered must not make the next start announce that
    person again: the events stage hands the event on only once the state file holds
    them, even on a card that takes 0.2 s to sync."""
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.2)  # a slow SD card, not a wait for anything
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    path = tmp_path / "state.json"
    memory = StateFile(path)
    stages = scene_stages(Config(), "node", "boot", memory=memory)
    # A standing person, 17 keypoints from head to feet.
    xy = np.stack([np.full(NUM_PARTS, 160.0), np.linspace(60, 200, NUM_PARTS)], axis=1).astype(np.float32)
    poses = Poses(xy[None], np.full((1, NUM_PARTS), 0.9, np.float32), np.array([0.9], np.float32))
    entered = []
    for i in range(30):
        t = i / 10
        frame = Frame(np.zeros((240, 320, 3), np.uint8), seq=i, captured_at=1000.0 + t, captured_mono=t)
        result = FrameResult(frame, poses, 1.0)
        for stage in stages:
            result = stage.process(result)
        entered = [e for e in result.events if e.type == PERSON_ENTERED]
        if entered:
            break
    assert entered, "the person was never counted"
    on_disk = json.loads(path.read_text(encoding="utf-8"))["presence"]
    assert [p["id"] for p in on_disk["people"]] == [entered[0].track_id]
    memory.close()
