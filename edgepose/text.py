"""Small helpers for what the command line prints."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """"1 thread", "2 threads": a number and an English noun that takes -s."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
