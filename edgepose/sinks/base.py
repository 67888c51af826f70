"""What every sink shares: the optional parts of the Sink protocol (pipeline.py)."""

from __future__ import annotations

from collections.abc import Callable

from ..core import FrameResult, Message

#: Hands one message to the MQTT client (or a recording); False when it was dropped.
Publish = Callable[[Message], bool]


class BaseSink:
    """Defaults for the optional parts of the Sink protocol."""

    def consume(self, result: FrameResult) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def command(self, name: str, now: float, wall: float) -> bool:
        return False

    def close(self) -> None:
        pass
