"""How the schema says what a key takes beyond its type: a `Rule` in each field's
metadata, read by the validator (validate.py) and by `redacted` (secrets.py)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

STRING_MAX = 4096  # any string without its own bound: URIs, names
RULE = "edgepose.rule"
DERIVED = "edgepose.derived"  # a resolved value, not a key


@dataclass(frozen=True, slots=True)
class Rule:
    """Checks for one key beyond its type. Enums are typed ``Literal[...]`` instead."""

    choices: tuple[Any, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    nonempty: bool = False
    off: Any = None  # a value that means "off" and skips the range check (0 = no cap)
    max_len: int = STRING_MAX  # strings: most UTF-8 bytes
    path: bool = False  # strings: a filesystem path (checked, ~ expanded by the user of it)
    pattern: str | None = None  # full match, for strings
    pattern_help: str = ""
    toml: type | None = None  # the TOML type, when the field holds a parsed value
    parse: Callable[[Any], Any] | None = None  # TOML value -> field value; ValueError(reason)
    auto: bool = False  # the string "auto" is also accepted, held as None (decided at run time)


def key(default: Any, **rule: Any) -> Any:
    return field(default=default, metadata={RULE: Rule(**rule)})


def table_array_of(hint: Any) -> type | None:
    """The dataclass of a ``tuple[X, ...]`` field (a TOML array of tables), else None."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None
