"""Small helpers for what the command line prints."""

from __future__ import annotations

import json


def count(n: int, noun: str) -> str:
    """"1 thread", "2 threads": a number and an English noun that takes -s."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def show(value: object) -> str:
    """A value as TOML would spell it, cut short: for messages about config values."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, int):
        text = str(value) if abs(value) < 10**60 else ("-" if value < 0 else "") + "a huge integer"
    elif isinstance(value, (list, dict)):  # never repr: it recurses, and may be huge
        text = "an array" if isinstance(value, list) else "a table"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
