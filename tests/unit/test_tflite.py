"""The TF Lite adapter and PoseNet's file layouts, around a stand-in runtime (no Edge TPU
here) that reports shapes as the real one does, and Coral's real files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgepose.runtime import tflite
from edgepose.config import DecodeConfig, ModelConfig
from edgepose.core import Poses
from edgepose.errors import AcceleratorError, ExitCode, ModelError
from edgepose.estimators import model_file
from edgepose.estimators.posenet import estimator as posenet_estimator
from edgepose.estimators.posenet.estimator import open_posenet
from edgepose.estimators.posenet.outputs import PoseNetOutputs, input_lut

HEAT_Q = (0.0784313753247261, 128)


def _detail(index, name, shape, dtype=np.float32, quant=(0.0, 0)):
    shape = np.array(shape, np.int32)
    return {"index": index, "name": name, "shape": shape, "shape_signature": shape.copy(),
            "dtype": dtype, "quantization": quant}


class FakeInterpreter:
    """Just enough of the TF Lite Interpreter API, with the real runtime's shapes: a
    resizable input reports shape 1x1 and signature -1x-1 until it is resized."""

    outputs: list[dict] = []
    input_detail: dict = {}
    values: dict[int, np.ndarray] = {}
    created: list["FakeInterpreter"] = []

    def __init__(self, model_path, experimental_delegates=None, num_threads=None):
        self.model_path = model_path
        self.delegates = experimental_delegates
        self.num_threads = num_threads
        self._input = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.input_detail.items()}
        self._buffer = None
        self.invoked = 0
        FakeInterpreter.created.append(self)

    def get_input_details(self):
        return [self._input]

    def get_output_details(self):
        return self.outputs

    def resize_tensor_input(self, index, shape, strict=False):
        self._input["shape"] = np.array(shape, np.int32)

    def allocate_tensors(self):
        self._buffer = np.zeros(tuple(self._input["shape"]), self._input["dtype"])

    def tensor(self, index):
        return lambda: self._buffer

    def invoke(self):
        self.invoked += 1

    def get_tensor(self, index):
        return self.values[index]


def resizable_input(dtype=np.float32, quant=(0.0, 0)):
    detail = _detail(0, "image", [1, 1, 1, 3], dtype, quant)
    detail["shape_signature"] = np.array([1, -1, -1, 3], np.int32)
    return detail


def posenet(path, **model):
    return open_posenet(ModelConfig(path=str(path), **model), DecodeConfig())


@pytest.fixture()
def fake_runtime(monkeypatch, tmp_path):
    """Install the stand-in runtime; returns (model file, list of delegate load calls)."""
    calls: list[tuple] = []

    def load_delegate(library, options=None):
        calls.append((library, options))
        return f"delegate:{library}"

    monkeypatch.setattr(tflite, "import_runtime", lambda: (FakeInterpreter, load_delegate, "fake"))
    monkeypatch.setattr(tflite, "check_library", lambda name: None)
    monkeypatch.setattr(posenet_estimator, "check_library", lambda name: None)
    FakeInterpreter.created = []
    FakeInterpreter.input_detail = resizable_input()
    FakeInterpreter.outputs = [
        _detail(1, "heatmaps", [1, 3, 4, 17]),
        _detail(2, "offsets", [1, 3, 4, 34]),
        _detail(3, "displacement_fwd", [1, 3, 4, 32]),
        _detail(4, "displacement_bwd", [1, 3, 4, 32]),
    ]
    FakeInterpreter.values = {i: np.full((1, 3, 4, c), float(i), np.float32)
                              for i, c in [(1, 17), (2, 34), (3, 32), (4, 32)]}
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    return model, calls


def edgetpu_file(model_path: Path, name="x_edgetpu.tflite") -> Path:
    compiled = model_path.with_name(name)
    compiled.write_bytes(b"\x1c\x00\x00\x00TFL3edgetpu-custom-op")
    FakeInterpreter.input_detail = _detail(0, "image", [1, 33, 49, 3], np.uint8, (0.0078125, 128))
    return compiled


def test_runs_raw_outputs_in_any_order_identified_by_channels(fake_runtime):
    model_path, _ = fake_runtime
    FakeInterpreter.outputs = list(reversed(FakeInterpreter.outputs))
    out = posenet(model_path, stride=16, input_size=(49, 33)).run_model()
    assert isinstance(out, PoseNetOutputs)
    assert out.heatmaps.shape == (3, 4, 17) and out.heatmaps[0, 0, 0] == 1.0
    assert out.offsets[0, 0, 0] == 2.0
    assert out.displacements_fwd[0, 0, 0] == 3.0 and out.displacements_bwd[0, 0, 0] == 4.0
    assert out.output_stride == 16


def test_splits_coral_mid_offsets_into_forward_then_backward(fake_runtime):
    model_path, _ = fake_runtime
    q = lambda i, name, c, quant: _detail(i, name, [1, 3, 4, c], np.uint8, quant)
    FakeInterpreter.outputs = [q(1, "float_heatmaps", 17, HEAT_Q), q(2, "float_short_offsets", 34, HEAT_Q),
                               q(3, "float_mid_offsets", 64, (1.3875764608383179, 117))]
    mid = np.zeros((1, 3, 4, 64), np.uint8)
    mid[..., :32] = 118  # forward: one step above zero point
    mid[..., 32:] = 116  # backward: one step below
    FakeInterpreter.values = {1: np.full((1, 3, 4, 17), 128, np.uint8),
                              2: np.full((1, 3, 4, 34), 129, np.uint8), 3: mid}
    out = posenet(model_path, stride=16, input_size=(49, 33)).run_model()
    assert out.displacements_fwd.shape == out.displacements_bwd.shape == (3, 4, 32)
    np.testing.assert_allclose(out.displacements_fwd, 1.3875764608383179, rtol=1e-6)
    np.testing.assert_allclose(out.displacements_bwd, -1.3875764608383179, rtol=1e-6)
    np.testing.assert_allclose(out.heatmaps, 0.0)
    np.testing.assert_allclose(out.offsets, HEAT_Q[0], rtol=1e-6)


def test_rejects_outputs_that_are_not_posenet(fake_runtime):
    model_path, _ = fake_runtime
    FakeInterpreter.outputs = [_detail(1, "logits", [1, 1001])]
    with pytest.raises(ModelError, match="not a raw-output PoseNet"):
        posenet(model_path, input_size=(49, 33))


def test_reads_poses_from_coral_decoder_outputs(fake_runtime, monkeypatch):
    model_path, calls = fake_runtime
    model_path.write_bytes(b"\x1c\x00\x00\x00TFL3PosenetDecoderOp")
    FakeInterpreter.input_detail = _detail(0, "sub_2", [1, 481, 641, 3], np.uint8, (0.0078125, 128))
    FakeInterpreter.outputs = [_detail(5, "poses", [1, 10, 17, 2]), _detail(6, "poses:1", [1, 10, 17]),
                               _detail(7, "poses:2", [1, 10]), _detail(8, "poses:3", [])]
    keypoints = np.zeros((1, 10, 17, 2), np.float32)
    keypoints[0, 0, :, 0] = 100.0  # y
    keypoints[0, 0, :, 1] = 200.0  # x
    FakeInterpreter.values = {5: keypoints, 6: np.full((1, 10, 17), 0.9, np.float32),
                              7: np.full((1, 10), 0.8, np.float32), 8: np.array(2.0, np.float32)}
    estimator = posenet(model_path, stride=16)
    poses = estimator.run_model()
    assert isinstance(poses, Poses) and len(poses) == 2
    assert poses.xy[0, 0].tolist() == [200.0, 100.0]  # x first
    assert calls == [(posenet_estimator.POSENET_DECODER_LIBRARY, None)]
    assert estimator.info.input_size == (641, 481) and estimator.info.precision == "int8"


def test_edgetpu_loads_the_delegate_with_the_device_option(fake_runtime):
    model_path, calls = fake_runtime
    model = tflite.open_tflite(edgetpu_file(model_path), accelerator="edgetpu", device="usb:0")
    assert calls == [("libedgetpu.so.1", {"device": "usb:0"})]
    assert FakeInterpreter.created[-1].delegates == ["delegate:libedgetpu.so.1"]
    assert model.accelerator == "edgetpu" and model.input_size == (49, 33)


def test_edgetpu_file_keeps_its_compiled_size_and_refuses_another(fake_runtime):
    model_path, _ = fake_runtime
    with pytest.raises(ModelError, match="runs at its compiled input size 49x33, not 65x49"):
        tflite.open_tflite(edgetpu_file(model_path), accelerator="edgetpu", input_size=(65, 49))


def test_a_cpu_model_is_never_sent_to_the_edgetpu(fake_runtime):
    """The bug: "edgetpu" set the delegate label, skipped resizing, ran a 1x1 input on the CPU."""
    model_path, calls = fake_runtime
    with pytest.raises(ModelError, match="is a CPU model: the Edge TPU runs only files compiled"):
        tflite.open_tflite(model_path, accelerator="edgetpu", input_size=(49, 33))
    assert calls == []


def test_auto_with_a_coral_present_still_resizes_a_cpu_model(fake_runtime):
    """The bug: with a Coral present "auto" skipped resizing, so the node ran on a 1x1 input."""
    model_path, calls = fake_runtime
    estimator = posenet(model_path, accelerator="auto", input_size=(49, 33))
    assert estimator.info.input_size == (49, 33) and estimator.info.accelerator == "cpu"
    assert estimator.model.input_view().shape == (33, 49, 3)
    assert calls == []  # the delegate was not even loaded


def test_auto_runs_an_edgetpu_file_on_the_edgetpu(fake_runtime):
    model_path, calls = fake_runtime
    model = tflite.open_tflite(edgetpu_file(model_path), accelerator="auto")
    assert model.accelerator == "edgetpu" and calls == [("libedgetpu.so.1", {})]


def test_resizable_model_without_a_size_is_refused(fake_runtime):
    model_path, _ = fake_runtime
    with pytest.raises(ModelError, match="an input size must be given"):
        tflite.open_tflite(model_path)


def test_edgetpu_missing_library_names_it_and_what_to_install(fake_runtime, monkeypatch):
    model_path, _ = fake_runtime

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(tflite, "check_library", missing)
    with pytest.raises(AcceleratorError) as err:
        tflite.open_tflite(edgetpu_file(model_path), accelerator="edgetpu")
    assert "libedgetpu.so.1" in str(err.value) and "install" in str(err.value)
    assert err.value.exit_code == ExitCode.UNAVAILABLE


def test_edgetpu_without_device_names_the_device(fake_runtime, monkeypatch):
    model_path, _ = fake_runtime

    def no_device(library, options=None):
        raise ValueError("Failed to load delegate from libedgetpu.so.1")

    monkeypatch.setattr(tflite, "import_runtime", lambda: (FakeInterpreter, no_device, "fake"))
    with pytest.raises(AcceleratorError, match="no Edge TPU found at device 'pci:0'"):
        tflite.open_tflite(edgetpu_file(model_path), accelerator="edgetpu", device="pci:0")


def test_auto_without_a_coral_runs_a_cpu_model_on_the_cpu_quietly(fake_runtime, monkeypatch, caplog):
    model_path, _ = fake_runtime

    def no_device(library, options=None):
        raise ValueError("Failed to load delegate from libedgetpu.so.1")

    monkeypatch.setattr(tflite, "import_runtime", lambda: (FakeInterpreter, no_device, "fake"))
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        model = tflite.open_tflite(model_path, accelerator="auto", input_size=(49, 33))
    assert model.accelerator == "cpu"
    assert FakeInterpreter.created[-1].delegates is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_edgetpu_compiled_model_on_cpu_says_what_to_do(fake_runtime):
    model_path, _ = fake_runtime
    with pytest.raises(ModelError, match="compiled for the Edge TPU"):
        posenet(edgetpu_file(model_path), accelerator="cpu")


def test_resizes_a_resizable_model_and_checks_the_stride_fits(fake_runtime):
    model_path, _ = fake_runtime
    estimator = posenet(model_path, stride=16, input_size=(49, 33))
    assert estimator.info.input_size == (49, 33)
    assert estimator.model.input_view().shape == (33, 49, 3)
    with pytest.raises(ModelError, match="does not fit output stride 16"):
        posenet(model_path, stride=16, input_size=(50, 33))


def test_input_lut_maps_pixels_to_minus_one_one():
    float_lut = input_lut(np.float32, (0.0, 0))
    assert float_lut[0] == -1.0 and float_lut[255] == pytest.approx(1.0)
    coral_lut = input_lut(np.uint8, (0.0078125, 128))
    assert coral_lut.dtype == np.uint8 and coral_lut[0] == 0 and coral_lut[255] == 255
    int8_lut = input_lut(np.int8, (2 / 255, 0))
    assert int8_lut[0] == -128 and int8_lut[255] == 127


def test_named_model_missing_file_names_file_and_where_to_look(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEPOSE_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError) as err:
        open_posenet(ModelConfig(stride=8, quantized=True), DecodeConfig())
    assert "posenet_mnv1_075_stride8_int8.tflite" in str(err.value) and "EDGEPOSE_MODELS_DIR" in str(err.value)


def test_not_a_tflite_file_is_named(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_text("hello")
    with pytest.raises(ModelError, match="junk.tflite is not a TF Lite model"):
        posenet(junk)


# --- Coral's real files (../shared/models/coral-posenet) ------------------------

def _coral(coral_models: Path, name: str) -> str:
    return str(coral_models / name)


@pytest.mark.shared
def test_runs_corals_raw_cpu_model(coral_models):
    estimator = posenet(_coral(coral_models, "posenet_mobilenet_v1_075_481_641_quant.tflite"))
    assert estimator.info.input_size == (641, 481) and estimator.output_stride == 16
    out = estimator.run_model()
    assert out.heatmaps.shape == (31, 41, 17) and out.displacements_bwd.shape == (31, 41, 32)


@pytest.mark.shared
def test_corals_decoder_model_error_names_the_raw_model(coral_models):
    with pytest.raises(ModelError) as err:
        posenet(_coral(coral_models, "posenet_mobilenet_v1_075_481_641_quant_decoder.tflite"))
    assert "PosenetDecoderOp" in str(err.value)
    assert "posenet_mobilenet_v1_075_481_641_quant.tflite" in str(err.value)


@pytest.mark.shared
def test_corals_edgetpu_model_on_cpu_error_says_what_to_do(coral_models):
    with pytest.raises(ModelError, match="compiled for the Edge TPU"):
        posenet(_coral(coral_models, "posenet_mobilenet_v1_075_481_641_quant_decoder_edgetpu.tflite"))


def test_the_runtimes_info_banner_is_dropped_and_everything_else_reaches_stderr(capfd):
    """TF Lite's C++ code writes the XNNPACK banner to fd 2 itself; a real error written
    the same way, a line of another thread and an unterminated last line must all still show."""
    import os
    import threading

    with tflite.runtime_chatter_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: Failed to load delegate from libedgetpu.so.1\n")
        other = threading.Thread(target=os.write, args=(2, b"a log line of another thread\n"))
        other.start()
        other.join()
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nno newline at the end")
    os.write(2, b"\nafter\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err
    assert err == ("ERROR: Failed to load delegate from libedgetpu.so.1\n"
                   "a log line of another thread\nno newline at the end\nafter\n")


def test_no_command_prints_the_runtimes_info_banner(tmp_path):
    """The banner came on stderr of every command that opened a model."""
    import subprocess
    import sys

    from edgepose.sources import demo_dir

    photo = str(next(demo_dir().glob("*.jpg")))
    for args in (["detect", photo], ["detect", photo, "--model", "movenet-lightning"], ["bench", "--runs", "1"]):
        done = subprocess.run([sys.executable, "-m", "edgepose", *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "TensorFlow Lite" not in done.stderr and "XNNPACK" not in done.stderr, (args, done.stderr)


@pytest.mark.parametrize("name", ["posenet-mnv1-075", "movenet-lightning", "movenet-multipose", "movenet-topdown-thunder"])
def test_every_family_times_its_invoke_without_handing_out_its_runtime(name):
    """`bench --model-only` asks the estimator for timed invokes; the Estimator
    interface has no runtime object in it."""
    from edgepose.config import load_config
    from edgepose.estimators import Estimator, open_estimator

    assert "model" not in Estimator.__annotations__
    config = load_config(None, {"model.name": name})
    estimator = open_estimator(config.model, config.decode)
    try:
        samples = estimator.time_invoke(3, 1)
        assert len(samples) == 3 and all(ms > 0 for ms in samples)
    finally:
        estimator.close()


def test_the_top_down_model_is_labelled_with_both_of_its_models():
    """Logs, stats and poses messages say what runs: the people finder and the keypoint model."""
    from edgepose.config import load_config
    from edgepose.estimators import open_estimator

    config = load_config(None, {"model.name": "movenet-topdown-thunder"})
    estimator = open_estimator(config.model, config.decode)
    try:
        finder, keypoints = estimator.info.label.split(" + ")
        assert finder == estimator.detector_info.path.stem and finder.startswith("movenet_multipose")
        assert keypoints.startswith("movenet_thunder") and keypoints.endswith(" 256x256")
    finally:
        estimator.close()
