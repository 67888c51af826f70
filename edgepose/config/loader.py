"""Loading: read the TOML file, lay CLI overrides over it, validate every key
(validate.py) and the rules across keys, resolve what is derived (the node id, the
password, paths in the state directory) and raise one ConfigError naming every
problem."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..text import show
from .families import accept_model_name_in_path, check_family, check_model_options, written_keys
from .paths import read_small_file, resolve_state_path, show_path
from .schema import CLIENT_ID_MAX, MAX_ZONES, PORT_MAX, Config, FallConfig, ModelConfig, SourceConfig, ZoneConfig
from .secrets import check_tls, resolve_password
from .validate import check_table, key_text

CONFIG_FILE_MAX = 1024 * 1024
#: Tables and arrays deeper than this are refused before anything recurses over them.
NESTING_MAX = 16


def load_config(
    path: str | Path | None, overrides: dict[str, object] | None = None
) -> Config:
    """Read ``path`` (None: defaults only), apply dotted-key ``overrides``, validate once.

    ``overrides`` maps dotted keys to single values, e.g. {"mqtt.port": 1884}; a
    value of None is skipped, so the CLI can pass every flag whether given or not.
    Raises ConfigError listing every problem found, each as "dotted.key: message".
    """
    raw = _read_toml(Path(path)) if path is not None else {}
    try:
        return _load(raw, overrides or {})
    except RecursionError:  # _check_depth should make this unreachable; never a traceback
        raise ConfigError("config: tables or arrays nested too deeply") from None


def _load(raw: dict[str, Any], overrides: dict[str, object]) -> Config:
    """Validate a parsed TOML document (plus overrides): a Config or one ConfigError."""
    problems: list[str] = []
    _apply_overrides(raw, overrides, problems)
    accept_model_name_in_path(raw)
    _check_depth(raw, problems)
    if problems:
        raise ConfigError(problems)
    written = written_keys(raw, ("model", "decode"))
    bad: set[str] = set()  # keys whose own check failed: cross-field rules skip them
    config = Config(**check_table(Config, raw, "", problems, bad))
    config = dataclasses.replace(config, decode=check_model_options(config.model, config.decode, written, bad, problems))
    _check_across(config, bad, problems)
    password = resolve_password(config.mqtt, bad, problems)
    node_id = config.node.id or _hostname_id()
    client_id = config.mqtt.client_id or f"edgepose-{node_id}"
    if not {"node.id", "mqtt.client_id"} & bad and len(client_id.encode()) > CLIENT_ID_MAX:
        problems.append(f"mqtt.client_id: at most {CLIENT_ID_MAX} bytes, got {len(client_id.encode())}")
    snapshot_dir = resolve_state_path("snapshots.dir", config.snapshots.dir, problems)
    outbox_path = resolve_state_path("outbox.path", config.outbox.path, problems)
    state_file = resolve_state_path("node.state_file", config.node.state_file, problems)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(
        config,
        node=dataclasses.replace(config.node, id=node_id, state_file=state_file),
        mqtt=dataclasses.replace(
            config.mqtt,
            client_id=client_id,
            password=password,
        ),
        snapshots=dataclasses.replace(config.snapshots, dir=snapshot_dir),
        outbox=dataclasses.replace(config.outbox, path=outbox_path),
    )


def check_writable(config: Config) -> None:
    """At daemon start: the snapshot folder and the folders of the outbox and the state
    file exist (made if need be) and take a file. Under systemd (``$STATE_DIRECTORY`` set) they must also lie in
    the state directory: ``ProtectSystem=strict`` makes every other place read-only.
    Raises one ConfigError naming each key that fails. Not part of `load_config`, so
    ``detect`` and ``check`` never create folders.
    """
    problems: list[str] = []
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    wanted: list[tuple[str, Path]] = []
    if config.snapshots.enabled:
        wanted.append(("snapshots.dir", Path(config.snapshots.dir)))
    if config.outbox.enabled:
        wanted.append(("outbox.path", Path(config.outbox.path).parent))
    wanted.append(("node.state_file", Path(config.node.state_file).parent))
    for key, directory in wanted:
        if state and not _is_within(directory, Path(state)):
            problems.append(
                f"{key}: {directory} is outside the service's state directory {state}; "
                "the unit's ProtectSystem=strict makes it read-only (use a relative path)"
            )
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".edgepose-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(f"{key}: cannot write to {directory}: {reason}")
    if problems:
        raise ConfigError(problems)


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _check_across(config: Config, bad: set[str], problems: list[str]) -> None:
    """The rules that tie keys together; a key whose own check failed takes no part."""
    check_family(config.model, config.decode, bad, problems)
    _check_accelerator(config.model, bad, problems)
    _check_source(config.source, bad, problems)
    check_tls(config.mqtt.tls, bad, problems)
    _check_falls(config.falls, bad, problems)
    if not {"tracking.max_tracks", "decode.max_poses"} & bad and config.tracking.max_tracks < config.decode.max_poses:
        problems.append(
            f"tracking.max_tracks: must be >= decode.max_poses ({config.decode.max_poses}), "
            f"got {config.tracking.max_tracks}: every person found needs a track"
        )
    motion, max_age_s = config.motion, config.tracking.max_age_s
    if (not {"motion.still_interval_s", "tracking.max_age_s"} & bad
            and motion.enabled and motion.still_interval_s > max_age_s / 2):
        problems.append(
            f"motion.still_interval_s: must be at most half of tracking.max_age_s "
            f"({max_age_s:g} s), got {motion.still_interval_s:g}: "
            "a still person would lose their track id between two inferences"
        )
    _check_zones(config.zones, bad, problems)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = read_small_file(path, CONFIG_FILE_MAX)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{show_path(path)}: cannot read config file: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{show_path(path)}: line {line}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{show_path(path)}: TOML syntax error {_toml_error_position(exc, text)}") from None
    except ValueError as exc:  # e.g. an integer literal over Python's 4300-digit limit
        raise ConfigError(f"{show_path(path)}: TOML value error: {show(str(exc))}") from None
    except RecursionError:  # tomllib recurses per nested array / inline table
        raise ConfigError(
            f"{show_path(path)}: tables or arrays nested too deeply (at most {NESTING_MAX} levels)"
        ) from None


def _check_depth(raw: dict[str, Any], problems: list[str]) -> None:
    """Refuse tables/arrays nested beyond NESTING_MAX, iteratively (no recursion to blow)."""
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > NESTING_MAX:
            problems.append(f"{where or 'config'}: nested more than {NESTING_MAX} levels deep")
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                name = key_text(str(key))
                stack.append((item, f"{where}.{name}" if where else name, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{where}[{index}]", depth + 1))


def _toml_error_position(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """tomllib (before 3.14) puts the position only in the message text."""
    message = str(getattr(exc, "msg", None) or exc)
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if line is None:
        if found := re.search(r"\s*\(at line (\d+), column (\d+)\)$", message):
            line, column = int(found[1]), int(found[2])
            message = message[: found.start()]
        elif found := re.search(r"\s*\(at end of document\)$", message):
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            message = message[: found.start()] + " (at end of file)"
    if line is None:
        return f": {message}"
    return f"at line {line}, column {column}: {message}"


def _apply_overrides(
    raw: dict[str, Any], overrides: dict[str, object], problems: list[str]
) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        if not all(parts):
            problems.append(f"{dotted}: not a dotted key such as \"mqtt.port\"")
            continue
        table = raw
        for depth, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                problems.append(
                    f"{dotted}: cannot override: {'.'.join(parts[: depth + 1])} is not a table"
                )
                break
        else:
            table[parts[-1]] = value


#: Broker URL schemes `broker_overrides` takes, and whether each turns TLS on.
BROKER_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
MQTT_PORT, MQTTS_PORT = 1883, 8883


def broker_overrides(text: str) -> dict[str, object]:
    """``--broker`` as config overrides: HOST, HOST:PORT, [IPv6]:PORT, or a URL
    mqtt://HOST[:PORT] (port 1883) / mqtts://HOST[:PORT] (TLS on, port 8883).

    Raises ConfigError naming the key a bad part would set.
    """
    text = text.strip()
    scheme, has_scheme, _ = text.partition("://")
    if has_scheme:
        scheme = scheme.lower()
        if scheme not in BROKER_SCHEMES:
            raise ConfigError(
                f"mqtt.host: --broker {show(text)}: unknown scheme {show(scheme)} "
                f"(use {', '.join(s + '://' for s in BROKER_SCHEMES)} or HOST[:PORT])"
            )
        parts = urlsplit(text)
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                "mqtt.username: --broker: credentials in the URL are not read; "
                "use mqtt.username with mqtt.password_file or mqtt.password_env"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"mqtt.host: --broker {show(text)}: a broker URL has no path or query")
    else:
        parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"mqtt.port: --broker {show(text)}: the port must be 1-{PORT_MAX}") from None
    if not parts.hostname:
        raise ConfigError(f"mqtt.host: --broker {show(text)}: no host name")
    overrides: dict[str, object] = {"mqtt.host": parts.hostname}
    if has_scheme:
        tls = BROKER_SCHEMES[scheme]
        overrides["mqtt.tls.enabled"] = tls
        port = port or (MQTTS_PORT if tls else MQTT_PORT)
    if port is not None:
        overrides["mqtt.port"] = port
    return overrides


def _check_accelerator(model: ModelConfig, bad: set[str], problems: list[str]) -> None:
    if model.accelerator != "edgetpu" or {"model.path", "model.quantized"} & bad:
        return
    if model.path and not Path(model.path).name.lower().endswith("_edgetpu.tflite"):
        problems.append(
            "model.accelerator: the Edge TPU runs only files compiled with edgetpu_compiler "
            f"(*_edgetpu.tflite); model.path {show(model.path)} is a CPU model"
        )
    elif not model.path:
        problems.append(
            "model.accelerator: the Edge TPU runs only files compiled with edgetpu_compiler: "
            "compile the int8 build (docs/coral.md) and set model.path to the "
            "*_edgetpu.tflite file"
        )


def _check_source(source: SourceConfig, bad: set[str], problems: list[str]) -> None:
    if {"source.reopen_delay_s", "source.reopen_delay_max_s"} & bad:
        return
    if source.reopen_delay_max_s < source.reopen_delay_s:
        problems.append(
            f"source.reopen_delay_max_s: must be >= source.reopen_delay_s "
            f"({source.reopen_delay_s:g}), got {source.reopen_delay_max_s:g}"
        )


def _check_falls(falls: FallConfig, bad: set[str], problems: list[str]) -> None:
    if {"falls.upright_deg", "falls.down_deg"} & bad:
        return
    if falls.down_deg <= falls.upright_deg:
        problems.append(
            f"falls.down_deg: must be > falls.upright_deg ({falls.upright_deg:g}), "
            f"got {falls.down_deg:g}"
        )


def _check_zones(zones: tuple[ZoneConfig, ...], bad: set[str], problems: list[str]) -> None:
    if len(zones) > MAX_ZONES:
        problems.append(f"zones: at most {MAX_ZONES} zones, got {len(zones)}")
    seen: dict[str, int] = {}
    for i, zone in enumerate(zones):
        # A key left out keeps its default, which for these two is no value at all.
        if f"zones[{i}].name" in bad:
            pass
        elif not zone.name:
            problems.append(f"zones[{i}].name: every zone needs a name")
        elif zone.name in seen:
            problems.append(
                f"zones[{i}].name: {show(zone.name)} is already the name of zones[{seen[zone.name]}]"
            )
        else:
            seen[zone.name] = i
        if not zone.points and f"zones[{i}].points" not in bad:
            problems.append(f"zones[{i}].points: every zone needs points [[x, y], ...]")


def _hostname_id() -> str:
    """The short host name with anything outside [A-Za-z0-9_-] replaced by '_'."""
    short = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", short)[:64] or "edgepose"
