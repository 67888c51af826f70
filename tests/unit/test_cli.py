"""`edgepose detect / eval / bench` through main(), on the bundled demo photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from edgepose.__main__ import main
from edgepose.constants import PART_NAMES
from edgepose.errors import ExitCode
from edgepose.estimators import DEFAULT_MODEL

DEMO = Path(__file__).resolve().parents[2] / "edgepose" / "demo"


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """main() configures the root logger on pytest's captured stderr; undo it so a
    later log line from another thread does not write to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
SKIER = DEMO / "000000000785.jpg"  # one person, 640x425


def test_detect_prints_poses_in_original_image_pixels(capsys):
    assert main(["detect", str(SKIER), "--model", "posenet-mnv1-075"]) == ExitCode.OK
    [result] = json.loads(capsys.readouterr().out)  # always an array, even for one image
    assert (result["image"], result["width"], result["height"]) == (SKIER.name, 640, 425)
    assert len(result["poses"]) >= 1
    person = result["poses"][0]
    assert [k["part"] for k in person["keypoints"]] == list(PART_NAMES)
    nose = person["keypoints"][0]
    # The skier's nose is near (367, 81) in COCO's ground truth: original pixels, not model input.
    assert abs(nose["x"] - 367) < 12 and abs(nose["y"] - 81) < 12 and nose["score"] > 0.5
    assert all(0.0 <= k["score"] <= 1.0 for k in person["keypoints"])


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_detect_runs_every_stride_and_precision(capsys, stride):
    for precision in ("--quantized", "--no-quantized"):
        assert main(["detect", str(SKIER), "--model", "posenet-mnv1-075", "--stride", str(stride), precision,
                     "--input-size", "257x193"]) == ExitCode.OK
        [result] = json.loads(capsys.readouterr().out)
        assert result["width"] == 640


def test_detect_keeps_going_past_unreadable_files_and_fails_at_the_end(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8not a jpeg")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    out = tmp_path / "poses.json"
    code = main(["detect", str(broken), str(SKIER), str(text), str(tmp_path / "missing.jpg"),
                 "--json", str(out), "--overlay", str(tmp_path / "overlays")])
    assert code == ExitCode.FAILURE
    err = capsys.readouterr().err
    assert err.count("cannot read image") == 3 and "broken.jpg" in err and "missing.jpg" in err
    results = json.loads(out.read_text())
    assert [r["image"] for r in results] == [SKIER.name]
    overlay = tmp_path / "overlays" / "000000000785_overlay.jpg"
    with Image.open(overlay) as image:
        assert image.size == (640, 425)


def test_detect_seed_cleanup_single_person_gives_at_most_one_pose(capsys):
    assert main(["detect", str(DEMO / "000000000790.jpg"), "--cleanup", "seed-single"]) == ExitCode.OK
    [result] = json.loads(capsys.readouterr().out)
    assert len(result["poses"]) <= 1
    assert all(k["score"] == 0 or k["score"] >= 0.5 for k in result["poses"][0]["keypoints"])


def test_a_missing_model_file_on_the_command_line_is_a_usage_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope.tflite"
    assert main(["detect", str(SKIER), "--model", str(missing)]) == ExitCode.USAGE
    assert f"--model: model.path: {missing} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("typo", ["movenet-ligthning", "posenet"])
def test_a_mistyped_model_name_gets_did_you_mean_and_exit_2(typo, capsys):
    """Not "model.path: movenet-ligthning does not exist" with exit 78: a value that names no
    model and no file, and does not look like a path, is a name."""
    assert main(["detect", str(SKIER), "--model", typo]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"edgepose: --model: model.name: ") and "did you mean" in err, err
    assert "model.path" not in err


def test_a_model_file_in_the_working_directory_is_taken_as_a_file(tmp_path, capsys, monkeypatch):
    """A bare file name is a path when the file is there (here a copy of the default model)."""
    import shutil

    from edgepose.estimators import models_dir

    shutil.copy(models_dir() / "posenet_mnv1_075_stride16_int8.tflite", tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    assert main(["detect", str(SKIER), "--model", "mine"]) == ExitCode.OK


def test_wrong_model_file_says_what_was_expected(tmp_path, capsys):
    not_a_model = tmp_path / "model.tflite"
    not_a_model.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert main(["detect", str(SKIER), "--model", str(not_a_model)]) == ExitCode.CONFIG
    assert "not a TF Lite model" in capsys.readouterr().err


def test_input_size_must_fit_the_stride(capsys):
    assert main(["detect", str(SKIER), "--model", "posenet-mnv1-075", "--input-size", "300x200"]) == ExitCode.USAGE
    assert "--input-size: model.input_size: 300x200 does not fit output stride 16" in capsys.readouterr().err


def test_bad_decoder_values_are_usage_errors_with_the_configs_bounds(capsys):
    assert main(["detect", str(SKIER), "--max-poses", "0"]) == ExitCode.USAGE
    assert "--max-poses: decode.max_poses: must be 1-20, got 0" in capsys.readouterr().err
    assert main(["detect", str(SKIER), "--cleanup", "tidy"]) == ExitCode.USAGE
    assert "--cleanup: decode.cleanup: must be one of" in capsys.readouterr().err


def test_model_flags_override_a_config_file(tmp_path, capsys):
    config = tmp_path / "edgepose.toml"
    config.write_text('[model]\nname = "posenet-mnv1-075"\nstride = 8\ninput_size = "257x193"\n'
                      '[decode]\nmax_poses = 1\n')
    assert main(["bench", "--config", str(config), "--stride", "32", "--runs", "1", "--warmup", "0",
                 "--json-summary"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["file"] == "posenet_mnv1_075_stride32_int8.tflite" and report["input_size"] == "257x193"


def test_a_bad_config_file_is_still_exit_78(tmp_path, capsys):
    config = tmp_path / "edgepose.toml"
    config.write_text("[decode]\nmax_poses = 0\n")
    assert main(["detect", str(SKIER), "--config", str(config)]) == ExitCode.CONFIG
    assert "decode.max_poses: must be 1-20, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("duration", ["0", "-5", "nan", "inf", "soon"])
def test_run_refuses_a_duration_that_is_not_a_positive_number_of_seconds(duration, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--duration", duration])
    assert exit_.value.code == ExitCode.USAGE
    assert "--duration" in capsys.readouterr().err


@pytest.mark.parametrize("runs", ["0", "-3", "x"])
def test_bench_refuses_runs_below_one(runs, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--runs", runs])
    assert exit_.value.code == ExitCode.USAGE
    assert "--runs" in capsys.readouterr().err


def test_models_lists_every_model_with_its_files(capsys):
    assert main(["models", "--json"]) == ExitCode.OK
    listing = json.loads(capsys.readouterr().out)
    models = {m["name"]: m for m in listing["models"]}
    assert set(models) == {"posenet-mnv1-075", "movenet-lightning", "movenet-thunder", "movenet-multipose",
                           "movenet-topdown-thunder", "movenet-topdown-lightning"}
    assert [m["name"] for m in listing["models"] if m["default"]] == [DEFAULT_MODEL]
    for model in models.values():
        assert model["licence"] == "Apache-2.0" and model["input"] and model["edgetpu"]
        assert set(model["files"]) == set(model["files_present"]) and model["files"]
    assert models["posenet-mnv1-075"]["precisions"] == ["float32", "int8"]
    assert models["movenet-multipose"]["precisions"] == ["float16", "int8"]
    assert "multiple of 32" in models["movenet-multipose"]["input"]
    assert main(["models"]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "movenet-thunder  (movenet)" in text and "movenet_thunder_int8.tflite" in text


@pytest.mark.parametrize("model", ["movenet-lightning", "movenet-thunder", "movenet-multipose"])
def test_detect_runs_each_movenet_model(model, capsys):
    assert main(["detect", str(SKIER), "--model", model]) == ExitCode.OK
    [result] = json.loads(capsys.readouterr().out)
    nose = result["poses"][0]["keypoints"][0]
    assert abs(nose["x"] - 367) < 12 and abs(nose["y"] - 81) < 12 and nose["score"] > 0.3


def test_a_flag_for_another_models_key_is_a_usage_error_naming_both(capsys):
    assert main(["detect", str(SKIER), "--model", "movenet-thunder", "--stride", "16"]) == ExitCode.USAGE
    assert ('--stride: model.stride: only PoseNet models have an output stride; model.name is '
            '"movenet-thunder"') in capsys.readouterr().err
    assert main(["detect", str(SKIER), "--model", "posenet-mnv1-075", "--multipose-long-side", "320"]) \
        == ExitCode.USAGE
    assert "--multipose-long-side: model.multipose_long_side: only movenet-multipose" in capsys.readouterr().err
    assert main(["detect", str(SKIER), "--model", "movenet-multipose", "--multipose-long-side", "300"]) \
        == ExitCode.USAGE
    assert "must be a multiple of 32, got 300" in capsys.readouterr().err


def test_a_key_for_another_model_in_the_file_is_exit_78(tmp_path, capsys):
    config = tmp_path / "edgepose.toml"
    config.write_text('[model]\nname = "movenet-lightning"\nstride = 8\n')
    assert main(["detect", str(SKIER), "--config", str(config)]) == ExitCode.CONFIG
    assert 'model.stride: only PoseNet models have an output stride; model.name is "movenet-lightning"' \
        in capsys.readouterr().err


def test_bench_times_the_still_passes_of_a_single_pose_model(capsys):
    assert main(["bench", "--model", "movenet-thunder", "--still-passes", "2", "--runs", "2", "--warmup", "0",
                 "--json-summary"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "movenet-thunder" and report["input_size"] == "256x256"
    assert {row["stage"] for row in report["stages"]} == {"preprocess", "invoke", "decode", "total"}


def test_eval_scores_its_own_results_and_writes_coco_results(tmp_path, capsys):
    """A tiny ground truth made from the skier: eval must run end to end and score it."""
    gt = {
        "images": [{"id": 785, "file_name": SKIER.name, "width": 640, "height": 425}],
        "annotations": [{
            "id": 1, "image_id": 785, "category_id": 1, "iscrowd": 0, "area": 27789.1,
            "bbox": [280.79, 44.73, 218.7, 346.68], "num_keypoints": 17,
            "keypoints": [367, 81, 2, 374, 73, 2, 360, 75, 2, 386, 78, 2, 356, 81, 2, 399, 108, 2,
                          358, 129, 2, 433, 142, 2, 341, 159, 2, 449, 165, 2, 309, 178, 2, 424, 203, 2,
                          393, 214, 2, 429, 294, 2, 367, 273, 2, 466, 362, 2, 396, 341, 2],
        }],
        "categories": [{"id": 1, "name": "person"}],
    }
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(gt))
    results = tmp_path / "results.json"
    assert main(["eval", "--gt", str(gt_file), "--images", str(DEMO), "--results", str(results),
                 "--json-summary"]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 1 and summary["AP50"] > 0.5
    written = json.loads(results.read_text())
    assert written and len(written[0]["keypoints"]) == 51 and written[0]["image_id"] == 785


def test_bench_model_only_reports_invoke_time(capsys):
    assert main(["bench", "--model-only", "--runs", "3", "--warmup", "1", "--json-summary"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["stages"][0]["stage"] == "invoke" and report["stages"][0]["p50_ms"] > 0
    assert report["peak_rss_mb"] > 0


def test_bench_pipeline_reports_each_stage(capsys):
    assert main(["bench", "--runs", "3", "--warmup", "1", "--json-summary"]) == ExitCode.OK
    stages = {row["stage"] for row in json.loads(capsys.readouterr().out)["stages"]}
    assert stages == {"preprocess", "invoke", "decode", "total"}


@pytest.mark.parametrize("content, problem", [
    (None, "No such file"),
    ("{not json", "not a JSON file"),
    ('{"images": [{"id": 1}]}', "not COCO keypoint annotations"),
    ('{"images": [{"id": 1, "file_name": 7}], "annotations": [], "categories": []}', "not COCO keypoint"),
    ('{"images": [], "annotations": [{"image_id": 1}], "categories": [{"id": 1}]}', "malformed annotations"),
])
def test_eval_names_a_bad_ground_truth_file_without_a_traceback(tmp_path, capsys, content, problem):
    gt_file = tmp_path / "gt.json"
    if content is not None:
        gt_file.write_text(content)
    assert main(["eval", "--gt", str(gt_file), "--images", str(DEMO)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"--gt {gt_file}" in err and problem in err and "Traceback" not in err


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_command_has_a_description_and_every_option_a_help_text():
    from edgepose.cli import build_parser

    parser = build_parser()
    assert all(action.help for action in parser._actions if action.option_strings)
    for name, sub in _subparsers(parser):
        assert sub.description, f"edgepose {name} --help has no description"
        missing = [a.option_strings or a.dest for a in sub._actions if not a.help]
        assert not missing, f"edgepose {name}: options without help: {missing}"


def test_forget_offers_only_the_options_that_apply_to_it(capsys):
    with pytest.raises(SystemExit):
        main(["forget", "--help"])
    out = capsys.readouterr().out
    assert "retained topics" in out and "Home Assistant device" in out
    assert "--config" in out and "--broker" in out and "--node-id" in out
    assert "--source" not in out and "--snapshot-dir" not in out
    with pytest.raises(SystemExit) as exit_:
        main(["forget", "--source", "demo"])
    assert exit_.value.code == ExitCode.USAGE


def test_bench_says_1_thread_and_1_run(capsys):
    assert main(["bench", "--runs", "1", "--warmup", "0", "--threads", "1"]) == ExitCode.OK
    header = capsys.readouterr().out.splitlines()[0]
    assert ", 1 thread, 1 run" in header and "threads" not in header and "runs" not in header
