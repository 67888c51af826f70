"""`edgepose bench --e2e`: the real daemon on a short clip, publishing to a real
mosquitto (the fixture's, or one bench starts), timed by bench's own subscriber.

The clip is made here from the bundled photos (PyAV writes it); it is a test
input, not a figure: no timing thresholds, only that every figure is there and
that a file is processed to its end, every frame.
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from edgepose.__main__ import main
from edgepose.cli.e2e import SERIES_FIGURES, format_report, format_series
from edgepose.cli.e2e_daemon import daemon_config_text, dump_toml
from edgepose.errors import ExitCode
from edgepose.sources import demo_dir, list_images

from .conftest import Broker

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIP_SIZE = (320, 240)
FRAMES_PER_PHOTO = 4

#: Every key of the JSON summary (docs/benchmarks.md, "`edgepose bench --e2e`").
SUMMARY_KEYS = {
    "source", "model", "runtime", "precision", "threads", "accelerator", "max_fps", "broker",
    "broker_started", "daemon_exit_code", "frames", "frames_missing", "persons_mean", "fps",
    "latency_ms_p50", "latency_ms_p95", "latency_ms_max", "first_message_s", "cpu_pct",
    "cpu_pct_lifetime", "peak_rss_mb", "dropped_frames", "skipped_frames", "corrupt_frames",
    "mqtt_dropped", "stats_frames", "daemon_inference_ms_p50", "daemon_inference_ms_p95",
    "pipeline_frames", "pipeline_fps", "pipeline_ms_p50", "pipeline_ms_p95", "pipeline_stages_ms_p50", "fps_ratio",
    "latency_ratio", "load_1m_start", "load_1m_end", "cores", "pipeline_frames_before",
    "pipeline_ms_p50_before", "pipeline_ms_p50_after", "pipeline_drift",
}


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """main() configures the root logger on pytest's captured stderr; undo it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An MP4 of three demo photos, each held for a few frames; (path, frames in it as decoded)."""
    path = tmp_path_factory.mktemp("clip") / "people.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = *CLIP_SIZE, "yuv420p"
        for photo in list_images(demo_dir())[:3]:
            rgb = np.asarray(Image.open(photo).convert("RGB").resize(CLIP_SIZE))
            for _ in range(FRAMES_PER_PHOTO):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    with av.open(str(path)) as back:
        frames = sum(1 for _ in back.decode(video=0))
    assert frames == 3 * FRAMES_PER_PHOTO
    return path, frames


def _summary(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # one JSON line, nothing else on stdout
    return json.loads(out[0])


def _bench(capsys, path: Path, *flags: str) -> tuple[int, dict]:
    """bench --e2e on `path` with `flags`, as one JSON line: (exit code, what it printed)."""
    code = main(["bench", "--e2e", str(path), *flags, "--json-summary"])
    return code, _summary(capsys)


def _check(summary: dict, frames: int) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["daemon_exit_code"] == 0
    # Every frame, to the end (a shortfall: see mqtt_dropped, dropped_frames, frames_missing).
    assert summary["frames"] == frames and summary["frames_missing"] == 0, summary
    assert summary["pipeline_frames"] == frames  # the same frames, estimate alone
    assert summary["pipeline_frames_before"] == frames  # and once before the daemon (a short clip)
    assert summary["pipeline_ms_p50_before"] > 0 and summary["pipeline_ms_p50_after"] > 0
    assert summary["pipeline_drift"] >= 0
    assert summary["fps"] > 0 and summary["pipeline_fps"] > 0
    assert summary["latency_ms_p50"] > 0 and summary["latency_ms_p95"] >= summary["latency_ms_p50"]
    assert summary["pipeline_ms_p50"] > 0
    assert {"preprocess", "invoke", "decode"} <= set(summary["pipeline_stages_ms_p50"])
    assert summary["first_message_s"] > 0 and summary["peak_rss_mb"] > 0
    assert summary["fps_ratio"] > 0 and summary["latency_ratio"] > 0
    assert summary["dropped_frames"] == 0 and summary["corrupt_frames"] == 0  # a file: none dropped
    assert summary["model"] and summary["runtime"] and summary["threads"] >= 1


def test_bench_e2e_against_a_given_broker(clip, mosquitto_broker: Broker, capsys):
    path, frames = clip
    code, summary = _bench(capsys, path, "--broker", mosquitto_broker.address, "--threads", "1")
    assert code == ExitCode.OK
    _check(summary, frames)
    assert summary["threads"] == 1  # model flags reach the daemon
    assert summary["broker"] == mosquitto_broker.address
    assert summary["broker_started"] is False


def test_bench_e2e_starts_and_stops_its_own_broker(clip, capsys):
    path, frames = clip
    code, summary = _bench(capsys, path)
    assert code == ExitCode.OK
    _check(summary, frames)
    assert summary["broker_started"] is True
    text = format_report(summary)  # the human table shows the same figures side by side
    assert "end to end" in text and "pipeline only" in text and str(summary["fps"]) in text


def test_bench_e2e_fails_clearly_when_the_daemon_fails(clip, monkeypatch, capsys):
    # The daemon (not bench) refuses an unknown fault switch at start: exit 78.
    monkeypatch.setenv("EDGEPOSE_FAULT", "no-such-fault")
    code = main(["bench", "--e2e", str(clip[0]), "--json-summary"])
    captured = capsys.readouterr()
    assert code == ExitCode.FAILURE
    assert captured.out == ""
    assert "the daemon exited with code 78" in captured.err and "unknown fault" in captured.err


def test_bench_e2e_refuses_a_source_it_cannot_read(tmp_path, capsys):
    code = main(["bench", "--e2e", str(tmp_path / "missing.mp4")])
    assert code == ExitCode.UNAVAILABLE
    assert "missing.mp4" in capsys.readouterr().err


def test_the_daemon_gets_the_users_config_with_benchs_keys_over_it(tmp_path):
    user = tmp_path / "user.toml"
    user.write_text((REPO_ROOT / "config" / "edgepose.toml").read_text() + """
[[zones]]
name = "bed"
kind = "occupancy"
points = [[0.05, 0.55], [0.45, 0.55], [0.45, 0.95]]
""")
    text = daemon_config_text(str(user), {"source.uri": "clip.mp4", "mqtt.port": 1884, "model.threads": None})
    doc = tomllib.loads(text)
    original = tomllib.loads(user.read_text())
    assert doc["source"]["uri"] == "clip.mp4" and doc["mqtt"]["port"] == 1884
    assert doc["zones"] == original["zones"] and doc["model"] == original["model"]  # None: left as it was
    odd = {"a": {"key with space": "tab\t\x7f \"q\" é", "n": [1.5, -2, True], "b": {"c": []}},
           "t": [{"x": 1, "in": {"y": "z"}}, {"x": 2}]}
    assert tomllib.loads(dump_toml(odd)) == odd


def test_bench_e2e_takes_no_image_options(clip, capsys):
    assert main(["bench", "--e2e", str(clip[0]), "--model-only"]) == ExitCode.USAGE
    assert "--e2e runs the whole daemon" in capsys.readouterr().err


def test_bench_e2e_repeat_reports_each_run_and_the_median_and_range(clip, mosquitto_broker: Broker, capsys):
    path, frames = clip
    code, series = _bench(capsys, path, "--broker", mosquitto_broker.address, "--repeat", "2")
    assert code == ExitCode.OK
    assert series["runs"] == 2 and len(series["each"]) == 2
    for run in series["each"]:
        _check(run, frames)
    for key in SERIES_FIGURES:
        values = [run[key] for run in series["each"] if run[key] is not None]
        if not values:  # e.g. cpu_pct: a 12-frame clip is over before /proc is sampled twice
            assert series["median"][key] is None
            continue
        assert series["min"][key] == min(values) and series["max"][key] == max(values)
        assert series["min"][key] <= series["median"][key] <= series["max"][key]
    text = format_series(series)
    assert "over 2 runs" in text and all(key in text for key in SERIES_FIGURES)


@pytest.mark.parametrize("repeat", ["0", "101", "-1"])
def test_bench_e2e_refuses_a_repeat_out_of_range(clip, repeat, capsys):
    assert main(["bench", "--e2e", str(clip[0]), "--repeat", repeat]) == ExitCode.USAGE
    assert "--repeat" in capsys.readouterr().err
