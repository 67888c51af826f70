"""The latest-frame slot and the capture loop, driven by fake sources and a fake clock."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgepose import capture
from edgepose.capture import CaptureLoop, CaptureStats, LatestFrameSlot
from edgepose.core import Frame
from edgepose.errors import FrameError, SourceError, SourceUnavailable
from edgepose.sources import DemoSource

WAIT_S = 10.0  # generous upper bound for real-thread handshakes; never a sleep


def rgb(value: int) -> np.ndarray:
    return np.full((2, 3, 3), value, np.uint8)


def frame(seq: int) -> Frame:
    return Frame(rgb=rgb(seq), seq=seq, captured_at=0.0)


# --- fakes ---------------------------------------------------------------------------------


class FakeTime:
    """A clock that moves only when the loop sleeps (or a source says time passed)."""

    def __init__(self, stop: threading.Event, max_sleeps: int = 1000):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.stop = stop
        self.max_sleeps = max_sleeps

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        if len(self.sleeps) >= self.max_sleeps:
            self.stop.set()
        return self.stop.is_set()


def reads_take(fake_time: FakeTime, seconds: float, *, stop_after: int):
    """A FakeSource `on_read`: each read moves the fake clock by `seconds` (a camera's
    frame interval, or a slow decode); the loop is stopped after `stop_after` reads."""

    def on_read(source) -> None:
        fake_time.now += seconds
        if source.reads >= stop_after:
            fake_time.stop.set()

    return on_read


class FakeSource:
    """Plays a script: arrays are frames, None ends the stream, exceptions are raised.

    `on_read` is called after every read (tests use it to move the fake clock or
    stop the loop); `reads` counts them.
    """

    def __init__(self, script, *, live=False, open_error: Exception | None = None, on_read=None):
        self.script = list(script)
        self.live = live
        self.open_error = open_error
        self.on_read = on_read
        self.reads = 0
        self.opened = self.closed = False

    def open(self):
        if self.open_error is not None:
            raise self.open_error
        self.opened = True

    def read(self):
        self.reads += 1
        try:
            if not self.script:
                return None
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        finally:
            if self.on_read:
                self.on_read(self)

    def close(self):
        self.closed = True

    def describe(self):
        return "fake source"


class RecordingSlot(LatestFrameSlot):
    """A slot that also remembers every frame offered, so a test needs no consumer."""

    def __init__(self):
        super().__init__()
        self.offered: list[Frame] = []

    def put(self, frame: Frame, *, until_taken=None) -> bool:
        self.offered.append(frame)
        return super().put(frame)  # never waits: nothing takes frames here

    def wait_empty(self, stop) -> bool:
        return not stop.is_set()  # nothing takes frames here: never wait for it


def test_a_producer_can_wait_until_its_frame_is_taken():
    slot, stop = LatestFrameSlot(), threading.Event()
    assert slot.put(frame(0), until_taken=stop)
    done = threading.Event()
    producer = threading.Thread(target=lambda: (slot.put(frame(1), until_taken=stop), done.set()))
    producer.start()
    assert not done.wait(0.3), "the second frame must wait for the first to be taken"
    assert slot.get(timeout=1).seq == 0
    assert done.wait(5) and slot.get(timeout=1).seq == 1
    assert slot.dropped == 0
    producer.join()


def test_a_waiting_producer_gives_up_when_stopped():
    slot, stop = LatestFrameSlot(), threading.Event()
    slot.put(frame(0))
    result = []
    producer = threading.Thread(target=lambda: result.append(slot.put(frame(1), until_taken=stop)))
    producer.start()
    stop.set()
    producer.join(5)
    assert result == [False] and slot.get(timeout=1).seq == 0


def make_loop(
    factory, *, stop, fake_time=None, max_fps=0.0, delay=1.0, delay_max=8.0, slot=None, **kw
):
    fake_time = fake_time or FakeTime(stop)
    return CaptureLoop(
        factory,
        slot if slot is not None else RecordingSlot(),
        max_fps=max_fps,
        reopen_delay_s=delay,
        reopen_delay_max_s=delay_max,
        clock=fake_time.clock,
        sleeper=fake_time.sleep,
        stop_event=stop,
        wall_clock=lambda: 1234.5,
        **kw,
    )


def factory_of(*sources):
    """A source factory handing out the given sources in turn (the last one repeats)."""
    made = list(sources)
    created = []

    def factory():
        source = made.pop(0) if len(made) > 1 else made[0]
        created.append(source)
        return source

    factory.created = created
    return factory


# --- the slot --------------------------------------------------------------------------------


def test_slot_keeps_only_the_newest_frame_and_counts_the_stale_ones():
    slot = LatestFrameSlot()
    for seq in range(3):
        slot.put(frame(seq))
    assert slot.get(timeout=0).seq == 2
    assert slot.dropped == 2
    assert slot.get(timeout=0) is None  # taken: empty again
    slot.put(frame(3))
    assert slot.get(timeout=0).seq == 3
    assert slot.dropped == 2  # taken in time: not dropped


def test_slot_close_wakes_a_waiting_reader():
    slot = LatestFrameSlot()
    waiting = threading.Event()
    result = []

    def reader():
        waiting.set()
        result.append(slot.get(timeout=WAIT_S))

    thread = threading.Thread(target=reader)
    thread.start()
    assert waiting.wait(WAIT_S)
    slot.close()
    thread.join(WAIT_S)
    assert not thread.is_alive() and result == [None]


def test_slot_hands_over_a_frame_between_threads():
    slot = LatestFrameSlot()
    result = []
    thread = threading.Thread(target=lambda: result.append(slot.get(timeout=WAIT_S)))
    thread.start()
    slot.put(frame(7))
    thread.join(WAIT_S)
    assert result[0].seq == 7


def test_closed_slot_refuses_new_frames_but_gives_the_last_one():
    slot = LatestFrameSlot()
    slot.put(frame(1))
    slot.close()
    assert slot.put(frame(2)) is False
    assert slot.get(timeout=0).seq == 1
    assert slot.get(timeout=0) is None and slot.closed


# --- the capture loop ----------------------------------------------------------------------


def test_frames_get_increasing_seq_and_capture_time():
    stop = threading.Event()
    source = FakeSource([rgb(i) for i in range(5)], on_read=lambda s: s.reads >= 5 and stop.set())
    loop = make_loop(factory_of(source), stop=stop)
    loop.run()
    offered = loop._slot.offered
    assert [f.seq for f in offered] == [0, 1, 2, 3, 4]
    assert all(f.captured_at == 1234.5 for f in offered)
    assert [int(f.rgb[0, 0, 0]) for f in offered] == [0, 1, 2, 3, 4]
    assert loop.stats == CaptureStats(frames=5, dropped_frames=4)
    assert source.closed and loop.finished.is_set() and loop._slot.closed


def test_corrupt_frames_are_counted_and_skipped():
    stop = threading.Event()
    script = [rgb(1), FrameError("bad"), FrameError("bad"), rgb(2)]
    source = FakeSource(script, on_read=lambda s: s.reads >= 4 and stop.set())
    loop = make_loop(factory_of(source), stop=stop)
    loop.run()
    assert [int(f.rgb[0, 0, 0]) for f in loop._slot.offered] == [1, 2]
    stats = loop.stats
    assert stats.corrupt_frames == 2 and stats.source_errors == 0 and stats.frames == 2


def test_too_many_bad_frames_in_a_row_reopen_the_source():
    stop = threading.Event()
    fake_time = FakeTime(stop, max_sleeps=1)
    broken = FakeSource([FrameError("bad")] * 3)
    loop = make_loop(factory_of(broken), stop=stop, fake_time=fake_time, max_bad_frames=3)
    loop.run()
    assert loop.stats.corrupt_frames == 3 and loop.stats.source_errors == 1
    assert broken.closed and "3 bad frames in a row" in loop.last_error


def test_ended_stream_is_reopened_with_doubling_back_off_reset_by_a_good_frame():
    stop = threading.Event()
    fake_time = FakeTime(stop, max_sleeps=7)
    ends = [FakeSource([]) for _ in range(4)]  # each ends at once: no good frame
    good_then_end = FakeSource([rgb(1)])
    fails = [FakeSource([]) for _ in range(3)]
    loop = make_loop(
        factory_of(*ends, good_then_end, *fails),
        stop=stop,
        fake_time=fake_time,
        delay=1.0,
        delay_max=4.0,
    )
    loop.run()
    # four failures: 1, 2, 4, then capped at 4; after the good frame back to 1, 2
    assert fake_time.sleeps == [1.0, 2.0, 4.0, 4.0, 1.0, 2.0, 4.0]
    stats = loop.stats
    assert stats.source_errors == 7 and stats.reopen_count == 6 and stats.frames == 1  # 7 opens
    assert "end of stream" in loop.last_error


def test_source_that_cannot_open_is_retried_and_never_ends_the_loop():
    stop = threading.Event()
    fake_time = FakeTime(stop)
    attempts = [
        FakeSource([], open_error=SourceError("no camera")),
        FakeSource([], open_error=SourceError("no camera")),
        FakeSource([], open_error=RuntimeError("library surprise")),
        FakeSource([rgb(5)], on_read=lambda s: stop.set()),
    ]
    factory = factory_of(*attempts)
    loop = make_loop(factory, stop=stop, fake_time=fake_time)
    loop.run()
    assert fake_time.sleeps == [1.0, 2.0, 4.0]
    stats = loop.stats
    assert stats.source_errors == 3 and stats.frames == 1
    assert stats.reopen_count == 0  # the first successful open is not a reopen
    assert loop.opened.is_set()


def test_a_missing_video_file_ends_the_loop_at_once_instead_of_retrying(tmp_path):
    """A camera or a stream may come back; a file that is not there will not."""
    from edgepose.sources import VideoFileSource

    stop = threading.Event()
    fake_time = FakeTime(stop)
    loop = make_loop(lambda: VideoFileSource(tmp_path / "absent.mp4", loop=False), stop=stop,
                     fake_time=fake_time)
    loop.run()
    assert fake_time.sleeps == [] and loop.finished.is_set()
    assert isinstance(loop.fatal_error, SourceUnavailable) and "no such file" in loop.last_error
    assert loop.state == capture.SOURCE_UNAVAILABLE and loop.stats.source_errors == 1


def test_unexpected_exception_while_reading_is_counted_and_the_source_reopened():
    stop = threading.Event()
    fake_time = FakeTime(stop)
    crashing = FakeSource([rgb(1), ZeroDivisionError("bug in a source")])
    healthy = FakeSource([rgb(2)], on_read=lambda s: stop.set())
    loop = make_loop(factory_of(crashing, healthy), stop=stop, fake_time=fake_time)
    loop.run()
    assert crashing.closed
    assert [int(f.rgb[0, 0, 0]) for f in loop._slot.offered] == [1, 2]
    assert loop.stats.source_errors == 1 and loop.stats.reopen_count == 1
    assert fake_time.sleeps == [1.0]


def test_back_off_cap_below_the_first_delay_means_a_constant_delay():
    stop = threading.Event()
    fake_time = FakeTime(stop, max_sleeps=3)
    loop = make_loop(
        factory_of(FakeSource([])), stop=stop, fake_time=fake_time, delay=2.0, delay_max=1.0
    )
    loop.run()
    assert fake_time.sleeps == [2.0, 2.0, 2.0]


def test_failing_factory_is_retried_too():
    stop = threading.Event()
    fake_time = FakeTime(stop, max_sleeps=2)

    def factory():
        raise OSError("device node vanished")

    loop = make_loop(factory, stop=stop, fake_time=fake_time)
    loop.run()
    assert loop.stats.source_errors == 2


def test_stop_at_end_delivers_every_frame_of_a_file_then_finishes():
    stop = threading.Event()
    source = FakeSource([rgb(1), rgb(2), rgb(3)])
    slot = LatestFrameSlot()
    loop = make_loop(factory_of(source), stop=stop, slot=slot, stop_at_end=True)
    thread = threading.Thread(target=loop.run)
    thread.start()
    seqs = []
    while (taken := slot.get(timeout=5)) is not None:
        seqs.append(taken.seq)
    thread.join(5)
    assert seqs == [0, 1, 2], "a file is not real time: no frame is dropped"
    assert loop.finished.is_set() and slot.closed and loop.ended
    assert loop.stats.source_errors == 0 and loop.stats.dropped_frames == 0


def test_frame_rate_cap_paces_files_by_waiting():
    stop = threading.Event()
    fake_time = FakeTime(stop)

    slow_read = reads_take(fake_time, 0.03, stop_after=4)  # each read takes 30 ms of fake time
    source = FakeSource([rgb(i) for i in range(4)], on_read=slow_read)
    loop = make_loop(factory_of(source), stop=stop, fake_time=fake_time, max_fps=10.0)
    loop.run()
    # Reads at t = 0, 0.1, 0.2, 0.3: wait out the rest of each 100 ms slot.
    assert fake_time.sleeps == [0.07, 0.07, 0.07]
    assert loop.stats.frames == 4


def run_camera_at_8_fps(source_class: type[FakeSource]) -> tuple[CaptureLoop, FakeSource, FakeTime]:
    """96 frames of a 32 fps camera (binary fractions keep the fake clock exact) through
    a loop capped at 8 fps."""
    stop = threading.Event()
    fake_time = FakeTime(stop)
    source = source_class([rgb(i % 256) for i in range(96)], live=True,
                          on_read=reads_take(fake_time, 1 / 32, stop_after=96))
    loop = make_loop(factory_of(source), stop=stop, fake_time=fake_time, max_fps=8.0)
    loop.run()
    return loop, source, fake_time


def test_frame_rate_cap_skips_surplus_frames_of_live_sources():
    loop, _, fake_time = run_camera_at_8_fps(FakeSource)
    stats = loop.stats
    assert fake_time.sleeps == []  # live sources are never waited for
    # The first frame, then the first one of each 1/8 s slot: t = 4/32, 8/32, ... 96/32.
    assert stats.frames == 1 + 24 and stats.skipped_frames == 96 - 25
    assert [f.seq for f in loop._slot.offered] == list(range(25))


class GrabbingSource(FakeSource):
    """A live source that decodes in grab() and converts to RGB in convert(), like PyAV's."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.converted = 0

    def grab(self):
        return self.read()

    def convert(self, frame):
        self.converted += 1
        return frame


def test_skipped_live_frames_are_never_converted_to_rgb():
    loop, source, _ = run_camera_at_8_fps(GrabbingSource)
    assert loop.stats.frames == 25 and loop.stats.skipped_frames == 71
    assert source.converted == 25, "only the frames kept are converted"


def test_no_cap_delivers_every_frame_without_waiting():
    stop = threading.Event()
    fake_time = FakeTime(stop)
    source = FakeSource([rgb(i) for i in range(10)], on_read=lambda s: s.reads >= 10 and stop.set())
    loop = make_loop(factory_of(source), stop=stop, fake_time=fake_time, max_fps=0)
    loop.run()
    assert loop.stats.frames == 10 and fake_time.sleeps == []


@pytest.mark.parametrize("kwargs", [dict(max_fps=-1), dict(reopen_delay_s=0)])
def test_rejects_nonsense_settings(kwargs):
    settings = dict(max_fps=10, reopen_delay_s=1.0, reopen_delay_max_s=30.0) | kwargs
    with pytest.raises(ValueError):
        CaptureLoop(lambda: None, LatestFrameSlot(), **settings)


# --- real threads --------------------------------------------------------------------------


def test_thread_delivers_frames_to_a_consumer_and_stops_on_request():
    source = FakeSource([rgb(i % 256) for i in range(1000)])
    slot = LatestFrameSlot()
    loop = CaptureLoop(
        factory_of(source), slot, max_fps=0, reopen_delay_s=1.0, reopen_delay_max_s=2.0
    )
    loop.start()
    try:
        got = [slot.get(timeout=WAIT_S) for _ in range(3)]
        assert [f.seq for f in got] == [0, 1, 2]  # a file: each frame waits to be taken
    finally:
        loop.stop()
        assert loop.join(WAIT_S)
    assert source.closed and slot.closed


def test_stop_cuts_a_long_back_off_short():
    attempted = threading.Event()

    def factory():
        attempted.set()
        return FakeSource([], open_error=SourceError("camera unplugged"))

    loop = CaptureLoop(
        factory, LatestFrameSlot(), max_fps=0, reopen_delay_s=3600, reopen_delay_max_s=3600
    )
    loop.start()
    assert attempted.wait(WAIT_S)
    loop.stop()
    assert loop.join(WAIT_S)  # did not sit out the hour
    assert loop.stats.source_errors == 1


def test_capture_from_the_demo_photos():
    slot = LatestFrameSlot()
    loop = CaptureLoop(lambda: DemoSource(frames_per_photo=2), slot, max_fps=0, reopen_delay_s=1.0,
                       reopen_delay_max_s=2.0)
    loop.start()
    try:
        assert loop.opened.wait(WAIT_S)
        frames = [slot.get(timeout=WAIT_S) for _ in range(5)]
    finally:
        loop.stop()
        assert loop.join(WAIT_S)
    assert all(f is not None and f.rgb.shape[2] == 3 and f.rgb.dtype == np.uint8 for f in frames)
    assert [f.seq for f in frames] == list(range(5)), "a folder's frames are all taken, in order"
    assert loop.source_description == "demo photos"
    # The source's scene cuts reach the frames: each photo's first frame starts a new scene.
    assert [f.scene_cut for f in frames] == [True, False, True, False, True]


# --- reading files just in time ------------------------------------------------------------


def test_the_slot_predicts_when_its_consumer_is_back_from_its_last_busy_spells():
    now = [0.0]
    slot = LatestFrameSlot(clock=lambda: now[0])
    assert slot.consumer_back_in() == 0.0, "nothing known yet: read at once"
    for seq, busy in enumerate([0.020, 0.030, 0.022]):  # take, work `busy` s, come back
        slot.put(frame(seq))
        assert slot.get(timeout=0).seq == seq
        now[0] += busy
    slot.put(frame(3))
    assert slot.get(timeout=0).seq == 3  # spells so far 20, 30, 22 ms: the median is 22
    now[0] += 0.005
    assert slot.consumer_back_in() == pytest.approx(0.017)
    now[0] += 0.040
    assert slot.consumer_back_in() == 0.0, "late already: read at once"


class BusyConsumerSlot(RecordingSlot):
    """A slot whose consumer is always `back_in` seconds from asking again."""

    def __init__(self, back_in: float):
        super().__init__()
        self.back_in = back_in

    def consumer_back_in(self) -> float:
        return self.back_in


def test_a_file_is_read_just_before_inference_is_back_for_it():
    """A frame read early only waits in the slot (its latency); the wait before each read
    is what inference still needs less a share of what a read (and its preparation)
    costs."""
    stop = threading.Event()
    fake_time = FakeTime(stop)

    source = FakeSource([rgb(i) for i in range(3)], on_read=reads_take(fake_time, 0.004, stop_after=3))
    loop = make_loop(factory_of(source), stop=stop, fake_time=fake_time, slot=BusyConsumerSlot(0.020))
    loop.run()
    margin, share = capture.READ_AHEAD_MARGIN_S, capture.READ_AHEAD_SHARE
    # The first read's cost is not known yet; after it, 4 ms is.
    after_first = round(0.020 - share * 0.004 - margin, 6)
    assert fake_time.sleeps == [round(0.020 - margin, 6), after_first, after_first]
    assert loop.stats.frames == 3


def test_live_frames_are_never_held_back_for_inference():
    stop = threading.Event()
    fake_time = FakeTime(stop)
    source = FakeSource([rgb(i) for i in range(5)], live=True,
                        on_read=lambda s: s.reads >= 5 and stop.set())
    loop = make_loop(factory_of(source), stop=stop, fake_time=fake_time, slot=BusyConsumerSlot(0.5))
    loop.run()
    assert fake_time.sleeps == [] and loop.stats.frames == 5


def test_the_model_input_is_prepared_ahead_only_for_frames_that_will_be_taken():
    """Files: every frame. Live: only when inference is back before the next frame is due
    (else the frame would likely be replaced in the slot, its preparation wasted)."""
    asked = []

    def prepare(frame, *, model_input):
        asked.append(model_input)
        return frame

    def run(live: bool, back_in: float) -> list[bool]:
        asked.clear()
        stop = threading.Event()
        fake_time = FakeTime(stop)

        source = FakeSource([rgb(i) for i in range(3)], live=live,
                            on_read=reads_take(fake_time, 1 / 8, stop_after=3))
        loop = make_loop(factory_of(source), stop=stop, fake_time=fake_time, max_fps=8.0,
                         slot=BusyConsumerSlot(back_in))
        loop.prepare = prepare
        loop.run()
        return list(asked)

    assert run(live=False, back_in=0.5) == [True, True, True]
    assert run(live=True, back_in=0.05) == [True, True, True]  # back before the next 1/8 s frame
    assert run(live=True, back_in=0.5) == [False, False, False]
