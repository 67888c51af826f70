"""Overlay snapshots on disk, and when to take them.

Files are named ``<UTC time>_<seq>_<reason>.jpg``, e.g.
``20261121T050102.123Z_000007_count_change.jpg``, so sorting names sorts by
time. Every file appears whole or not at all (temp file in the same folder,
fsync, rename), because a Pi loses power mid-write and a viewer may read the
folder at any moment. Retention deletes the oldest snapshots past ``keep``
files or ``max_bytes`` in total, and only files with the snapshot name
pattern: whatever else a user puts in the folder is safe. ``latest.jpg`` is a
copy of the newest snapshot for people and dashboards; retention ignores it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

#: Snapshot reasons (the tag in file names and in MQTT payloads).
REASON_INTERVAL = "interval"
REASON_COUNT_CHANGE = "count_change"
REASON_COMMAND = "command"

LATEST_NAME = "latest.jpg"
SNAPSHOT_SUFFIX = ".jpg"
#: Temp files carry this prefix, so leftovers from a power cut can be told apart.
TEMP_PREFIX = ".edgepose-snapshot-"
TEMP_SUFFIX = ".tmp"
_TIME_FORMAT = "%Y%m%dT%H%M%S"
_SEQ_DIGITS = 6
_MAX_TAG_LENGTH = 40
_SNAPSHOT_NAME = re.compile(
    r"^\d{8}T\d{6}\.\d{3}Z_\d{%d,}_[A-Za-z0-9_-]+%s$" % (_SEQ_DIGITS, re.escape(SNAPSHOT_SUFFIX))
)
_UNSAFE_TAG_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def is_snapshot_name(name: str) -> bool:
    """True for file names this module writes (and so may delete)."""
    return bool(_SNAPSHOT_NAME.match(name))


def _utc_stamp(when: datetime | float) -> str:
    """Sortable UTC time to the millisecond; naive datetimes are local time, as in Python."""
    if isinstance(when, datetime):
        moment = when.astimezone(timezone.utc)
    else:
        moment = datetime.fromtimestamp(float(when), tz=timezone.utc)
    return f"{moment.strftime(_TIME_FORMAT)}.{moment.microsecond // 1000:03d}Z"


def _safe_tag(tag: str) -> str:
    cleaned = _UNSAFE_TAG_CHARS.sub("-", tag).strip("-")[:_MAX_TAG_LENGTH]
    return cleaned or "snapshot"


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; some platforms cannot open directories, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` whole, or leave it as it was (and no temp file) on error."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


class SnapshotWriter:
    """Writes JPEG snapshots into one folder and keeps it within bounds.

    Takes ready JPEG bytes: the caller encodes once for files and MQTT alike.
    `max_bytes` 0 means no size cap (only `keep` counts).
    Raises OSError when the disk refuses (full, read-only, gone); the folder is
    then left as it was before the call.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep: int,
        max_bytes: int,
        latest: bool = True,
    ):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0: no size cap), got {max_bytes}")
        self.directory = Path(directory)
        self.keep = keep
        self.max_bytes = max_bytes
        self.latest = latest
        self._seq = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    def write(self, jpeg: bytes, when: datetime | float, tag: str) -> Path:
        """Store one snapshot; `when` is a datetime or time.time() seconds."""
        path = self._next_path(when, tag)
        write_atomic(path, jpeg)
        log.debug("snapshot %s (%d bytes)", path.name, len(jpeg))
        if self.latest:
            write_atomic(self.directory / LATEST_NAME, jpeg)
        self._apply_retention(newest=path)
        return path

    def snapshots(self) -> list[Path]:
        """Snapshot files in the folder, oldest first (user files excluded)."""
        return sorted(
            (p for p in self.directory.iterdir() if is_snapshot_name(p.name) and p.is_file()),
            key=lambda p: p.name,
        )

    def _next_path(self, when: datetime | float, tag: str) -> Path:
        stamp, safe = _utc_stamp(when), _safe_tag(tag)
        while True:  # a restart within the same millisecond must not overwrite
            self._seq += 1
            path = self.directory / f"{stamp}_{self._seq:0{_SEQ_DIGITS}d}_{safe}{SNAPSHOT_SUFFIX}"
            if not path.exists():
                return path

    def _apply_retention(self, newest: Path) -> None:
        """Delete oldest snapshots past the limits; the newest one always stays."""
        files = self.snapshots()
        sizes = []
        for p in files:
            try:
                sizes.append(p.stat().st_size)
            except FileNotFoundError:  # deleted by someone else meanwhile
                sizes.append(0)
        count, total = len(files), sum(sizes)
        for p, size in zip(files, sizes):
            if count <= self.keep and (not self.max_bytes or total <= self.max_bytes):
                break
            if p == newest:
                continue
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete old snapshot %s: %s", p.name, exc)
                continue
            count -= 1
            total -= size

    def _remove_stale_temp_files(self) -> None:
        for p in self.directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()
                log.info("removed unfinished snapshot %s", p.name)


@dataclass(slots=True)
class SnapshotPolicy:
    """Decides when a snapshot is due; no clock of its own, so tests pass `now`.

    `now` is any monotonic clock in seconds (time.monotonic() in the daemon).
    Reasons, by priority: a pending command, a change in the number of people
    since the last snapshot (the scene counts as empty before the first one),
    then `interval_s` since the last snapshot (0 = never; the first call is
    due). Returning a reason means the caller takes the snapshot: the policy
    records it. `cooldown_s` holds count-change snapshots back for that long
    after any snapshot, so a flickering count cannot take one per frame; a
    change that reverts within the cooldown takes none.
    """

    interval_s: float
    on_count_change: bool
    cooldown_s: float = 0.0
    _last_at: float | None = field(default=None, init=False)
    _last_count: int = field(default=0, init=False)
    _requested: bool = field(default=False, init=False)

    def request(self) -> None:
        """Take a snapshot at the next frame (an MQTT command asked for one)."""
        self._requested = True

    def due(self, now: float, person_count: int) -> str | None:
        reason = self._reason(now, person_count)
        if reason is not None:
            self._requested = False
            self._last_at = now
            self._last_count = person_count
        return reason

    def _reason(self, now: float, person_count: int) -> str | None:
        if self._requested:
            return REASON_COMMAND
        since = None if self._last_at is None else now - self._last_at
        if (
            self.on_count_change
            and person_count != self._last_count
            and (since is None or since >= self.cooldown_s)
        ):
            return REASON_COUNT_CHANGE
        if self.interval_s > 0 and (since is None or since >= self.interval_s):
            return REASON_INTERVAL
        return None
