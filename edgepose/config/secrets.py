"""Secrets: the MQTT password from its one configured place (a file, an environment
variable or the systemd credential), the TLS files, and the config printed with the
password hidden. Passwords are never read from the config file itself."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

from .paths import read_small_file, show_path
from .rules import RULE, Rule, table_array_of
from .schema import Config, MqttConfig, TlsConfig

#: Secrets and certificates are small: refuse anything bigger unread (/dev/zero, a FIFO, a log file).
SECRET_FILE_MAX = 4096
CERT_FILE_MAX = 1024 * 1024
#: systemd credential (LoadCredential=mqtt_password:...) read when no password is configured.
CREDENTIAL_MQTT_PASSWORD = "mqtt_password"
#: Shown instead of the MQTT password by ``redacted``.
REDACTED = "***"


def resolve_password(mqtt: MqttConfig, bad: set[str], problems: list[str]) -> str | None:
    """The MQTT password from its one configured place; problems never include it."""
    if {"mqtt.username", "mqtt.password_file", "mqtt.password_env"} & bad:
        return None
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if mqtt.password_file and mqtt.password_env:
        problems.append(
            "mqtt.password_env: set only one of mqtt.password_file and mqtt.password_env"
        )
        return None
    if not mqtt.username:
        for key in ("password_file", "password_env"):
            if getattr(mqtt, key):
                problems.append(f"mqtt.{key}: a password needs mqtt.username")
        return None
    if mqtt.password_file:
        path = Path(mqtt.password_file).expanduser()
        if not path.is_absolute() and credentials:
            path = Path(credentials) / path
        return _read_secret("mqtt.password_file", path, problems)
    if mqtt.password_env:
        secret = os.environ.get(mqtt.password_env)
        if not secret:
            state = "is not set" if secret is None else "is empty"
            problems.append(f"mqtt.password_env: environment variable {mqtt.password_env} {state}")
            return None
        return secret
    credential = Path(credentials) / CREDENTIAL_MQTT_PASSWORD if credentials else None
    if credential is not None and credential.is_file():
        return _read_secret("mqtt.username", credential, problems)
    problems.append(
        "mqtt.username: needs a password: set mqtt.password_file or mqtt.password_env, "
        f"or give the service the systemd credential {CREDENTIAL_MQTT_PASSWORD} "
        f"(LoadCredential={CREDENTIAL_MQTT_PASSWORD}:/path/to/file)"
    )
    return None


def _read_secret(key: str, path: Path, problems: list[str]) -> str | None:
    try:
        secret = read_small_file(path, SECRET_FILE_MAX).decode("utf-8")
    except OSError as exc:
        problems.append(f"{key}: cannot read {show_path(path)}: {exc.strerror or type(exc).__name__}")
        return None
    except ValueError as exc:  # not a regular file, too big (UnicodeDecodeError is below)
        if isinstance(exc, UnicodeDecodeError):
            problems.append(f"{key}: {show_path(path)} is not UTF-8 text")
        else:
            problems.append(f"{key}: cannot read {show_path(path)}: {exc}")
        return None
    secret = secret.rstrip("\r\n")
    if not secret:
        problems.append(f"{key}: {show_path(path)} is empty")
        return None
    if "\x00" in secret or "\n" in secret:
        problems.append(f"{key}: {show_path(path)} holds more than one line or a NUL byte")
        return None
    return secret


def check_tls(tls: TlsConfig, bad: set[str], problems: list[str]) -> None:
    for name in ("ca_file", "cert_file", "key_file"):
        value, dotted = getattr(tls, name), f"mqtt.tls.{name}"
        if not value or dotted in bad:
            continue
        path = Path(value).expanduser()
        try:
            read_small_file(path, CERT_FILE_MAX)
        except FileNotFoundError:
            problems.append(f"{dotted}: no such file: {show_path(path)}")
        except OSError as exc:
            problems.append(f"{dotted}: cannot read {show_path(path)}: {exc.strerror or type(exc).__name__}")
        except ValueError as exc:
            problems.append(f"{dotted}: cannot read {show_path(path)}: {exc}")
    if tls.key_file and not tls.cert_file:
        problems.append("mqtt.tls.key_file: needs mqtt.tls.cert_file")


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain TOML-like values for printing, the password replaced by "***"."""
    return _as_dict(config)


def _as_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _as_dict(value)
        elif table_array_of(typing.get_type_hints(type(obj))[f.name]) is not None:  # [[zones]]
            out[f.name] = [_as_dict(item) for item in value]
        elif f.name == "points":
            out[f.name] = [list(p) for p in value]
        elif not f.repr:  # a secret
            out[f.name] = None if value is None else REDACTED
        elif isinstance(value, tuple):  # a size such as model.input_size
            out[f.name] = "x".join(str(v) for v in value)
        elif value is None and f.metadata.get(RULE, Rule()).auto:
            out[f.name] = "auto"
        elif isinstance(value, Path):
            out[f.name] = str(value)
        else:
            out[f.name] = value
    return out
