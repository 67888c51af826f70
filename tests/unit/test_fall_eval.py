"""fall_eval.py and `edgepose eval-falls`: sets, camera pacing, scoring, on recordings built here."""

from __future__ import annotations

import json

import pytest

from edgepose.__main__ import main
from edgepose.config import load_config
from edgepose.core import Frame, FrameResult
from edgepose.errors import ExitCode, UsageError
from edgepose.fall_eval import camera_ticks, load_set, run_recording, summarise
from edgepose.messages import poses_message

from .synthetic import CANONICAL, fallen, lerp, person, poses_of

BASE = CANONICAL.xy
W, H = 640, 480


def recording(path, shots, fps=30.0):
    """Write a recording of `shots` (each a list of (xy, scores) people) at `fps`."""
    import numpy as np

    lines = []
    for n, people in enumerate(shots):
        frame = Frame(np.zeros((H, W, 3), np.uint8), n, 1.7e9 + n / fps, n / fps)
        lines.append(poses_message(FrameResult(frame, poses_of(*people), 0.0, "test"), node_id="t").payload.decode())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def falling(seconds_standing=2.0, fps=30.0):
    stand = [[person(BASE, 200, (320, 430))]] * int(seconds_standing * fps)
    down = [[person(lerp(BASE, fallen(BASE, 88.0), (k / 15) ** 2), 200, (320, 430))] for k in range(1, 16)]
    return stand + down + [[person(fallen(BASE, 88.0), 200, (320, 430))]] * 10


def standing(seconds=4.0, fps=30.0):
    return [[person(BASE, 200, (320, 430))]] * int(seconds * fps)


def test_a_camera_takes_the_newest_frame_at_each_tick():
    # 30 fps source, 10 fps camera: every third frame; a slower source repeats frames.
    assert [i for i, _ in camera_ticks([k / 30 for k in range(10)], 10.0)] == [0, 3, 6, 9]
    assert [(i, round(t, 2)) for i, t in camera_ticks([0.0, 0.25, 0.5], 10.0)] == [
        (0, 0.0), (0, 0.1), (0, 0.2), (1, 0.3), (1, 0.4), (2, 0.5)]
    assert list(camera_ticks([0.0, 0.07], 0.0)) == [(0, 0.0), (1, 0.07)]  # as recorded


def test_a_folder_set_takes_its_labels_from_the_folder_names(tmp_path):
    recording(tmp_path / "set" / "fall" / "a.jsonl", falling())
    recording(tmp_path / "set" / "no_fall" / "b.jsonl", standing())
    (tmp_path / "set" / "notes.txt").write_text("ignored")
    clips = load_set(tmp_path / "set")
    assert [(c.path.name, c.label, c.kind) for c in clips] == [("a.jsonl", "fall", "recording"),
                                                               ("b.jsonl", "adl", "recording")]


@pytest.mark.parametrize(("entry", "message"), [
    ({"path": "x.jsonl", "label": "maybe"}, "'label' must be one of"),
    ({"path": "x.jsonl", "label": "fall", "fall_at_s": -1}, "'fall_at_s' must be a number"),
    ({"path": "../x.jsonl", "label": "fall"}, "leaves the set's folder"),
    ({"path": "x.txt", "label": "fall"}, "neither a video nor"),
    ({"label": "fall"}, "needs a 'path'"),
])
def test_a_bad_manifest_is_a_usage_error_naming_the_clip(tmp_path, entry, message):
    (tmp_path / "clips.json").write_text(json.dumps({"clips": [entry]}))
    with pytest.raises(UsageError, match=message):
        load_set(tmp_path)


def test_recordings_are_scored_with_the_last_pose_held(tmp_path):
    """The clip ends half a second after the fall: with the hold the confirmation runs out
    and the fall is raised, timed from the labelled fall; the standing clip raises nothing."""
    fall = recording(tmp_path / "fall" / "a.jsonl", falling())
    calm = recording(tmp_path / "adl" / "b.jsonl", standing())
    (tmp_path / "clips.json").write_text(json.dumps({"clips": [
        {"path": "fall/a.jsonl", "label": "fall", "fall_at_s": 2.5},
        {"path": "adl/b.jsonl", "label": "adl"}]}))
    config = load_config(None)
    clips = load_set(tmp_path)
    held = [run_recording(c, config, fps=10.0, hold_s=5.0) for c in clips]
    assert held[0].raised and not held[1].raised and held[0].reason == "fall_seen"
    assert 1.0 < held[0].delay_s < 3.0 and held[0].after_end_s > 0
    unheld = run_recording(clips[0], config, fps=10.0, hold_s=0.0)
    assert not unheld.raised  # the clip stops before the confirmation does
    s = summarise(held)
    assert (s["falls_raised"], s["fall_clips"], s["false_alarms"], s["adl_clips"]) == (1, 1, 0, 1)
    assert s["delay_from_labelled_fall_s"]["clips"] == 1
    del fall, calm


def test_eval_falls_prints_a_table_and_writes_json(tmp_path, capsys):
    recording(tmp_path / "set" / "fall" / "a.jsonl", falling())
    recording(tmp_path / "set" / "adl" / "b.jsonl", standing())
    out = tmp_path / "result.json"
    assert main(["eval-falls", str(tmp_path / "set"), "--json", str(out), "--set", "falls.confirm_s=1.5"]) == 0
    text = capsys.readouterr().out
    assert "falls raised:  1 of 1 (100.0%)" in text and "false alarms:  0 of 1" in text
    data = json.loads(out.read_text())
    assert data["summary"]["fall_recall"] == 1.0 and len(data["clips"]) == 2
    assert main(["eval-falls", str(tmp_path / "set"), "--json-summary"]) == 0
    assert json.loads(capsys.readouterr().out)["false_alarm_rate"] == 0.0


def test_eval_falls_refuses_a_bad_override_naming_it(tmp_path, capsys):
    recording(tmp_path / "set" / "fall" / "a.jsonl", falling())
    assert main(["eval-falls", str(tmp_path / "set"), "--set", "falls.confirm_s=-1"]) == ExitCode.USAGE
    assert "--set falls.confirm_s" in capsys.readouterr().err
    assert main(["eval-falls", str(tmp_path / "nowhere")]) == ExitCode.USAGE


def test_a_video_runs_through_the_daemons_pipeline_paced_like_a_camera(tmp_path):
    """A 25 fps clip of a still photo of one person, taken at 10 fps and held 1 s: the frames
    the camera would deliver, the model run on them (the motion gate skips still ones), the
    count of the person found."""
    import av
    import numpy as np

    from edgepose.errors import EdgePoseError
    from edgepose.estimators import open_estimator
    from edgepose.fall_eval import Clip, run_video
    from edgepose.images import read_rgb
    from edgepose.sources import demo_dir

    photo = read_rgb(demo_dir() / "000000000785.jpg")[:416, :624]  # even sides for the encoder
    path = tmp_path / "still.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = photo.shape[1], photo.shape[0], "yuv420p"
        for _ in range(50):  # 2 s
            container.mux(stream.encode(av.VideoFrame.from_ndarray(photo, format="rgb24")))
        container.mux(stream.encode(None))
    config = load_config(None)
    try:
        estimator = open_estimator(config.model, config.decode)
    except EdgePoseError as exc:  # no TF Lite runtime here
        pytest.skip(str(exc))
    result = run_video(Clip(path, "adl", people=1), config, estimator, fps=10.0, hold_s=1.0)
    estimator.close()
    assert result.frames == 20 + 10 and 1.9 <= result.duration_s <= 2.0
    assert 0 < result.model_frames <= result.frames and not result.raised
    assert result.count_right == result.model_frames and result.debounced_max == 1
    assert np.isclose(result.as_dict()["duration_s"], result.duration_s, atol=0.01)
