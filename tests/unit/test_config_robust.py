"""The config loader cannot crash: every malformed input is a ConfigError naming its key.

Regression tests for each crash class a fuzz run found (issue 8: deep nesting,
``~nosuchuser``, NUL bytes, over-long paths, /dev/zero and FIFOs, values that
passed validation and then crashed at start), then property-based tests
(hypothesis) on the loader and on command parsing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepose import config as config_module
from edgepose.config import loader, validate
from edgepose.mqtt import commands
from edgepose.config import Config, check_writable, load_config
from edgepose.errors import ConfigError, ExitCode

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Deterministic by default (the project's rule); EDGEPOSE_FUZZ=N explores N x more
#: examples with fresh randomness, for a fuzzing session by hand.
FUZZ = int(os.environ.get("EDGEPOSE_FUZZ", "0") or 0)
HYPOTHESIS = dict(derandomize=not FUZZ, database=None, deadline=None)
#: No single load may take longer than this (a FIFO or /dev/zero must not hang or grow).
LOAD_TIMEOUT_S = 5.0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "MQTT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def load_in_time(path: Path) -> Config | ConfigError:
    """load_config in a thread, so a hang fails the test instead of stalling the run."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(load_config(path))
        except ConfigError as exc:
            result.append(exc)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            result.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(LOAD_TIMEOUT_S)
    assert not worker.is_alive(), f"load_config({path}) still running after {LOAD_TIMEOUT_S} s"
    (outcome,) = result
    assert isinstance(outcome, (Config, ConfigError)), f"escaped: {outcome!r}"
    return outcome


def rejected(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "edgepose.toml"
    path.write_text(text, encoding="utf-8")
    outcome = load_in_time(path)
    assert isinstance(outcome, ConfigError), "accepted"
    return outcome.problems


def problem_for(tmp_path: Path, text: str, key: str) -> str:
    found = [p for p in rejected(tmp_path, text) if p.startswith(key + ":")]
    assert found, f"no problem names {key}"
    return found[0]


# --- regression: the crash classes of the fuzz run --------------------------------------


@pytest.mark.parametrize("depth", [20, 500, 5000])
def test_deeply_nested_arrays_are_refused(tmp_path, depth):
    text = "[model]\npath = " + "[" * depth + "]" * depth + "\n"
    problems = rejected(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].startswith(("model.path", str(tmp_path))), problems


@pytest.mark.parametrize("depth", [500, 5000])
def test_deeply_nested_inline_tables_are_refused(tmp_path, depth):
    text = "x = " + "{a = " * depth + "1" + "}" * depth + "\n"
    (problem,) = rejected(tmp_path, text)
    assert "nested" in problem or problem.startswith("x")


def test_deeply_nested_tables_are_refused(tmp_path):
    text = "[" + ".".join(["t"] * 600) + "]\nk = 1\n"
    (problem,) = rejected(tmp_path, text)
    assert problem.startswith("t")


@pytest.mark.parametrize(
    "key",
    ["snapshots.dir", "outbox.path", "mqtt.password_file", "mqtt.tls.ca_file", "model.path"],
)
def test_tilde_of_an_unknown_user_names_the_key(tmp_path, key):
    section, _, name = key.rpartition(".")
    extra = 'username = "u"\n' if key == "mqtt.password_file" else ""
    text = f"[{section}]\n{extra}{name} = \"~nosuchuser-edgepose/x\"\n"
    problem = problem_for(tmp_path, text, key)
    assert "nosuchuser-edgepose" in problem


@pytest.mark.parametrize("key", ["mqtt.password_file", "snapshots.dir", "source.uri", "mqtt.host"])
def test_nul_byte_names_the_key(tmp_path, key):
    section, _, name = key.rpartition(".")
    extra = 'username = "u"\n' if key == "mqtt.password_file" else ""
    assert "NUL" in problem_for(tmp_path, f'[{section}]\n{extra}{name} = "a\\u0000b"\n', key)


@pytest.mark.parametrize("key", ["mqtt.tls.ca_file", "mqtt.tls.cert_file", "snapshots.dir", "outbox.path"])
def test_path_component_over_255_bytes_names_the_key(tmp_path, key):
    section, _, name = key.rpartition(".")
    assert "255" in problem_for(tmp_path, f'[{section}]\n{name} = "{"a" * 300}/x"\n', key)


def test_path_over_path_max_names_the_key(tmp_path):
    long = "/".join(["a" * 200] * 25)  # 5024 bytes, every part short
    assert "4095" in problem_for(tmp_path, f'[mqtt.tls]\nca_file = "{long}"\n', "mqtt.tls.ca_file")


def test_relative_dir_over_path_max_once_made_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/" + "/".join(["s" * 200] * 12))
    rel = "/".join(["d" * 200] * 10)
    assert "once made absolute" in problem_for(tmp_path, f'[snapshots]\ndir = "{rel}"\n', "snapshots.dir")


def test_password_file_dev_zero_is_refused_unread(tmp_path):
    text = '[mqtt]\nusername = "u"\npassword_file = "/dev/zero"\n'
    assert "not a regular file" in problem_for(tmp_path, text, "mqtt.password_file")


def test_password_file_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pw")
    text = f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path / "pw"}"\n'
    assert "not a regular file" in problem_for(tmp_path, text, "mqtt.password_file")


def test_password_file_too_big_is_refused(tmp_path):
    (tmp_path / "pw").write_bytes(b"x" * (config_module.SECRET_FILE_MAX + 1))
    text = '[mqtt]\nusername = "u"\npassword_file = "pw"\n'
    assert "at most" in problem_for(tmp_path, text, "mqtt.password_file")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_config_file_that_is_not_a_regular_file(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    outcome = load_in_time(path)
    assert isinstance(outcome, ConfigError) and "not a regular file" in str(outcome)


def test_tls_ca_file_that_is_a_device(tmp_path):
    assert "not a regular file" in problem_for(tmp_path, '[mqtt.tls]\nca_file = "/dev/zero"\n', "mqtt.tls.ca_file")


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("model.threads", "9223372036854775807", "0-64"),
        ("source.reopen_delay_s", "1e10", "0.01-86400"),
        ("source.reopen_delay_max_s", "1e300", "0.01-86400"),
        ("source.max_fps", "1e-10", "0.001-1000"),
        ("source.width", "100000", "1-8192"),
        ("mqtt.stats_interval_s", "1e-300", "0.1-86400"),
        ("mqtt.poses_interval_s", "1e20", "0.01-86400"),
        ("mqtt.keepalive_s", "0", "1-65535"),
        ("mqtt.max_queued", "9223372036854775807", "1-100000"),
        ("snapshots.cooldown_s", "1e12", "0-86400"),
        ("snapshots.interval_s", "1e12", "0-86400"),
        ("snapshots.keep", "9223372036854775807", "1-1000000"),
        ("decode.nms_radius", "1e308", "<= 10000"),
        ("tracking.max_age_s", "1e300", "<= 86400"),
        ("smoothing.min_cutoff_hz", "1e300", "<= 1000"),
        ("smoothing.beta", "1e300", "0-1e+06"),
        ("presence.hold_s", "1e300", "0-86400"),
        ("falls.confirm_s", "1e300", "0-86400"),
        ("falls.min_drop", "1e300", "0-10"),
        ("outbox.max_messages", "9223372036854775807", "10-1000000"),
        ("outbox.max_bytes", "1", "65536-2147483648"),
        ("model.input_size", '"99999999x3"', "2-4097"),
    ],
)
def test_numbers_the_code_cannot_use_are_refused(tmp_path, key, value, needle):
    section, _, name = key.rpartition(".")
    assert needle in problem_for(tmp_path, f"[{section}]\n{name} = {value}\n", key)


def test_an_integer_too_long_for_python_is_a_config_error(tmp_path):
    problems = rejected(tmp_path, "[model]\nthreads = " + "9" * 5000 + "\n")
    assert len(problems) == 1 and "value" in problems[0]


def test_max_fps_zero_still_means_no_cap(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[source]\nmax_fps = 0\n")
    assert load_config(path).source.max_fps == 0.0


@pytest.mark.parametrize(
    "text, key",
    [
        ('[mqtt]\nclient_id = "' + "c" * 70_000 + '"\n', "mqtt.client_id"),
        ('[mqtt]\nclient_id = "a/b"\n', "mqtt.client_id"),
        ('[mqtt]\nclient_id = "caf\u00e9"\n', "mqtt.client_id"),
        ('[node]\nid = "' + "n" * 65 + '"\n', "node.id"),
        ('[mqtt]\ntopic_prefix = "' + "p" * 2000 + '"\n', "mqtt.topic_prefix"),
        ('[source]\nuri = "' + "u" * 5000 + '"\n', "source.uri"),
    ],
)
def test_mqtt_ids_and_long_strings_are_bounded(tmp_path, text, key):
    problem_for(tmp_path, text, key)


def test_default_client_id_from_a_long_node_id_fits(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[node]\nid = "' + "n" * 64 + '"\n')
    config = load_config(path)
    assert len(config.mqtt.client_id) <= config_module.CLIENT_ID_MAX


# --- writability at start --------------------------------------------------------------


def test_check_writable_creates_and_probes(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[snapshots]\ndir = "snaps/deep"\n[outbox]\npath = "q/outbox.db"\n')
    config = load_config(path)
    check_writable(config)
    assert (tmp_path / "snaps" / "deep").is_dir() and (tmp_path / "q").is_dir()
    assert not any((tmp_path / "snaps" / "deep").iterdir())


def test_unwritable_snapshot_dir_names_the_key(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "c.toml"
    path.write_text(f'[snapshots]\ndir = "{tmp_path / "file" / "snaps"}"\n')
    with pytest.raises(ConfigError) as caught:
        check_writable(load_config(path))
    (problem,) = caught.value.problems
    assert problem.startswith("snapshots.dir: cannot write to")


def test_dirs_outside_the_state_directory_are_refused_under_systemd(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    path = tmp_path / "c.toml"
    path.write_text(f'[snapshots]\ndir = "{tmp_path / "elsewhere"}"\n')
    with pytest.raises(ConfigError) as caught:
        check_writable(load_config(path))
    (problem,) = caught.value.problems
    assert problem.startswith("snapshots.dir:") and "ProtectSystem=strict" in problem
    path.write_text("")  # the defaults are relative: inside the state directory
    config = load_config(path)
    check_writable(config)
    assert config.outbox.path == state / "outbox.sqlite3"


# --- through the CLI: exit 78, the key named, no traceback ------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("[model]\npath = " + "[" * 600 + "]" * 600 + "\n", "edgepose.toml"),
        ('[snapshots]\ndir = "~nosuchuser-edgepose/s"\n', "snapshots.dir"),
        ('[mqtt]\nusername = "u"\npassword_file = "/dev/zero"\n', "mqtt.password_file"),
        ("[model]\nthreads = 9223372036854775807\n", "model.threads"),
        ("[source]\nreopen_delay_s = 1e10\n", "source.reopen_delay_s"),
    ],
)
def test_cli_exits_78_naming_the_key(tmp_path, text, key):
    path = tmp_path / "edgepose.toml"
    path.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "edgepose", "run", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr


# --- property-based: no exception escapes, every rejection names its key ----------------

_SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "~", "~nosuchuser/x", "a\x00b", "/dev/zero", "x" * 300, "/" * 5000,
                     "demo", "5", "481x353", "usb:1", "3.1.1", "info", "\ud800"]),
    st.dates(),
    st.datetimes(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_KNOWN = [k for k in validate.ALL_KEYS]


@st.composite
def raw_configs(draw) -> dict:
    """A parsed-TOML-like document: mostly known keys, some unknown, any values."""
    raw: dict = {}
    for _ in range(draw(st.integers(0, 8))):
        dotted = draw(st.sampled_from(_KNOWN) | st.text(min_size=1, max_size=12))
        parts = dotted.split(".")
        table = raw
        for part in parts[:-1]:
            nxt = table.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            table = nxt
        else:
            table[parts[-1]] = draw(_VALUES)
    return raw


def _paths(value, prefix: str = "") -> set[str]:
    """Every dotted key path in a document, spelt as the loader's messages spell keys."""
    found = {prefix} if prefix else set()
    if isinstance(value, dict):
        for key, item in value.items():
            name = validate.key_text(str(key))
            found |= _paths(item, f"{prefix}.{name}" if prefix else name)
    return found


@settings(max_examples=500 * max(FUZZ, 1), suppress_health_check=[HealthCheck.too_slow], **HYPOTHESIS)
@given(raw_configs())
def test_loader_never_raises_anything_but_a_config_error_naming_a_key(raw):
    import copy

    given_paths = _paths(copy.deepcopy(raw))
    try:
        loader._load(raw, {})
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            keys = given_paths | set(validate.ALL_KEYS)
            assert any(problem.startswith((k + ": ", k + "[")) for k in keys), problem


_TOML_PIECES = st.sampled_from([
    "[model]\n", "[mqtt]\n", "[mqtt.tls]\n", "[snapshots]\n", "[source]\n", "[outbox]\n", "[x.y]\n",
    "threads = ", "path = ", "dir = ", "ca_file = ", "max_fps = ", "keepalive_s = ", "id = ",
    "1", "-1", "1e10", "1e-10", "nan", "inf", "9223372036854775807", "true", '"~nosuchuser/x"',
    '"a\\u0000b"', '"/dev/zero"', "[", "]", "{", "}", "[[a]]\n", "\n", "=", '"', ",", " ",
    "1979-05-27T07:32:00Z", "'lit'", '"""', "#c\n", "\x00", "\ufeff",
])


@settings(max_examples=300 * max(FUZZ, 1),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], **HYPOTHESIS)
@given(st.lists(_TOML_PIECES | st.text(max_size=6), max_size=40).map("".join))
def test_any_file_text_loads_or_is_a_config_error(tmp_path, text):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems and all(p for p in exc.problems)


@settings(max_examples=500 * max(FUZZ, 1), **HYPOTHESIS)
@given(st.sampled_from(["cmd/snapshot", "cmd/reboot", "", "cmd/", "cmd/snapshot/x"]) | st.text(max_size=20),
       st.binary(max_size=300) | st.sampled_from([b"", b"1", b"{\"snapshot\": true}", b"{", b"\xff\xfe",
                                                  b'{"snapshot": 1}', b"[" * 200, b"x" * 257]))
def test_command_parsing_never_raises_anything_but_a_value_error(suffix, payload):
    try:
        result = commands.parse_command(suffix, payload)
    except ValueError as exc:
        text = str(exc)
        assert text
        if suffix not in commands.COMMANDS:
            assert "unknown command topic" in text  # the rejection names what was wrong
    else:
        assert result in (None, "snapshot")
