"""Overlay snapshots: when to take them, the stage that takes them, and the files on disk.

`SnapshotStage` decides on the stages' thread and hands rendering, encoding,
writing and publishing to a thread of its own through a small bounded queue,
so a slow SD card costs snapshots, never frames.

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
import dataclasses
import logging
import os
import queue
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..core import FrameResult
from ..events import EVENT_KINDS
from ..messages import snapshot_message
from ..overlay import encode_jpeg, render_overlay
from ..zones import Zone
from .base import Publish

log = logging.getLogger(__name__)

#: Snapshot reasons (the tag in file names and in MQTT payloads).
REASON_INTERVAL = "interval"
REASON_COUNT_CHANGE = "count_change"
REASON_COMMAND = "command"
# An event's own reason comes with it (events.EventKind.snapshot: "fall").

#: Snapshots waiting to be rendered and written; one more is dropped and counted.
SNAPSHOT_QUEUE = 2

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

    def reserve(self, when: datetime | float, tag: str) -> Path:
        """The name the next snapshot at `when` gets, decided now (before it is written),
        so a message can carry it; pass it to `write`. Looks at the folder, writes nothing."""
        return self._next_path(when, tag)

    def write(self, jpeg: bytes, when: datetime | float, tag: str, path: Path | None = None) -> Path:
        """Store one snapshot; `when` is a datetime or time.time() seconds; `path` from `reserve`."""
        path = path or self._next_path(when, tag)
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


class SnapshotStage:
    """Overlay snapshots. A stage, not a sink, so the result (and a fall event) can
    carry the snapshot's file name: the decision and the name are made on the
    inference thread; rendering, encoding, writing (`writer`) and publishing
    (`publish`) happen on this stage's own thread, through a bounded queue.

    Reasons: an event that wants one (`FrameResult.snapshot` from the events stage:
    a fall, events.EventKind.snapshot), a command, a change of the
    (debounced, where presence runs) person count, the interval. `privacy`
    (``snapshots.privacy``) decides what every one of them shows behind the overlay,
    on disk and on MQTT alike: one JPEG is made per snapshot.
    """

    def __init__(
        self,
        policy: SnapshotPolicy,
        *,
        writer: SnapshotWriter | None,
        publish: Publish | None,
        labels: bool,
        min_score: float,
        jpeg_quality: int,
        zones: Sequence[Zone] = (),
        privacy: str,
        queue_size: int = SNAPSHOT_QUEUE,
    ):
        self._policy = policy
        self._privacy = privacy
        self._writer = writer
        self._publish = publish
        self._labels = labels
        self._min_score = min_score
        self._jpeg_quality = jpeg_quality
        self._zones = tuple(zones)
        self._queue: queue.Queue[tuple[FrameResult, str, Path | None] | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._dropped = 0
        self._written = 0
        self._thread = threading.Thread(target=self._run, name="edgepose-snapshots", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Snapshots given up: the queue was full, or the disk refused."""
        with self._lock:
            return self._dropped

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    def process(self, result: FrameResult) -> FrameResult:
        count = len(result.poses) if result.state is None else result.state.person_count
        reason = self._policy.due(result.frame.captured_mono, count)
        if result.snapshot is not None:
            reason = result.snapshot  # an event asked for this frame: taken whatever the cooldown
        if reason is None:
            return result.replace(snapshot=None)
        tag = f"{reason}_p{len(result.poses)}"
        path = self._writer.reserve(result.frame.captured_at, tag) if self._writer is not None else None
        try:
            self._queue.put_nowait((result, tag, path))
        except queue.Full:
            with self._lock:
                self._dropped += 1
            log.warning("snapshot (%s) dropped: %d still being written", reason, self._queue.qsize())
            return result.replace(snapshot=None)
        name = path.name if path is not None else None
        events = tuple(
            dataclasses.replace(e, fields={**e.fields, "snapshot": name})
            if EVENT_KINDS[e.type].snapshot and name else e
            for e in result.events
        )
        return result.replace(snapshot=name, events=events)

    def command(self, name: str, now: float, wall: float) -> bool:
        if name != "snapshot":
            return False
        self._policy.request()
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._take(*item)
            except Exception:  # a rendering or disk surprise must not end snapshots for good
                with self._lock:
                    self._dropped += 1
                log.exception("snapshot failed")
            finally:
                self._queue.task_done()

    def _take(self, result: FrameResult, tag: str, path: Path | None) -> None:
        image = render_overlay(result.frame.rgb, result.poses, labels=self._labels, min_score=self._min_score,
                               zones=self._zones, privacy=self._privacy)
        jpeg = encode_jpeg(image, self._jpeg_quality)
        if self._writer is not None:
            try:
                path = self._writer.write(jpeg, result.frame.captured_at, tag, path)
                log.info("snapshot %s", path)
            except OSError as exc:
                with self._lock:
                    self._dropped += 1
                log.warning("snapshot not written: %s", exc)
            else:
                with self._lock:
                    self._written += 1
        if self._publish is not None:
            self._publish(snapshot_message(jpeg))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued snapshot is done (tests, shutdown); True when it is."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued (within `timeout`), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("snapshot writer still busy after %.0f s; leaving it", timeout)
