"""The capture thread and the one-frame slot between it and inference.

Capture runs in its own thread so a slow camera never blocks inference and a
slow model never makes the camera queue up stale frames: the capture thread
keeps overwriting one slot and inference always takes the newest frame.
The thread survives every source failure: it closes the source, waits with
exponential back-off and opens it again.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .core import Frame
from .errors import FrameError, SourceError, SourceUnavailable
from .sources import FrameSource

log = logging.getLogger(__name__)

#: After this many bad frames in a row the source counts as broken and is reopened.
MAX_CONSECUTIVE_BAD_FRAMES = 50
#: How often a producer waiting for the slot to empty looks at its stop event.
_STOP_POLL_S = 0.1
#: The capture loop counts as stuck when one step (open, read, hand-over) runs this
#: much longer than it was allowed (sources time out after 10 s at the most).
STALL_S = 20.0

#: How many of the consumer's last busy spells (from taking a frame to asking for the
#: next) predict when it will ask again: their median, so a gated frame or a stall
#: does not swing the estimate.
BUSY_HISTORY = 5
#: How much of a file read's usual cost (decoding, converting, preparing) starts
#: before inference is expected back. 1 would have each frame ready just as it is
#: needed, but then its preparation runs wholly beside the model and, on 2 cores,
#: both slow down. Measured (vtest.avi, default settings, docs/performance-history.md):
#: half gave capture-to-publish p50 31 ms against 34, for about 9 % fewer frames per
#: second (still above the model's own series rate) and less CPU; 0 (read only once
#: inference is back) 32 ms, but a third fewer frames per second. Measured again
#: after the banded letterbox (2 interleaved pairs): 0 gave 27-28 ms against
#: 29.4-34.8, but 36-37 fps against 38-47, below the model's own rate: half stays.
READ_AHEAD_SHARE = 0.5
#: ... and this much earlier still: a little waiting in the slot is cheaper than a
#: model waiting for its frame.
READ_AHEAD_MARGIN_S = 0.0005

#: Source states reported in stats and STATUS=.
SOURCE_STARTING, SOURCE_OK, SOURCE_RETRYING, SOURCE_ENDED, SOURCE_UNAVAILABLE, SOURCE_CRASHED = (
    "starting", "ok", "retrying", "ended", "unavailable", "crashed")


class LatestFrameSlot:
    """Holds at most one frame: a new frame replaces one nobody took (counted as dropped),
    unless the producer asks to wait until it was taken (files: every frame counts)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._dropped = 0
        self._clock = clock
        self._taken_at: float | None = None  # when the consumer last took a frame
        self._busy: deque[float] = deque(maxlen=BUSY_HISTORY)  # take -> next get, seconds

    def put(self, frame: Frame, *, until_taken: threading.Event | None = None) -> bool:
        """Offer the newest frame; False (frame discarded) once the slot is closed.

        With `until_taken` (a stop event), first wait until the previous frame
        was taken, so none is dropped; setting the event gives up the wait.
        """
        with self._cond:
            if until_taken is not None:
                while self._frame is not None and not self._closed and not until_taken.is_set():
                    self._cond.wait(_STOP_POLL_S)
                if until_taken.is_set():
                    return False
            if self._closed:
                return False
            if self._frame is not None:
                self._dropped += 1
            self._frame = frame
            self._cond.notify_all()
            return True

    def wait_empty(self, stop: threading.Event) -> bool:
        """Wait until nobody's frame is waiting in the slot (a file reads at most one
        frame ahead of inference, so a frame's capture time is not stamped long before
        it is used); False when `stop` was set or the slot closed meanwhile."""
        with self._cond:
            while self._frame is not None and not self._closed and not stop.is_set():
                self._cond.wait(_STOP_POLL_S)
            return not (stop.is_set() or self._closed)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest frame, waiting up to `timeout` s; None on timeout or once closed and empty."""
        with self._cond:
            if self._taken_at is not None:  # back for the next frame: how long the last one took
                self._busy.append(self._clock() - self._taken_at)
                self._taken_at = None
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._taken_at = self._clock()
                self._cond.notify_all()  # a producer may wait for the slot to empty
            return frame

    def consumer_back_in(self) -> float:
        """Seconds until the consumer is expected to ask for the next frame (0: it is
        waiting, or nothing is known yet): the median of its last busy spells, less
        what it has already spent."""
        with self._cond:
            if self._taken_at is None or not self._busy:
                return 0.0
            return max(statistics.median(self._busy) - (self._clock() - self._taken_at), 0.0)

    def close(self) -> None:
        """Wake every waiter; a frame still in the slot can be taken, new ones are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    @property
    def dropped(self) -> int:
        """Frames replaced before anyone took them."""
        with self._cond:
            return self._dropped


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counters since the capture loop started."""

    frames: int = 0  # frames put into the slot
    dropped_frames: int = 0  # frames replaced in the slot before inference took them
    skipped_frames: int = 0  # live-source frames skipped to keep to max_fps
    corrupt_frames: int = 0  # frames the source could not decode (FrameError)
    source_errors: int = 0  # open failures, lost sources, ends of stream
    reopen_count: int = 0  # opens after the first successful one


@dataclass(slots=True)
class _SourceRun:
    """What happened during one open-read-close cycle of a source."""

    opened: bool = False
    good_frames: int = 0
    bad_frames: int = 0
    ended: bool = False


class CaptureLoop:
    """Reads frames from a source into a `LatestFrameSlot` in a background thread.

    `source_factory()` makes a fresh, unopened source for every (re)open.
    `max_fps` caps delivered frames (0: no cap): files are paced by waiting
    before each read and every frame read is processed (the capture waits for
    inference to take it); live sources are read at their own rate and the
    surplus is skipped or replaced, so frames stay fresh. `stop_at_end` ends the loop when a file or
    folder (not a live stream) runs out, instead of reopening it. Waits go through `sleeper(seconds) -> bool`
    (True: stop asked), by default `stop_event.wait`, so `stop()` is immediate;
    tests pass a fake `clock` and `sleeper`.
    """

    def __init__(
        self,
        source_factory: Callable[[], FrameSource],
        slot: LatestFrameSlot,
        *,
        max_fps: float,
        reopen_delay_s: float,
        reopen_delay_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], bool] | None = None,
        stop_event: threading.Event | None = None,
        stop_at_end: bool = False,
        wall_clock: Callable[[], float] = time.time,
        max_bad_frames: int = MAX_CONSECUTIVE_BAD_FRAMES,
    ):
        if max_fps < 0:
            raise ValueError(f"max_fps must be >= 0, got {max_fps}")
        if reopen_delay_s <= 0:
            raise ValueError(f"reopen_delay_s must be > 0, got {reopen_delay_s}")
        self._source_factory = source_factory
        self._slot = slot
        self._period = 1.0 / max_fps if max_fps > 0 else 0.0
        self._reopen_delay_s = reopen_delay_s
        self._reopen_delay_max_s = max(reopen_delay_max_s, reopen_delay_s)
        self._clock = clock
        self._stop_event = stop_event if stop_event is not None else threading.Event()
        self._sleeper = sleeper if sleeper is not None else self._stop_event.wait
        self._stop_at_end = stop_at_end
        self._wall_clock = wall_clock
        #: Work on each kept frame that needs no earlier frame, done here, on the
        #: capture thread, before the frame is handed over (`Pipeline.prepare`: the
        #: motion gate's thumbnail, the model's input): `prepare(frame, model_input=
        #: bool) -> Frame`, model_input False for a frame that may be replaced in the
        #: slot before inference takes it. Set it before `start()`.
        self.prepare: Callable[..., Frame] | None = None
        self._max_bad_frames = max_bad_frames

        self._lock = threading.Lock()
        self._counts = dict.fromkeys(CaptureStats.__dataclass_fields__, 0)
        self._seq = 0
        self._thread: threading.Thread | None = None
        #: Set once a source has opened.
        self.opened = threading.Event()
        #: Set when the loop has returned (stopped, the stream ended with stop_at_end,
        #: or the source can never work here: see `fatal_error`).
        self.finished = threading.Event()
        #: True once a file or folder ended and stop_at_end said to stop there.
        self.ended = False
        #: Set when the source raised SourceUnavailable: the loop gave up for good.
        self.fatal_error: SourceUnavailable | None = None
        #: Set when the loop itself died of an exception (a bug): the daemon must exit.
        self.crashed: BaseException | None = None
        self.last_error: str = ""
        #: One of the SOURCE_* states, for stats and STATUS=.
        self.state = SOURCE_STARTING
        #: The loop promises to show progress (a step ends) before this clock time.
        self._busy_until = clock() + STALL_S
        self.source_description: str = ""

    # --- control ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("CaptureLoop already started")
        self._thread = threading.Thread(target=self.run, name="edgepose-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end; it notices before its next read or at once while waiting."""
        self._stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the counters; safe to read from any thread."""
        with self._lock:
            counts = dict(self._counts)
        counts["dropped_frames"] = self._slot.dropped
        return CaptureStats(**counts)

    def healthy(self, now: float | None = None) -> bool:
        """False when the thread died, or one step (an open, a read, a wait) overran its
        allowance by STALL_S: a stuck camera read. A source that is down and being
        retried is healthy: it is a known, reported state."""
        if self.crashed is not None or (self._thread is not None and not self._thread.is_alive()
                                        and not self.finished.is_set()):
            return False
        if self.finished.is_set():
            return True
        return (self._clock() if now is None else now) <= self._busy_until

    def _allow(self, seconds: float) -> None:
        """The next step may take `seconds` (plus STALL_S) before the loop counts as stuck."""
        self._busy_until = self._clock() + seconds + STALL_S

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    # --- the loop --------------------------------------------------------------

    def run(self) -> None:
        """The thread body; call it directly to run the loop in the current thread."""
        delay = self._reopen_delay_s
        opened_before = False
        try:
            while not self._stop_event.is_set():
                outcome = self._run_source(opened_before)
                opened_before = opened_before or outcome.opened
                if outcome.good_frames:
                    delay = self._reopen_delay_s  # a working source earns a fresh back-off
                if self._stop_event.is_set():
                    break
                if self.fatal_error is not None:
                    self.state = SOURCE_UNAVAILABLE
                    break
                if outcome.ended and self._stop_at_end:
                    log.info("%s: end of stream", self.source_description)
                    self.ended = True
                    self.state = SOURCE_ENDED
                    break
                self.state = SOURCE_RETRYING
                log.info("reopening the source in %.1f s", delay)
                self._allow(delay)
                if self._sleeper(delay):
                    break
                delay = min(delay * 2, self._reopen_delay_max_s)
        except BaseException as exc:  # a bug in the loop itself: say so, the daemon exits
            self.crashed = exc
            self.state = SOURCE_CRASHED
            log.exception("the capture thread died")
        finally:
            self._slot.close()
            self.finished.set()

    def _run_source(self, opened_before: bool) -> _SourceRun:
        """Open one source and read it until it fails, ends, or stop is asked."""
        outcome = _SourceRun()
        source: FrameSource | None = None
        try:
            self._allow(0.0)
            source = self._source_factory()
            self.source_description = source.describe()
            source.open()
            outcome.opened = True
            if opened_before:
                self._count("reopen_count")
            log.info("capturing from %s", self.source_description)
            self.opened.set()
            self._read_frames(source, outcome)
        except SourceUnavailable as exc:
            self._count("source_errors")
            self.last_error = str(exc)
            self.fatal_error = exc
        except SourceError as exc:
            self._source_failed(str(exc), exc_info=False)
        except Exception as exc:  # a source bug or library surprise must not end capture
            self._source_failed(f"unexpected {type(exc).__name__}: {exc}", exc_info=True)
        finally:
            if source is not None:
                try:
                    source.close()
                except Exception:
                    log.warning("error while closing %s", self.source_description, exc_info=True)
        return outcome

    def _source_failed(self, message: str, *, exc_info: bool) -> None:
        self._count("source_errors")
        self.last_error = message
        log.warning("source failed: %s", message, exc_info=exc_info)

    def _file_frame_due(self, next_due: float, read_cost: float) -> bool:
        """Wait until a file's next frame is due; False when stopped meanwhile.

        A file is not real time: its frame is "captured" when it is read, so it is read
        just in time: at its max_fps slot, once inference took the last frame, and not
        much before inference is expected back (READ_AHEAD_SHARE). Reading earlier only
        makes the frame wait in the slot (latency); later, the model waits for it
        (throughput)."""
        if self._period:
            wait = next_due - self._clock()
            self._allow(max(wait, 0.0))
            if wait > 0 and self._sleeper(wait):
                return False
        self._allow(0.0)
        if not self._slot.wait_empty(self._stop_event):
            return False
        wait = self._slot.consumer_back_in() - READ_AHEAD_SHARE * read_cost - READ_AHEAD_MARGIN_S
        if wait > 0:
            self._allow(wait)
            if self._sleeper(wait):
                return False
        return True

    def _read_frames(self, source: FrameSource, outcome: _SourceRun) -> None:
        live = bool(getattr(source, "live", False))
        next_due = self._clock()
        bad_in_a_row = 0
        read_cost = 0.0  # the usual time from starting a read to a frame in the slot (s)
        while not self._stop_event.is_set():
            if not live and not self._file_frame_due(next_due, read_cost):
                return
            self._allow(0.0)
            read_started = self._clock()
            # A live source paced by max_fps: decode every frame (to stay current) but
            # convert to RGB only those that are kept.
            lazy = live and bool(self._period) and hasattr(source, "grab")
            try:
                rgb = source.grab() if lazy else source.read()
            except FrameError as exc:
                self._count("corrupt_frames")
                bad_in_a_row += 1
                # The first bad frame of each open is worth a WARNING (it names the
                # file or the stream); the rest are counted in stats, logged at DEBUG.
                outcome.bad_frames += 1
                log.log(logging.WARNING if outcome.bad_frames == 1 else logging.DEBUG,
                        "skipping a bad frame: %s", exc)
                if bad_in_a_row >= self._max_bad_frames:
                    raise SourceError(
                        f"{self.source_description}: {bad_in_a_row} bad frames in a row"
                    ) from exc
                continue
            if rgb is None:
                if self._stop_at_end and not live:  # a live stream that ends has failed
                    outcome.ended = True
                    return
                raise SourceError(f"{self.source_description}: end of stream")
            bad_in_a_row = 0
            now = self._clock()
            if self._period:
                if now < next_due:  # only live sources get here early
                    self._count("skipped_frames")
                    continue
                # Slots on a fixed grid keep the average rate exact despite jitter;
                # after a stall, start from now rather than catching up in a burst.
                next_due = max(next_due + self._period, now)
            if lazy:
                try:
                    rgb = source.convert(rgb)
                except FrameError as exc:
                    self._count("corrupt_frames")
                    log.debug("skipping a frame that cannot be converted: %s", exc)
                    continue
            frame = Frame(rgb=rgb, seq=self._seq, captured_at=self._wall_clock(), captured_mono=now,
                          inference_rgb=getattr(source, "last_lores", None),
                          scene_cut=bool(getattr(source, "scene_cut", False)))
            if self.prepare is not None:
                # The model's input only for a frame that will be taken, not replaced: a
                # file's always; a live one when inference is back before the next is due
                # (a live source without max_fps: never, its next frame's time is unknown).
                taken = not live or self._slot.consumer_back_in() < self._period
                frame = self.prepare(frame, model_input=taken)
            # A smoothed cost (a slow read must not make the next one early by much).
            cost = self._clock() - read_started
            read_cost = cost if not read_cost else 0.8 * read_cost + 0.2 * cost
            self._seq += 1
            outcome.good_frames += 1
            self.state = SOURCE_OK
            self._count("frames")
            # A file or folder is not real time: wait for inference to take each
            # frame instead of dropping it. A live source keeps only the newest.
            self._allow(0.0)
            self._slot.put(frame, until_taken=None if live else self._stop_event)
