"""One test per config rule; each config is written inline to tmp_path."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from edgepose import config as config_module
from edgepose.config import loader, validate
from edgepose.config import (
    Config,
    DecodeConfig,
    ModelConfig,
    MqttConfig,
    load_config,
    redacted,
)
from edgepose.constants import DEFAULT_MIN_PART_SCORE, DEFAULT_TOPIC_PREFIX
from edgepose.errors import ConfigError, ExitCode
from edgepose.estimators import DEFAULT_MODEL
from edgepose.estimators.posenet.constants import (
    DEFAULT_MAX_POSES,
    DEFAULT_MIN_POSE_SCORE,
    DEFAULT_NMS_RADIUS,
    DEFAULT_STRIDE,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55"


#: The PoseNet tests name their model: PoseNet-only keys are refused for the default model.
POSENET = '[model]\nname = "posenet-mnv1-075"\n'


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No systemd directories, and a working directory of our own."""
    for name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "MQTT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "edgepose.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, overrides: dict[str, object] | None = None) -> Config:
    return load_config(write(tmp_path, text), overrides)


def problems(tmp_path: Path, text: str, overrides: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, overrides)
    return caught.value.problems


def only_problem(tmp_path: Path, text: str, overrides: dict[str, object] | None = None) -> str:
    found = problems(tmp_path, text, overrides)
    assert len(found) == 1, found
    return found[0]


def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


# --- defaults and shipped files -------------------------------------------------------


def test_defaults_alone_are_valid():
    config = load_config(None)
    assert config.model.input_size is None  # auto: the family's default for a resizable file
    assert config.mqtt.password is None


def test_empty_config_reads_the_pi_camera_not_the_demo_photos(tmp_path):
    """The bug: an empty file, or one without [source], published stock photos from a Pi."""
    assert load(tmp_path, "").source.uri == "picamera2"
    assert load(tmp_path, "[mqtt]\nhost = \"broker\"\n").source.uri == "picamera2"


def test_model_name_picks_the_model_and_the_old_path_spelling_still_works(tmp_path):
    assert load(tmp_path, "").model.name == DEFAULT_MODEL
    old = load(tmp_path, '[model]\npath = "posenet-mnv1-075"\n').model
    assert (old.name, old.path) == ("posenet-mnv1-075", "")
    assert "model.name: must be one of" in only_problem(tmp_path, '[model]\nname = "posenet"\n')


def test_defaults_come_from_their_one_home():
    assert ModelConfig().name == DEFAULT_MODEL
    assert ModelConfig().stride == DEFAULT_STRIDE
    # model-dependent defaults: None in the dataclass, the model's own once loaded
    assert DecodeConfig().max_poses is None and DecodeConfig().min_pose_score is None
    posenet = load_config(None, {"model.name": "posenet-mnv1-075"}).decode
    assert (posenet.max_poses, posenet.min_pose_score) == (DEFAULT_MAX_POSES, DEFAULT_MIN_POSE_SCORE)
    assert DecodeConfig().min_part_score == DEFAULT_MIN_PART_SCORE
    assert DecodeConfig().nms_radius == DEFAULT_NMS_RADIUS
    assert MqttConfig().topic_prefix == DEFAULT_TOPIC_PREFIX


@pytest.mark.parametrize("name", ["edgepose.toml", "demo.toml"])
def test_shipped_configs_are_valid(name):
    load_config(REPO_ROOT / "config" / name)


def commented_keys(text: str, sections: tuple[str, ...] = ("model", "decode")) -> dict[str, object]:
    """`# key = value` lines in `sections`: keys documented but not set."""
    found: dict[str, object] = {}
    section = ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\[([a-z_.]+)\]", line.strip()):
            section = header[1]
        elif section in sections and (match := re.fullmatch(r"# ([a-z_]+) = (.+)", line.strip())):
            key = f"{section}.{match[1]}"
            if key in validate.ALL_KEYS:  # not prose such as "# true = ..."
                found[key] = tomllib.loads(f"v = {match[2]}")["v"]
    return found


def test_documented_config_lists_every_key_with_its_default():
    text = (REPO_ROOT / "config" / "edgepose.toml").read_text()
    documented = flatten(tomllib.loads(text))
    defaults = flatten(redacted(Config()))
    del defaults["mqtt.password"]  # resolved, never a key
    # No zones by default: [[zones]] is documented by commented-out examples.
    assert defaults.pop("zones") == []
    # Keys for one kind of model, and keys whose default is the model's, are documented
    # commented out: set in the shipped file they would bind (or refuse) other models.
    model_keys = set(config_module.FAMILY_KEYS) | set(config_module.MODEL_DEFAULT_KEYS)
    assert sorted(documented) == sorted(set(defaults) - model_keys)
    differing = {k for k in documented if documented[k] != defaults[k]}
    assert differing == set()
    assert documented["source.uri"] == "picamera2"  # the built-in default too
    commented = commented_keys(text)
    assert model_keys <= set(commented)
    resolved = flatten(redacted(load_config(None)))  # the default model's values
    assert {k: commented[k] for k in model_keys} == {k: resolved[k] for k in model_keys}


def test_demo_config_runs_the_demo_locally(tmp_path):
    config = load_config(REPO_ROOT / "config" / "demo.toml")
    assert config.source.uri == "demo"
    assert config.source.max_fps == 5
    assert config.mqtt.host == "localhost"
    assert config.snapshots.dir == tmp_path / "snapshots"


# --- reading the file -----------------------------------------------------------------


def test_toml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, '[mqtt]\nhost = "broker"\nport = = 1883\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "line 3, column" in message


def test_toml_error_at_end_of_file_names_last_line(tmp_path):
    path = write(tmp_path, '[mqtt]\nhost = "broker\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "line 2, column" in str(caught.value)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert "absent.toml" in str(caught.value)


# --- keys and types -------------------------------------------------------------------


def test_unknown_key_suggests_nearest(tmp_path):
    message = only_problem(tmp_path, '[mqtt]\nhots = "broker"\n')
    assert message.startswith("mqtt.hots: unknown key")
    assert "did you mean mqtt.host?" in message


def test_unknown_key_in_wrong_section_names_its_home(tmp_path):
    message = only_problem(tmp_path, "[source]\nport = 1884\n")
    assert message.startswith("source.port: unknown key")
    assert "mqtt.port" in message


def test_unknown_section_is_refused(tmp_path):
    message = only_problem(tmp_path, "[camera]\nwidth = 640\n")
    assert message.startswith("camera: unknown key")


def test_password_key_in_file_is_refused_without_echo(tmp_path):
    message = only_problem(tmp_path, f'[mqtt]\npassword = "{SECRET}"\n')
    assert message.startswith("mqtt.password: unknown key")
    assert "mqtt.password_file" in message
    assert SECRET not in message


def test_section_must_be_a_table(tmp_path):
    message = only_problem(tmp_path, "mqtt = 5\n")
    assert message == "mqtt: expected a table [mqtt], got integer 5"


def test_rejects_bool_where_int_expected(tmp_path):
    message = only_problem(tmp_path, "[mqtt]\nport = true\n")
    assert message == "mqtt.port: expected an integer, got boolean true"


def test_rejects_bool_where_float_expected(tmp_path):
    message = only_problem(tmp_path, "[decode]\nmin_pose_score = false\n")
    assert message.startswith("decode.min_pose_score: expected a number")


def test_accepts_int_where_float_expected(tmp_path):
    config = load(tmp_path, "[source]\nmax_fps = 5\n")
    assert config.source.max_fps == 5.0
    assert isinstance(config.source.max_fps, float)


def test_rejects_float_where_int_expected(tmp_path):
    message = only_problem(tmp_path, "[decode]\nmax_poses = 2.0\n")
    assert message == "decode.max_poses: expected an integer, got float 2"


def test_rejects_string_where_number_expected(tmp_path):
    message = only_problem(tmp_path, '[mqtt]\nport = "1883"\n')
    assert message == 'mqtt.port: expected an integer, got string "1883"'


def test_rejects_number_where_string_enum_expected(tmp_path):
    message = only_problem(tmp_path, "[mqtt]\nprotocol = 5\n")
    assert message.startswith("mqtt.protocol: expected a string")
    assert '"5"' in message


def test_rejects_non_finite_number(tmp_path):
    message = only_problem(tmp_path, POSENET + "[decode]\nnms_radius = inf\n")
    assert message.startswith("decode.nms_radius: must be a finite number")


def test_failed_key_does_not_cascade_into_cross_field_rules(tmp_path):
    message = only_problem(tmp_path, POSENET + 'stride = "16"\ninput_size = "353x257"\n')
    assert message.startswith("model.stride:")


# --- ranges and enums -----------------------------------------------------------------


@pytest.mark.parametrize("port", [0, 65536])
def test_rejects_port_outside_1_to_65535(tmp_path, port):
    assert only_problem(tmp_path, f"[mqtt]\nport = {port}\n") == (
        f"mqtt.port: must be 1-65535, got {port}"
    )


def test_rejects_poses_expiry_beyond_mqtt5_four_bytes(tmp_path):
    assert only_problem(tmp_path, "[mqtt]\nposes_expiry_s = 4294967296\n") == (
        "mqtt.poses_expiry_s: must be 0-4294967295, got 4294967296"
    )


@pytest.mark.parametrize("key", ["min_pose_score", "min_part_score"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_rejects_scores_outside_0_to_1(tmp_path, key, value):
    message = only_problem(tmp_path, f"[decode]\n{key} = {value}\n")
    assert message == f"decode.{key}: must be 0-1, got {value:g}"


@pytest.mark.parametrize("value", [0, 21])
def test_rejects_max_poses_outside_1_to_20(tmp_path, value):
    message = only_problem(tmp_path, f"[decode]\nmax_poses = {value}\n")
    assert message == f"decode.max_poses: must be 1-20, got {value}"


def test_rejects_non_positive_nms_radius(tmp_path):
    assert only_problem(tmp_path, POSENET + "[decode]\nnms_radius = 0\n") == (
        "decode.nms_radius: must be > 0, got 0"
    )


def test_rejects_negative_max_fps(tmp_path):
    assert only_problem(tmp_path, "[source]\nmax_fps = -1\n") == (
        "source.max_fps: must be 0.001-1000 (or 0 for none), got -1"
    )


def test_accepts_max_fps_zero_as_no_cap(tmp_path):
    assert load(tmp_path, "[source]\nmax_fps = 0\n").source.max_fps == 0.0


def test_rejects_empty_source_uri(tmp_path):
    assert only_problem(tmp_path, '[source]\nuri = "  "\n') == "source.uri: must not be empty"


def test_rejects_reopen_delay_max_below_delay(tmp_path):
    message = only_problem(tmp_path, "[source]\nreopen_delay_s = 5\nreopen_delay_max_s = 2\n")
    assert message.startswith("source.reopen_delay_max_s: must be >= source.reopen_delay_s")


def test_rejects_snapshot_keep_below_1(tmp_path):
    assert only_problem(tmp_path, "[snapshots]\nkeep = 0\n") == (
        "snapshots.keep: must be 1-1000000, got 0"
    )


def test_rejects_negative_snapshot_max_bytes(tmp_path):
    assert only_problem(tmp_path, "[snapshots]\nmax_bytes = -1\n") == (
        "snapshots.max_bytes: must be 0-1099511627776, got -1"
    )


def test_enum_error_names_allowed_values(tmp_path):
    message = only_problem(tmp_path, '[model]\naccelerator = "tpu"\n')
    assert message.startswith("model.accelerator: must be one of")
    for allowed in ('"cpu"', '"edgetpu"', '"auto"'):
        assert allowed in message
    assert 'got "tpu"' in message


def test_enum_error_suggests_nearest_value(tmp_path):
    message = only_problem(tmp_path, '[model]\naccelerator = "EdgeTPU"\n')
    assert 'did you mean "edgetpu"?' in message


def test_rejects_unknown_logging_level(tmp_path):
    message = only_problem(tmp_path, '[logging]\nlevel = "verbose"\n')
    assert message == (
        'logging.level: must be one of "debug", "info", "warning", "error", got "verbose"'
    )


def test_rejects_stride_not_8_16_32(tmp_path):
    assert only_problem(tmp_path, POSENET + "stride = 12\n") == (
        "model.stride: must be one of 8, 16, 32, got 12"
    )


def test_rejects_bad_edgetpu_device(tmp_path):
    message = only_problem(tmp_path, '[model]\nedgetpu_device = "usb0"\n')
    assert message.startswith("model.edgetpu_device: must be")


@pytest.mark.parametrize("prefix", ["", "a/+/b", "edgepose/#", "/edgepose", "edgepose/"])
def test_rejects_topic_prefix_that_is_not_a_plain_topic(tmp_path, prefix):
    message = only_problem(tmp_path, f'[mqtt]\ntopic_prefix = "{prefix}"\n')
    assert message.startswith("mqtt.topic_prefix: must be a topic")


# --- model ----------------------------------------------------------------------------


def test_input_size_parses_to_width_height(tmp_path):
    config = load(tmp_path, POSENET + 'stride = 32\ninput_size = "481x353"\n')
    assert config.model.input_size == (481, 353)


def test_rejects_malformed_input_size(tmp_path):
    message = only_problem(tmp_path, POSENET + 'input_size = "353*257"\n')
    assert message.startswith('model.input_size: expected "WxH"')


def test_rejects_stride_that_does_not_fit_input(tmp_path):
    message = only_problem(tmp_path, POSENET + 'stride = 16\ninput_size = "350x257"\n')
    assert message.startswith("model.input_size: 350x257 does not fit output stride 16")
    assert message.endswith("(model.stride 16)")
    assert "nearest valid sizes: 337x257, 353x257" in message


def test_stride_rule_checks_height_too(tmp_path):
    message = only_problem(tmp_path, POSENET + 'stride = 32\ninput_size = "257x250"\n')
    assert "nearest valid sizes: 257x225, 257x257" in message


@pytest.mark.parametrize(
    "model",
    ['path = "models/posenet_mobilenet_v1_075_int8.tflite"', 'name = "posenet-mnv1-075"', ""],
)
def test_edgetpu_rejects_a_model_not_compiled_for_it(tmp_path, model):
    """A CPU model must never be handed to the Edge TPU delegate (it ran on a 1x1 input)."""
    message = only_problem(tmp_path, f'[model]\n{model}\naccelerator = "edgetpu"\n')
    assert message.startswith("model.accelerator: the Edge TPU runs only files compiled with edgetpu_compiler")


def test_edgetpu_accepts_a_compiled_model(tmp_path):
    config = load(
        tmp_path,
        '[model]\npath = "models/posenet_mobilenet_v1_075_353_481_quant_decoder_edgetpu.tflite"\n'
        'accelerator = "edgetpu"\n',
    )
    assert config.model.accelerator == "edgetpu"


def test_input_size_auto(tmp_path):
    assert load(tmp_path, POSENET + 'input_size = "auto"\n').model.input_size is None
    assert redacted(load_config(None))["model"]["input_size"] == "auto"


# --- node and client ids --------------------------------------------------------------


def test_rejects_node_id_outside_allowed_chars(tmp_path):
    message = only_problem(tmp_path, '[node]\nid = "cam 1"\n')
    assert message == (
        "node.id: must be 1-64 letters, digits, '_' or '-', got \"cam 1\""
    )


def test_node_id_defaults_to_sanitised_hostname(monkeypatch):
    monkeypatch.setattr(loader.socket, "gethostname", lambda: "Pi Cam+2.local")
    assert load_config(None).node.id == "Pi_Cam_2"


def test_client_id_defaults_to_edgepose_node_id(tmp_path):
    config = load(tmp_path, '[node]\nid = "porch"\n')
    assert config.mqtt.client_id == "edgepose-porch"


def test_client_id_given_is_kept(tmp_path):
    config = load(tmp_path, '[node]\nid = "porch"\n[mqtt]\nclient_id = "cam-a"\n')
    assert config.mqtt.client_id == "cam-a"


# --- MQTT credentials and TLS ---------------------------------------------------------


def test_username_needs_password(tmp_path):
    message = only_problem(tmp_path, '[mqtt]\nusername = "edgepose"\n')
    assert message.startswith("mqtt.username: needs a password")
    assert "mqtt.password_file" in message and "mqtt.password_env" in message


def test_password_needs_username(tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    assert only_problem(tmp_path, '[mqtt]\npassword_file = "pw"\n') == (
        "mqtt.password_file: a password needs mqtt.username"
    )


def test_rejects_both_password_file_and_env(tmp_path):
    message = only_problem(
        tmp_path, '[mqtt]\nusername = "u"\npassword_file = "pw"\npassword_env = "PW"\n'
    )
    assert message.startswith("mqtt.password_env: set only one")


def test_password_read_from_file_without_trailing_newline(tmp_path):
    (tmp_path / "pw").write_text(SECRET + "\n")
    config = load(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    assert config.mqtt.password == SECRET


def test_relative_password_file_is_looked_up_in_credentials_directory(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "broker_pw").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "broker_pw"\n')
    assert config.mqtt.password == SECRET


def test_password_read_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", SECRET)
    config = load(tmp_path, '[mqtt]\nusername = "u"\npassword_env = "MQTT_PASSWORD"\n')
    assert config.mqtt.password == SECRET


def test_password_env_must_be_set(tmp_path):
    assert only_problem(
        tmp_path, '[mqtt]\nusername = "u"\npassword_env = "MQTT_PASSWORD"\n'
    ) == "mqtt.password_env: environment variable MQTT_PASSWORD is not set"


def test_password_env_must_not_be_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", "")
    assert only_problem(
        tmp_path, '[mqtt]\nusername = "u"\npassword_env = "MQTT_PASSWORD"\n'
    ) == "mqtt.password_env: environment variable MQTT_PASSWORD is empty"


def test_password_read_from_systemd_credential(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load(tmp_path, '[mqtt]\nusername = "u"\n')
    assert config.mqtt.password == SECRET


def test_unreadable_password_file_names_key(tmp_path):
    (tmp_path / "pw").mkdir()  # a directory: unreadable as a file, even for root
    message = only_problem(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    assert message.startswith("mqtt.password_file: cannot read")


def test_empty_password_file_is_refused(tmp_path):
    (tmp_path / "pw").write_text("\n")
    message = only_problem(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    assert message.startswith("mqtt.password_file:") and message.endswith("is empty")


def test_password_never_in_repr_or_errors(tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    text = '[mqtt]\nusername = "u"\npassword_file = "pw"\n'
    config = load(tmp_path, text)
    assert config.mqtt.password == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config.mqtt)
    assert SECRET not in str(redacted(config))
    with pytest.raises(ConfigError) as caught:  # the password was read, another key is wrong
        load(tmp_path, text + "port = 0\n")
    assert SECRET not in str(caught.value)
    assert caught.value.problems == ["mqtt.port: must be 1-65535, got 0"]


def test_redacted_hides_password(tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    config = load(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    printed = redacted(config)
    assert printed["mqtt"]["password"] == "***"
    assert printed["mqtt"]["username"] == "u"
    assert printed["model"]["input_size"] == "auto"
    assert redacted(load_config(None))["mqtt"]["password"] is None


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "key_file"])
def test_rejects_missing_tls_file(tmp_path, key):
    (tmp_path / "client.pem").write_text("pem")
    files = {"cert_file": "client.pem", key: "absent.pem"}  # a key file needs a certificate
    text = "[mqtt.tls]\nenabled = true\n" + "".join(f'{k} = "{v}"\n' for k, v in files.items())
    assert only_problem(tmp_path, text) == f"mqtt.tls.{key}: no such file: absent.pem"


def test_accepts_existing_tls_files(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
    config = load(
        tmp_path,
        '[mqtt.tls]\nenabled = true\nca_file = "ca.pem"\n'
        'cert_file = "client.pem"\nkey_file = "client.key"\n',
    )
    assert config.mqtt.tls.enabled and config.mqtt.tls.ca_file == "ca.pem"


def test_tls_key_needs_certificate(tmp_path):
    (tmp_path / "client.key").write_text("pem")
    assert only_problem(tmp_path, '[mqtt.tls]\nkey_file = "client.key"\n') == (
        "mqtt.tls.key_file: needs mqtt.tls.cert_file"
    )


# --- overrides ------------------------------------------------------------------------


def test_override_beats_file(tmp_path):
    config = load(
        tmp_path,
        '[source]\nuri = "demo"\n[mqtt]\nhost = "file-host"\nport = 1883\n',
        {"source.uri": "/dev/video0", "mqtt.host": "cli-host", "mqtt.port": 1884},
    )
    assert config.source.uri == "/dev/video0"
    assert (config.mqtt.host, config.mqtt.port) == ("cli-host", 1884)


def test_override_fills_sections_absent_from_file(tmp_path):
    config = load(tmp_path, "", {"mqtt.tls.enabled": True})
    assert config.mqtt.tls.enabled is True


def test_override_of_none_is_ignored(tmp_path):
    config = load(tmp_path, '[mqtt]\nhost = "file-host"\n', {"mqtt.host": None})
    assert config.mqtt.host == "file-host"


def test_override_is_validated_like_the_file(tmp_path):
    found = problems(tmp_path, "", {"mqtt.port": 0, "mqtt.hots": "x"})
    assert found == [
        "mqtt.hots: unknown key; did you mean mqtt.host?",
        "mqtt.port: must be 1-65535, got 0",
    ]


def test_overrides_apply_without_a_file():
    assert load_config(None, {"logging.level": "debug"}).logging.level == "debug"


# --- paths ----------------------------------------------------------------------------


def test_relative_snapshot_dir_resolves_against_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = load(tmp_path, '[snapshots]\ndir = "shots"\n')
    assert config.snapshots.dir == tmp_path / "state" / "shots"


def test_relative_snapshot_dir_resolves_against_working_directory(tmp_path):
    assert load(tmp_path, '[snapshots]\ndir = "shots"\n').snapshots.dir == tmp_path / "shots"


def test_absolute_snapshot_dir_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    absolute = tmp_path / "elsewhere"
    config = load(tmp_path, f'[snapshots]\ndir = "{absolute}"\n')
    assert config.snapshots.dir == absolute


# --- the result -----------------------------------------------------------------------


def test_reports_every_problem_at_once(tmp_path):
    found = problems(
        tmp_path,
        """
        [model]
        name = "posenet-mnv1-075"
        stride = 16
        input_size = "350x257"
        [decode]
        max_poses = 0
        [source]
        uri = ""
        fps = 5
        [mqtt]
        port = 70000
        username = "edgepose"
        [snapshots]
        keep = 0
        [logging]
        level = "loud"
        """,
    )
    keys = [problem.split(":", 1)[0] for problem in found]
    assert sorted(keys) == sorted(
        [
            "model.input_size",
            "decode.max_poses",
            "source.uri",
            "source.fps",
            "mqtt.port",
            "mqtt.username",
            "snapshots.keep",
            "logging.level",
        ]
    )


def test_config_is_frozen():
    config = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mqtt.port = 1  # type: ignore[misc]


def test_config_error_exits_with_78(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[mqtt]\nport = 0\n")
    assert caught.value.exit_code == ExitCode.CONFIG == 78


# --- keys for one kind of model ---------------------------------------------------------


def test_a_posenet_key_written_for_a_movenet_model_is_named_as_such(tmp_path):
    text = '[model]\nname = "movenet-thunder"\nstride = 16\n[decode]\nnms_radius = 20.0\n'
    assert problems(tmp_path, text) == [
        'decode.nms_radius: only PoseNet\'s decoder has an NMS radius; model.name is "movenet-thunder"',
        'model.stride: only PoseNet models have an output stride; model.name is "movenet-thunder"',
    ]
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize("name,text,message", [
    ("posenet-mnv1-075", "[model]\nmultipose_long_side = 320\n", "model.multipose_long_side: only movenet-multipose"),
    ("posenet-mnv1-075", "[model]\nstill_passes = 2\n", "model.still_passes: only the single-pose MoveNet"),
    ("movenet-multipose", "[model]\nfirst_crop = \"letterbox\"\n", "model.first_crop: only the single-pose MoveNet"),
    ("movenet-multipose", "[model]\ninput_size = \"481x353\"\n", "model.input_size: only PoseNet models"),
    ("movenet-lightning", "[decode]\nmax_poses = 2\n", "decode.max_poses: single-pose models find one person"),
    ("movenet-multipose", "[decode]\nmax_poses = 7\n", "decode.max_poses: movenet-multipose finds at most 6"),
])
def test_keys_of_one_model_are_refused_for_the_others(tmp_path, name, text, message):
    text = text.replace("[model]\n", f'[model]\nname = "{name}"\n') if "[model]" in text \
        else f'[model]\nname = "{name}"\n' + text
    found = only_problem(tmp_path, text)
    assert found.startswith(message), found
    if "model.name is" in found:
        assert found.endswith(f'model.name is "{name}"')


def test_keys_of_the_model_chosen_are_taken(tmp_path):
    multi = load(tmp_path, '[model]\nname = "movenet-multipose"\nmultipose_long_side = 384\n'
                           '[decode]\nmax_poses = 3\nmin_pose_score = 0.3\n')
    assert (multi.model.multipose_long_side, multi.decode.max_poses, multi.decode.min_pose_score) == (384, 3, 0.3)
    single = load(tmp_path, '[model]\nname = "movenet-thunder"\nstill_passes = 2\nfirst_crop = "letterbox"\n')
    assert (single.model.still_passes, single.model.first_crop) == (2, "letterbox")
    assert (single.decode.max_poses, single.decode.min_pose_score) == (1, 0.25)  # the model's defaults
    posenet = load(tmp_path, '[model]\nname = "posenet-mnv1-075"\nstride = 8\ninput_size = "353x257"\n')
    assert (posenet.decode.max_poses, posenet.decode.min_pose_score) == (5, 0.15)


def test_a_cli_override_counts_as_written(tmp_path):
    found = problems(tmp_path, '[model]\nname = "movenet-lightning"\n', {"model.stride": 8})
    assert found == ['model.stride: only PoseNet models have an output stride; model.name is "movenet-lightning"']


@pytest.mark.parametrize("value,message", [
    (250, "model.multipose_long_side: must be a multiple of 32, got 250"),
    (96, "model.multipose_long_side: must be 128-1024, got 96"),
    (2048, "model.multipose_long_side: must be 128-1024, got 2048"),
])
def test_multipose_long_side_bounds(tmp_path, value, message):
    assert only_problem(tmp_path, f'[model]\nname = "movenet-multipose"\nmultipose_long_side = {value}\n') == message


def test_still_passes_and_first_crop_bounds(tmp_path):
    assert only_problem(tmp_path, '[model]\nname = "movenet-thunder"\nstill_passes = 0\n').startswith(
        "model.still_passes: must be 1-8")
    assert only_problem(tmp_path, '[model]\nname = "movenet-thunder"\nfirst_crop = "center"\n').startswith(
        "model.first_crop: must be one of")


def test_every_model_only_key_has_a_reason_and_every_model_its_defaults():
    from edgepose.estimators import MODELS

    for spec in MODELS.values():
        assert spec.options <= set(config_module.FAMILY_KEYS), spec.name
        assert set(dict(spec.defaults)) == set(config_module.MODEL_DEFAULT_KEYS), spec.name
    assert set(config_module.FAMILY_KEYS) == set().union(*(s.options for s in MODELS.values()))


def test_state_file_lives_in_the_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert load(tmp_path, "").node.state_file == tmp_path / "state" / "edgepose-state.json"


def test_configuration_url_must_be_a_web_address(tmp_path):
    assert load(tmp_path, '[node]\nconfiguration_url = "http://hall.lan:9090/"\n').node.configuration_url
    (problem,) = problems(tmp_path, '[node]\nconfiguration_url = "hall.lan"\n')
    assert problem.startswith("node.configuration_url:") and "http://" in problem


def test_home_assistant_discovery_is_on_by_default_and_off_with_one_key(tmp_path):
    assert load(tmp_path, "").mqtt.home_assistant is True
    assert load(tmp_path, "[mqtt]\nhome_assistant = false\n").mqtt.home_assistant is False


def test_the_still_interval_must_leave_a_still_person_their_track(tmp_path):
    """The gate's rate for a still scene with people against the tracker's memory: an
    interval over half of tracking.max_age_s would give a still person a new id."""
    message = only_problem(tmp_path, "[motion]\nstill_interval_s = 0.6\n")
    assert message.startswith("motion.still_interval_s: must be at most half of tracking.max_age_s (1 s)")
    assert load(tmp_path, "[motion]\nstill_interval_s = 1.0\n[tracking]\nmax_age_s = 2.0\n").motion.still_interval_s == 1.0
    assert load(tmp_path, "[motion]\nenabled = false\nstill_interval_s = 5.0\n").motion.still_interval_s == 5.0


def test_snapshots_hide_the_camera_picture_unless_asked(tmp_path):
    """The families this is for chose pose over video: no picture by default."""
    assert Config().snapshots.privacy == "skeleton"
    assert load(tmp_path, '[snapshots]\nprivacy = "off"\n').snapshots.privacy == "off"
    assert only_problem(tmp_path, '[snapshots]\nprivacy = "none"\n').startswith("snapshots.privacy:")
