"""`edgepose eval-falls`: score fall detection on labelled clips, videos or recordings.

A *set* is a folder (or a manifest file in it). Its ``clips.json`` (``{"clips": [{"path", "label",
"fall_at_s", "note", "people"}]}``, paths relative to the folder) says what
each clip is; without one, every video and ``*.jsonl`` recording under a
sub-folder named ``fall``/``falls`` is a fall clip and under ``adl``,
``no_fall``, ``normal`` or ``daily`` a daily-activity clip (so a user can drop
their own recordings into two folders). ``fall_at_s`` (optional) is when the
fall happens, seconds from the clip's start; ``people`` (optional) how many
people the clip shows, for the person-count figures.

How a clip runs, as a camera node would see it:

- a **video** goes through the daemon's own pipeline (`daemon.build_pipeline`:
  motion gate, the model, exclusion zones, tracker, events, smoother), decoded
  by the file source and *paced like a camera* at ``fps``: at every tick of
  1/fps s the newest frame of the video is taken, and the clock the stages see
  is that camera clock (so a run takes the model's time, not the clip's);
- a **recording** (``poses`` messages, JSON Lines: ``run --record``,
  ``mosquitto_sub``) goes through `replay.ReplayPipeline`, sampled the same way;
- staged clips stop soon after the fall, so the last frame (or pose) is held
  for ``hold_s`` more seconds, as a camera keeps seeing a person who stays down.

Per clip: whether ``fall_detected`` was raised, when (seconds after the clip's
start, after the labelled fall and after the clip's last frame), and for
videos how often the model's person count was right. The totals are what the
fall issue asks of a detector: falls raised, false alarms, time to alert.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .core import Frame
from .errors import RecordingError, SourceError, UsageError
from .events import FALL_DETECTED

#: File suffixes run as videos; ``.jsonl`` runs as a recording.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
RECORDING_SUFFIX = ".jsonl"
#: Folder names that label the clips under them, for a set without clips.json.
FALL_FOLDERS = ("fall", "falls")
ADL_FOLDERS = ("adl", "adls", "no_fall", "no-fall", "nofall", "normal", "daily")
LABELS = ("fall", "adl")
#: Event ids in an evaluation: ``<node>-eval-<n>``.
EVAL_BOOT = "eval"
#: The wall clock a clip starts at (only copied into events).
EVAL_EPOCH = 1_700_000_000.0
#: The rate a held last frame repeats at when clips run as recorded (fps 0).
HOLD_FPS = 10.0


@dataclass(frozen=True, slots=True)
class Clip:
    path: Path
    label: str  # "fall" | "adl"
    fall_at_s: float | None = None  # seconds from the clip's start, when labelled
    note: str = ""
    people: int | None = None  # people the clip shows, when known

    @property
    def kind(self) -> str:
        return "recording" if self.path.suffix.lower() == RECORDING_SUFFIX else "video"


@dataclass(frozen=True, slots=True)
class ClipResult:
    clip: Clip
    duration_s: float  # the clip itself, without the hold
    frames: int  # frames (or poses messages) taken at the camera rate, hold included
    model_frames: int  # frames the model ran on (videos; the rest were gated)
    falls: tuple[float, ...]  # times of fall_detected, seconds from the clip's start
    confidence: float | None  # of the first fall_detected
    reason: str | None  # of the first fall_detected, when the detector gives one
    #: Person count on the frames the model ran on (videos with `people`): how many
    #: were exactly right, fewer, more; and the most the debounced count ever said.
    count_right: int = 0
    count_under: int = 0
    count_over: int = 0
    debounced_max: int = 0

    @property
    def raised(self) -> bool:
        return bool(self.falls)

    @property
    def first_fall_s(self) -> float | None:
        return self.falls[0] if self.falls else None

    @property
    def delay_s(self) -> float | None:
        """From the labelled fall to the first fall_detected."""
        if not self.falls or self.clip.fall_at_s is None:
            return None
        return self.falls[0] - self.clip.fall_at_s

    @property
    def after_end_s(self) -> float | None:
        """From the clip's last frame to the first fall_detected (negative: before it)."""
        return None if not self.falls else self.falls[0] - self.duration_s

    def as_dict(self) -> dict[str, Any]:
        c = self.clip
        r = _round
        return {
            "path": str(c.path), "label": c.label, "kind": c.kind, "note": c.note, "people": c.people,
            "fall_at_s": c.fall_at_s, "duration_s": r(self.duration_s), "frames": self.frames,
            "model_frames": self.model_frames, "raised": self.raised,
            "falls": [r(t) for t in self.falls], "first_fall_s": r(self.first_fall_s),
            "delay_s": r(self.delay_s), "after_end_s": r(self.after_end_s),
            "confidence": self.confidence, "reason": self.reason,
            "count_right": self.count_right, "count_under": self.count_under,
            "count_over": self.count_over, "debounced_max": self.debounced_max,
        }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


# --- sets -----------------------------------------------------------------------


def load_set(folder: Path) -> list[Clip]:
    """The clips of a set folder (see the module doc); UsageError naming what is wrong."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".json":  # clips.json, or another manifest beside it
        return _clips_from_manifest(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder of clips")
    manifest = folder / "clips.json"
    if manifest.is_file():
        return _clips_from_manifest(manifest)
    clips = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not _runnable(path):
            continue
        parents = {p.name.lower() for p in path.relative_to(folder).parents}
        label = "fall" if parents & set(FALL_FOLDERS) else "adl" if parents & set(ADL_FOLDERS) else None
        if label is not None:
            clips.append(Clip(path, label))
    if not clips:
        raise UsageError(f"{folder}: no clips.json, and no videos or .jsonl recordings under "
                         f"folders named {FALL_FOLDERS[0]}/ or {ADL_FOLDERS[0]}/")
    return clips


def _runnable(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix == RECORDING_SUFFIX or suffix in VIDEO_SUFFIXES


def _clips_from_manifest(manifest: Path) -> list[Clip]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data["clips"]
        if not isinstance(entries, list):
            raise TypeError("'clips' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{manifest}: not a clips manifest ({exc})") from None
    clips = []
    for i, entry in enumerate(entries):
        where = f"{manifest}: clip {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise UsageError(f"{where}: needs a 'path'")
        label = entry.get("label")
        if label not in LABELS:
            raise UsageError(f"{where}: 'label' must be one of {', '.join(LABELS)}, not {label!r}")
        fall_at = entry.get("fall_at_s")
        if fall_at is not None and not (isinstance(fall_at, (int, float)) and math.isfinite(fall_at)
                                        and fall_at >= 0):
            raise UsageError(f"{where}: 'fall_at_s' must be a number >= 0 or null")
        people = entry.get("people")
        if people is not None and not (isinstance(people, int) and people >= 0):
            raise UsageError(f"{where}: 'people' must be a whole number >= 0 or null")
        path = (manifest.parent / entry["path"]).resolve()
        if manifest.parent.resolve() not in path.parents:
            raise UsageError(f"{where}: path {entry['path']!r} leaves the set's folder")
        if not _runnable(path):
            raise UsageError(f"{where}: {entry['path']!r} is neither a video nor a .jsonl recording")
        clips.append(Clip(path, label, None if fall_at is None else float(fall_at),
                          str(entry.get("note", "")), people))
    return clips


# --- pacing ----------------------------------------------------------------------


def camera_ticks(times: Iterable[float], fps: float) -> Iterator[tuple[int, float]]:
    """(index, tick time) of the items a camera at `fps` would deliver: at each tick
    k / fps (k = 0, 1, ...) the newest item whose time (seconds from the start,
    non-decreasing) is at or before the tick. An item may serve several ticks
    when the source is slower than the camera, or none when it is faster.
    `fps` 0: every item, at its own time (a recording as it was recorded)."""
    if fps <= 0:
        yield from ((index, t) for index, t in enumerate(times))
        return
    period = 1.0 / fps
    tick = 0
    previous: tuple[int, float] | None = None
    for index, t in enumerate(times):
        while previous is not None and tick * period < t - 1e-9:
            yield previous[0], tick * period
            tick += 1
        previous = (index, t)
    if previous is not None:
        while tick * period <= previous[1] + 1e-9:
            yield previous[0], tick * period
            tick += 1


def _hold_ticks(last_tick_s: float, hold_s: float, fps: float) -> Iterator[float]:
    period = 1.0 / (fps if fps > 0 else HOLD_FPS)
    for k in range(1, int(round(hold_s / period)) + 1):
        yield last_tick_s + k * period


# --- running clips -----------------------------------------------------------------


class _Tally:
    """What one clip raised, frame by frame."""

    def __init__(self, clip: Clip):
        self.clip = clip
        self.falls: list[float] = []
        self.first: Any = None
        self.frames = self.model_frames = 0
        self.right = self.under = self.over = self.debounced = 0

    def events(self, events: Iterable[Any], t: float) -> None:
        for event in events:
            if event.type == FALL_DETECTED:
                self.falls.append(t)
                self.first = self.first or event

    def counted(self, found: int, debounced: int | None) -> None:
        self.model_frames += 1
        people = self.clip.people
        if people is not None:
            if found == people:
                self.right += 1
            elif found < people:
                self.under += 1
            else:
                self.over += 1
        if debounced is not None:
            self.debounced = max(self.debounced, debounced)

    def result(self, duration_s: float) -> ClipResult:
        fields = self.first.fields if self.first is not None else {}
        return ClipResult(self.clip, duration_s, self.frames, self.model_frames, tuple(self.falls),
                          fields.get("confidence"), fields.get("cause"), self.right, self.under,
                          self.over, self.debounced)


def run_recording(clip: Clip, config: Config, *, fps: float, hold_s: float) -> ClipResult:
    """A recording of poses messages through `ReplayPipeline`, at the camera rate."""
    from .replay import ReplayPipeline, read_recording

    try:
        with open(clip.path, "rb") as stream:
            frames = list(read_recording(stream))
    except OSError as exc:
        raise RecordingError(f"{clip.path}: cannot read: {exc.strerror or exc}") from None
    except RecordingError as exc:
        raise RecordingError(f"{clip.path}: {exc}") from None
    tally = _Tally(clip)
    if not frames:
        return tally.result(0.0)
    pipeline = ReplayPipeline(config, node_id="eval")
    times = [f.wall_time - frames[0].wall_time for f in frames]
    schedule = [(frames[i], t) for i, t in camera_ticks(times, fps)]
    last_frame, last_tick = schedule[-1]
    schedule += [(last_frame, t) for t in _hold_ticks(last_tick, hold_s, fps)]
    for frame, t in schedule:
        poses, events = pipeline.process(dataclasses.replace(frame, wall_time=EVAL_EPOCH + t))
        tally.frames += 1
        tally.counted(len(poses), None)  # people after the exclusion zones, as published
        tally.events(events, t)
    return tally.result(times[-1])


def video_pipeline(config: Config, estimator):
    """The daemon's pipeline without its outputs: gate, model and stages, on the caller's thread."""
    from .daemon import build_pipeline

    quiet = dataclasses.replace(
        config,
        mqtt=dataclasses.replace(config.mqtt, enabled=False),
        snapshots=dataclasses.replace(config.snapshots, enabled=False),
    )
    return build_pipeline(quiet, estimator, publisher=None, capture=None, started_at=0.0,
                          boot=EVAL_BOOT, threaded=False)


class _RecordingEstimator:
    """The estimator, keeping what it found on each frame as a ``poses`` message (untracked,
    unsmoothed: what the stages start from), so a run can be replayed without the model."""

    def __init__(self, estimator, lines: list[str]):
        self._estimator = estimator
        self._lines = lines
        self.info = estimator.info
        self.frame: Frame | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._estimator, name)

    def estimate(self, rgb: np.ndarray, *args: Any):
        from .core import FrameResult
        from .messages import poses_message

        poses = self._estimator.estimate(rgb, *args)
        assert self.frame is not None
        message = poses_message(FrameResult(self.frame, poses, 0.0, self.info.label), node_id="eval")
        self._lines.append(message.payload.decode("utf-8"))
        return poses


def run_video(clip: Clip, config: Config, estimator, *, fps: float, hold_s: float,
              record: list[str] | None = None) -> ClipResult:
    """A video through the daemon's pipeline, decoded by the file source and paced like a camera.
    `record` gets the model's poses on every frame it ran on, as poses messages."""
    from .sources import VideoFileSource

    source = VideoFileSource(clip.path, loop=False)
    source.open()
    estimator.reset()
    recorder = _RecordingEstimator(estimator, record) if record is not None else None
    pipeline = video_pipeline(config, recorder or estimator)
    tally = _Tally(clip)
    grabbed: list[Any] = []  # decoded, not yet converted; dropped once the camera is past them
    times: list[float] = []

    def decoded() -> Iterator[float]:
        while (frame := source.grab()) is not None:
            grabbed.append(frame)
            times.append(float(frame.time or 0.0))
            yield times[-1] - times[0]

    def run(rgb: np.ndarray, t: float) -> None:
        frame = Frame(rgb, tally.frames, EVAL_EPOCH + t, t)
        if recorder is not None:
            recorder.frame = frame
        result = pipeline.process(frame)
        tally.frames += 1
        if result is None:  # gated: nothing changed
            return
        tally.counted(len(result.poses), None if result.state is None else result.state.person_count)
        tally.events(result.events, t)

    try:
        shown: tuple[int, np.ndarray] | None = None
        tick = 0.0
        for index, tick in camera_ticks(decoded(), fps):
            if shown is None or shown[0] != index:
                shown = (index, source.convert(grabbed[index]))
                grabbed[: index + 1] = [None] * (index + 1)
            run(shown[1], tick)
        if shown is not None:
            for t in _hold_ticks(tick, hold_s, fps):
                run(shown[1], t)
    finally:
        source.close()
        pipeline.close()
    return tally.result(times[-1] - times[0] if times else 0.0)


# --- the whole set -------------------------------------------------------------------


@dataclass
class Runner:
    """Runs clips one after another; opens the model once, for the first video."""

    config: Config
    fps: float
    hold_s: float
    record_dir: Path | None = None  # where the model's poses of each video go, as recordings
    estimator: Any = None
    _open: Callable[[], Any] | None = field(default=None, repr=False)

    def __call__(self, clip: Clip) -> ClipResult:
        if clip.kind == "recording":
            return run_recording(clip, self.config, fps=self.fps, hold_s=self.hold_s)
        if self.estimator is None:
            from .estimators import open_estimator

            self.estimator = (self._open or (lambda: open_estimator(self.config.model, self.config.decode)))()
        lines: list[str] | None = [] if self.record_dir is not None else None
        try:
            result = run_video(clip, self.config, self.estimator, fps=self.fps, hold_s=self.hold_s, record=lines)
        except SourceError as exc:
            raise UsageError(f"{clip.path}: {exc}") from None
        if self.record_dir is not None and lines is not None:
            out = self.record_dir / recording_path(clip)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return result

    def close(self) -> None:
        if self.estimator is not None:
            self.estimator.close()
            self.estimator = None


def recording_path(clip: Clip) -> Path:
    """Where `--record` puts a video clip's poses: <label>/<video name>.jsonl."""
    return Path(clip.label) / (clip.path.stem + RECORDING_SUFFIX)


def write_recorded_set(folder: Path, results: list["ClipResult"], *, fps: float, hold_s: float,
                       model: str) -> None:
    """The clips.json of a folder `--record` filled: each video's recording, same labels;
    the hold is already in the recordings (replay them with --fps 0 --hold 0)."""
    clips = [{"path": str(recording_path(r.clip)), "label": r.clip.label, "fall_at_s": r.clip.fall_at_s,
              "note": r.clip.note, "people": r.clip.people}
             for r in results if r.clip.kind == "video"]
    (folder / "clips.json").write_text(json.dumps({
        "about": f"poses found by {model} on videos at {fps:g} fps, last frame held {hold_s:g} s "
                 "(already in each recording: replay with --fps 0 --hold 0)",
        "clips": clips}, indent=1) + "\n", encoding="utf-8")


_WORKER: Runner | None = None


def _worker_init(config: Config, fps: float, hold_s: float, record_dir: Path | None) -> None:
    global _WORKER
    _WORKER = Runner(config, fps, hold_s, record_dir)


def _worker_run(clip: Clip) -> ClipResult:
    assert _WORKER is not None
    return _WORKER(clip)


def run_clips(clips: list[Clip], config: Config, *, fps: float, hold_s: float, jobs: int = 1,
              record_dir: Path | None = None,
              progress: Callable[[ClipResult], None] | None = None) -> list[ClipResult]:
    """Every clip, in order; `jobs` > 1 runs them in that many processes (one model each).
    `record_dir` keeps the model's poses of every video as a recording (and a clips.json)."""
    results: list[ClipResult] = []
    if jobs <= 1:
        runner = Runner(config, fps, hold_s, record_dir)
        try:
            for clip in clips:
                results.append(runner(clip))
                if progress:
                    progress(results[-1])
        finally:
            runner.close()
        return results
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("fork"),
        initializer=_worker_init, initargs=(config, fps, hold_s, record_dir),
    ) as pool:
        for result in pool.map(_worker_run, clips, chunksize=max(1, min(32, len(clips) // (jobs * 8) or 1))):
            results.append(result)
            if progress:
                progress(result)
    return results


def summarise(results: list[ClipResult]) -> dict[str, Any]:
    """The totals: falls raised, false alarms, time to alert, person counts."""
    falls = [r for r in results if r.clip.label == "fall"]
    adls = [r for r in results if r.clip.label == "adl"]
    raised = [r for r in falls if r.raised]
    delays = [r.delay_s for r in raised if r.delay_s is not None]
    after_end = [r.after_end_s for r in raised if r.clip.fall_at_s is None and r.after_end_s is not None]
    counted = [r for r in results if r.clip.people is not None and r.model_frames]
    single = [r for r in counted if r.clip.people == 1]

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    def spread(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"median": None, "p90": None, "max": None}
        return {"median": _round(statistics.median(values)), "p90": _round(float(np.percentile(values, 90))),
                "max": _round(max(values))}

    def count_figures(rs: list[ClipResult]) -> dict[str, Any]:
        frames = sum(r.count_right + r.count_under + r.count_over for r in rs)
        return {
            "clips": len(rs), "frames": frames,
            "exact": share(sum(r.count_right for r in rs), frames),
            "under": share(sum(r.count_under for r in rs), frames),
            "over": share(sum(r.count_over for r in rs), frames),
            "clips_debounced_over": sum(r.debounced_max > (r.clip.people or 0) for r in rs),
        }

    return {
        "clips": len(results),
        "fall_clips": len(falls), "falls_raised": len(raised), "falls_missed": len(falls) - len(raised),
        "fall_recall": share(len(raised), len(falls)),
        "adl_clips": len(adls), "false_alarms": sum(r.raised for r in adls),
        "false_alarm_rate": share(sum(r.raised for r in adls), len(adls)),
        "delay_from_labelled_fall_s": {"clips": len(delays), **spread(delays)},
        "after_clip_end_s": {"clips": len(after_end), **spread(after_end)},
        "person_count": count_figures(counted) if counted else None,
        "person_count_single": count_figures(single) if single else None,
    }
