"""TOML config to frozen, validated dataclasses: the only place config is checked.

The dataclasses of schema.py are the schema: their field names are the TOML
keys, their defaults are the defaults, and the ``metadata`` of a field carries
its bounds (rules.py). The set of known keys is derived from them, so there is
no second list to keep in sync. The model families add their own keys to
[model] and [decode] through the estimators' registry (families.py); nothing
here names a family. ``load_config`` (loader.py) reads the file, lays CLI
overrides over it and checks everything in one pass (validate.py, and the rules
across keys), collecting every problem as "dotted.key: message" before raising a
single ``ConfigError``. Passwords and TLS files: secrets.py.
"""

from .families import FAMILY_KEYS, MODEL_DEFAULT_KEYS
from .loader import broker_overrides, check_writable, load_config
from .paths import read_small_file
from .schema import (
    CLIENT_ID_MAX,
    Config,
    DecodeConfig,
    FallConfig,
    LoggingConfig,
    ModelConfig,
    MotionConfig,
    MqttConfig,
    NodeConfig,
    OutboxConfig,
    PresenceConfig,
    SmoothingConfig,
    SnapshotConfig,
    SourceConfig,
    TlsConfig,
    TrackingConfig,
    ZoneConfig,
)
from .secrets import CREDENTIAL_MQTT_PASSWORD, REDACTED, SECRET_FILE_MAX, redacted

__all__ = [
    "CLIENT_ID_MAX",
    "CREDENTIAL_MQTT_PASSWORD",
    "FAMILY_KEYS",
    "MODEL_DEFAULT_KEYS",
    "REDACTED",
    "SECRET_FILE_MAX",
    "Config",
    "DecodeConfig",
    "FallConfig",
    "PresenceConfig",
    "SmoothingConfig",
    "TrackingConfig",
    "ZoneConfig",
    "LoggingConfig",
    "MotionConfig",
    "ModelConfig",
    "MqttConfig",
    "NodeConfig",
    "OutboxConfig",
    "SnapshotConfig",
    "SourceConfig",
    "TlsConfig",
    "broker_overrides",
    "check_writable",
    "load_config",
    "read_small_file",
    "redacted",
]
