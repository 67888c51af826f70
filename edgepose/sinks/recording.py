"""`Recorder`: ``edgepose run --record FILE``, the published poses as a recording."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from ..constants import TOPIC_POSES
from ..core import Message
from ..errors import ConfigError
from ..replay import RecordingWriter
from .base import BaseSink

log = logging.getLogger(__name__)

#: Poses messages waiting to be written to a recording.
RECORD_QUEUE = 256


class Recorder(BaseSink):
    """`edgepose run --record FILE`: every published ``poses`` message, one per line
    (the format `edgepose replay` reads), written on a thread of its own."""

    def __init__(self, path: Path, queue_size: int = RECORD_QUEUE):
        try:
            self._stream = open(path, "ab")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(f"--record: cannot write {path}: {exc.strerror or exc}") from exc
        self._writer = RecordingWriter(self._stream)
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="edgepose-recorder", daemon=True)
        self._thread.start()

    def __call__(self, message: Message) -> bool:
        if message.topic != TOPIC_POSES:
            return False
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._writer.write(message)
            except OSError as exc:
                self.dropped += 1
                log.warning("recording: %s", exc)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        self._stream.close()
