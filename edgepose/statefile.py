"""What a node remembers across restarts: one small JSON file in the state directory.

Sections: ``presence`` (who was counted, per node and zone: events.Presence.remember)
and ``discovery`` (the Home Assistant discovery payload last announced, so that
components no longer configured can be removed at the next start). The file is
read once at start; `put` replaces one section and the whole file is written
again atomically (temporary file, fsync, rename) on a thread of its own, so a
slow SD card never holds the camera or the model; `flush` waits until what was put
is on disk (a presence event waits for it before it is sent). A missing or damaged
file is an empty memory (a warning), never an error: the node then starts as it
would the first time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The file's own format version; a file of another version is not read.
VERSION = 1
#: Larger than any memory of ours: a bigger file is not ours, or damaged.
MAX_BYTES = 1024 * 1024


class StateFile:
    """`path` None: remember nothing (replay, tests), with the same interface."""

    def __init__(self, path: Path | None):
        self.path = path
        self._data: dict[str, Any] = self._read() if path is not None else {}
        self._cond = threading.Condition()
        self._dirty = False  # a put not yet written
        self._writing = False
        self._closed = False
        self._last_error: str | None = None
        self._thread: threading.Thread | None = None
        self.writes = 0

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("state file %s: cannot read it (%s); starting with no memory", self.path,
                        exc.strerror or exc)
            return {}
        try:
            if len(raw) > MAX_BYTES:
                raise ValueError(f"over {MAX_BYTES} bytes")
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != VERSION:
                raise ValueError(f"not a version {VERSION} edgepose state file")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            log.warning("state file %s: %s; starting with no memory", self.path, exc)
            return {}
        return {k: v for k, v in data.items() if k != "v"}

    def get(self, section: str) -> Any:
        """The section as read at start (or as last put); None when absent."""
        with self._cond:
            return self._data.get(section)

    def put(self, section: str, value: Any) -> None:
        """Replace one section (plain JSON values); written soon, on the writer's thread."""
        if self.path is None:
            with self._cond:
                self._data[section] = value
            return
        with self._cond:
            if self._data.get(section) == value and not self._dirty:
                return
            self._data[section] = value
            self._dirty = True
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="edgepose-state", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every put is on disk (or failed and was logged); True when done."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._dirty and not self._writing, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (within `timeout`), then stop the writer."""
        if self.path is None:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("state file %s: still being written after %.0f s", self.path, timeout)
        elif self._dirty:
            self._write_now()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._closed)
                if not self._dirty:
                    return
                self._dirty, self._writing = False, True
            try:
                self._write_now()
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _write_now(self) -> None:
        assert self.path is not None
        with self._cond:
            self._dirty = False
            payload = json.dumps({"v": VERSION, **self._data}, separators=(",", ":"), sort_keys=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            cause = str(exc.strerror or exc)
            if cause != self._last_error:  # once per cause, not once per write
                log.warning("state file %s: cannot write it (%s); a restart will not remember "
                            "who was here or what Home Assistant was told", self.path, cause)
                self._last_error = cause
            try:
                tmp.unlink()
            except OSError:
                pass
            return
        self._last_error = None
        self.writes += 1
