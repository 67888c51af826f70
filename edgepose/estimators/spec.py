"""What a model family declares: its named models (`ModelSpec`) and the config keys
only its models take (`ModelOption`). Plain data, importable without a runtime:
the config reads these to build and check the [model] and [decode] tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A family's check of a validated config for one of its models: (model section,
#: decode section, keys whose own check failed and that hold their defaults) ->
#: problems, each "dotted.key: message".
Check = Callable[[Any, Any, frozenset[str]], list[str]]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One named model in the registry."""

    name: str
    family: str
    summary: str
    precisions: tuple[str, ...]
    input_rule: str  # how the input size is chosen, for `edgepose models`
    edgetpu: str  # whether and how an Edge TPU build can be had
    licence: str  # of the weights; models/LICENSE-weights.md says where it is stated
    files: tuple[str, ...]  # file names in models_dir()
    #: "module:function" taking (model section, decode section) -> Estimator; imported when opened.
    opener: str
    #: The keys declared by some family's `ModelOption`s that this model takes: any
    #: other of them written in a config is an error naming model.name.
    options: frozenset[str] = frozenset()
    #: Defaults of keys whose default depends on the model (config.MODEL_DEFAULT_KEYS),
    #: used when the config does not write them.
    defaults: tuple[tuple[str, object], ...] = ()
    #: False when the int8 build scores below the reference (TF.js on the same weights)
    #: on the dev photos where the float build does not: `model.quantized = "auto"`
    #: then picks the float build on the CPU on every runtime (runtime/defaults.py).
    int8_on_cpu: bool = True
    #: The most people the model can find (decode.max_poses may not ask for more); None: no limit.
    max_poses_limit: int | None = None
    #: Rules across this model's keys that no single key's bounds can say; None: none.
    check: Check | None = None


@dataclass(frozen=True, slots=True)
class ModelOption:
    """A config key that only some models take, declared by the family that reads it.

    With a `type`, the key exists only through this declaration: the config adds a
    field of that type and default to its table and checks the bounds below. Without
    one, it is a key every config has (``decode.max_poses``) that only some models take.
    """

    key: str  # "model.stride": the table and the key
    refused: str  # why a model that does not take it refuses it; the message adds model.name
    type: Any = None  # the value's Python type once read
    default: Any = None
    choices: tuple[Any, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    toml: type | None = None  # the TOML type, when `parse` turns it into another
    parse: Callable[[Any], Any] | None = None  # TOML value -> value; ValueError(reason)
    auto: bool = False  # the string "auto" is also taken, held as None (decided at run time)


__all__ = ["Check", "ModelOption", "ModelSpec"]
