"""The generic validator: a TOML table against a schema dataclass, key by key, each
problem as "dotted.key: message" with a "did you mean" where one helps."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
import typing
from typing import Any, Literal

from ..text import show
from .paths import check_path_text, encodable
from .rules import DERIVED, RULE, Rule, table_array_of
from .schema import Config
from .secrets import CREDENTIAL_MQTT_PASSWORD


class _Bad:
    """The result of a check that failed: the key keeps its default and joins ``bad``."""


_BAD = _Bad()


def check_table(
    cls: type, table: Any, prefix: str, problems: list[str], bad: set[str]
) -> dict[str, Any]:
    """Constructor arguments for ``cls`` from a TOML table; bad and absent keys omitted."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get(DERIVED)}
    for name in table:
        if name not in fields:
            problems.append(unknown_key(prefix, name))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in table:
            continue
        dotted, value, hint = prefix + name, table[name], hints[name]
        item_cls = table_array_of(hint)
        if item_cls is not None:
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                kwargs[name] = tuple(
                    item_cls(**check_table(item_cls, item, f"{dotted}[{i}].", problems, bad))
                    for i, item in enumerate(value)
                )
            else:
                problems.append(
                    f"{dotted}: expected tables [[{dotted}]], got {_describe(value)}"
                )
                bad.add(dotted)
            continue
        if dataclasses.is_dataclass(hint):
            if isinstance(value, dict):
                kwargs[name] = hint(**check_table(hint, value, dotted + ".", problems, bad))
            else:
                problems.append(f"{dotted}: expected a table [{dotted}], got {_describe(value)}")
                bad.add(dotted)
            continue
        checked = _check_value(dotted, value, hint, f.metadata.get(RULE, Rule()), problems)
        if checked is _BAD:
            bad.add(dotted)
        else:
            kwargs[name] = checked
    return kwargs


def _check_value(dotted: str, value: Any, hint: Any, rule: Rule, problems: list[str]) -> Any:
    if rule.auto and value == "auto":
        return None
    choices = rule.choices
    expected = rule.toml or hint
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        expected = type(choices[0])

    def fail(message: str) -> _Bad:
        problems.append(f"{dotted}: {message}")
        return _BAD

    if expected is bool:
        if not isinstance(value, bool):
            also = ' or "auto"' if rule.auto else ""
            return fail(f"expected true or false{also}, got {_describe(value)}")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return fail(f"expected an integer, got {_describe(value)}")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return fail(f"expected a number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            return fail(f"must be a finite number, got {show(value)}")
    elif expected is list:
        if not isinstance(value, list):
            return fail(f"expected an array, got {_describe(value)}")
    elif expected is str:
        if not isinstance(value, str):
            hint_text = f" (one of {_list(choices)}, in quotes)" if choices else ""
            return fail(f"expected a string{hint_text}, got {_describe(value)}")
        if "\x00" in value:
            return fail("must not contain a NUL byte")
        if not encodable(value):
            return fail(f"not valid text: {show(value)}")
        if not rule.path and len(value.encode("utf-8", "surrogateescape")) > rule.max_len:
            return fail(f"at most {rule.max_len} bytes, got {len(value.encode('utf-8', 'surrogateescape'))}")
        if rule.path and value:
            try:
                check_path_text(value)
            except ValueError as exc:
                return fail(str(exc))
    else:  # pragma: no cover - a schema mistake, not a user mistake
        raise TypeError(f"{dotted}: no TOML type for {hint!r}")

    if rule.nonempty and not value.strip():
        return fail("must not be empty")
    if choices and value not in choices:
        message = f"must be one of {_list(choices)}, got {show(value)}"
        if isinstance(value, str):
            near = difflib.get_close_matches(value.lower(), [str(c) for c in choices], n=1)
            if near:
                message += f"; did you mean {show(near[0])}?"
        return fail(message)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        return fail(f"{rule.pattern_help}, got {show(value)}")
    if rule.off is not None and value == rule.off:
        pass
    elif rule.ge is not None and rule.le is not None:
        if not rule.ge <= value <= rule.le:
            also = f" (or {show(rule.off)} for none)" if rule.off is not None else ""
            return fail(f"must be {show(rule.ge)}-{show(rule.le)}{also}, got {show(value)}")
    elif rule.ge is not None and not value >= rule.ge:
        return fail(f"must be >= {show(rule.ge)}, got {show(value)}")
    elif rule.le is not None and not value <= rule.le:
        return fail(f"must be <= {show(rule.le)}, got {show(value)}")
    if rule.gt is not None and value != rule.off and not value > rule.gt:
        return fail(f"must be > {show(rule.gt)}, got {show(value)}")
    if rule.parse is not None:
        try:
            value = rule.parse(value)
        except ValueError as exc:
            return fail(str(exc))
    return value


def key_text(name: str) -> str:
    """One key as TOML would write it: bare when it can be, quoted otherwise (an empty
    or odd key must still be visible in a message)."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,60}", name):
        return name
    return show(name)


def unknown_key(prefix: str, name: str) -> str:
    dotted = prefix + key_text(name)
    if dotted == "mqtt.password":
        return (
            f"{dotted}: unknown key; passwords are never read from the config file: "
            "use mqtt.password_file, mqtt.password_env or the systemd credential "
            f"{CREDENTIAL_MQTT_PASSWORD}"
        )
    section = re.sub(r"\[\d+\]", "", prefix.rstrip("."))
    siblings = [k.rsplit(".", 1)[-1] for k in ALL_KEYS if k.rpartition(".")[0] == section]
    near = difflib.get_close_matches(name, siblings, n=1)
    if near:
        return f"{dotted}: unknown key; did you mean {prefix + near[0]}?"
    # (prefix keeps an array index such as zones[1]. so the message points at the table)
    elsewhere = [k for k in ALL_KEYS if k.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return f"{dotted}: unknown key; did you mean {' or '.join(elsewhere)}?"
    where = f"[{section}]" if section else "the top level"
    return f"{dotted}: unknown key; known keys in {where}: {', '.join(siblings)}"


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key and table name, derived from the dataclasses."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get(DERIVED):
            continue
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(all_keys(hints[f.name], prefix + f.name + "."))
        elif (item_cls := table_array_of(hints[f.name])) is not None:
            keys.extend(all_keys(item_cls, prefix + f.name + "."))
    return keys


#: Every dotted key and table name, in schema order: what an unknown key is compared with.
ALL_KEYS: tuple[str, ...] = tuple(all_keys(Config))


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        return "an array"
    elif isinstance(value, dict):
        return "a table"
    elif isinstance(value, (datetime.date, datetime.time)):
        kind = "date-time"
    else:
        kind = type(value).__name__
    return f"{kind} {show(value)}"


def _list(choices: tuple[Any, ...]) -> str:
    return ", ".join(show(c) for c in choices)
