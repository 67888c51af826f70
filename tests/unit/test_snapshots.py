"""Snapshot files (atomic, named by time, bounded) and the policy deciding when."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from edgepose.sinks import snapshots
from edgepose.sinks.snapshots import (
    LATEST_NAME,
    REASON_COMMAND,
    REASON_COUNT_CHANGE,
    REASON_INTERVAL,
    SnapshotPolicy,
    SnapshotWriter,
    is_snapshot_name,
)

T0 = datetime(2026, 11, 21, 5, 1, 2, 123456, tzinfo=timezone.utc)


def writer(tmp_path, **kw) -> SnapshotWriter:
    args = {"keep": 100, "max_bytes": 10_000_000} | kw
    return SnapshotWriter(tmp_path / "snaps", **args)


def leftovers(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


# --- SnapshotWriter ---------------------------------------------------------


def test_creates_missing_directory_and_names_file_by_utc_time(tmp_path):
    w = writer(tmp_path)
    path = w.write(b"jpeg", T0, "count_change")
    assert path.parent == tmp_path / "snaps"
    assert path.name == "20261121T050102.123Z_000001_count_change.jpg"
    assert path.read_bytes() == b"jpeg"


def test_names_sort_by_time_across_zones_and_epoch_seconds(tmp_path):
    w = writer(tmp_path)
    later_in_another_zone = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-8)))
    a = w.write(b"a", T0.timestamp() + 2, "interval")
    b = w.write(b"b", later_in_another_zone, "interval")
    c = w.write(b"c", T0, "interval")
    assert sorted(p.name for p in (a, b, c)) == [c.name, b.name, a.name]


def test_unsafe_tag_characters_are_replaced(tmp_path):
    path = writer(tmp_path).write(b"x", T0, "../../etc passwd")
    assert path.parent == tmp_path / "snaps"
    assert is_snapshot_name(path.name)


def test_same_millisecond_gives_distinct_files(tmp_path):
    w = writer(tmp_path)
    assert w.write(b"a", T0, "command") != w.write(b"b", T0, "command")
    assert len(w.snapshots()) == 2


def test_latest_copy_holds_the_newest_snapshot(tmp_path):
    w = writer(tmp_path)
    w.write(b"first", T0, "interval")
    w.write(b"second", T0 + timedelta(seconds=1), "interval")
    assert (tmp_path / "snaps" / LATEST_NAME).read_bytes() == b"second"


def test_write_leaves_no_temp_file(tmp_path):
    w = writer(tmp_path)
    w.write(b"data", T0, "interval")
    assert leftovers(w.directory) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_mid_write_leaves_no_file_at_all(tmp_path, monkeypatch, failing):
    w = writer(tmp_path)
    kept = w.write(b"old", T0, "interval")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots.os, failing, broken)
    with pytest.raises(OSError):
        w.write(b"new", T0 + timedelta(seconds=1), "interval")
    monkeypatch.undo()
    assert w.snapshots() == [kept]
    assert kept.read_bytes() == b"old"
    assert (w.directory / LATEST_NAME).read_bytes() == b"old"
    assert leftovers(w.directory) == []


def test_failing_file_write_leaves_no_partial_file(tmp_path, monkeypatch):
    w = writer(tmp_path)
    real_fdopen = os.fdopen

    class FailingFile:
        def __init__(self, fd, mode):
            self._f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def write(self, data):
            self._f.write(data[: len(data) // 2])
            raise OSError(5, "I/O error")

    monkeypatch.setattr(snapshots.os, "fdopen", FailingFile)
    with pytest.raises(OSError):
        w.write(b"0123456789", T0, "interval")
    monkeypatch.undo()
    assert os.listdir(w.directory) == []


def test_stale_temp_files_from_a_crash_are_removed_on_start(tmp_path):
    directory = tmp_path / "snaps"
    directory.mkdir()
    (directory / f"{snapshots.TEMP_PREFIX}abc{snapshots.TEMP_SUFFIX}").write_bytes(b"half")
    (directory / "user.tmp").write_bytes(b"mine")
    writer(tmp_path)
    assert sorted(os.listdir(directory)) == ["user.tmp"]


def test_retention_keeps_at_most_keep_files_oldest_deleted_first(tmp_path):
    w = writer(tmp_path, keep=3)
    paths = [w.write(b"x", T0 + timedelta(seconds=i), "interval") for i in range(5)]
    assert w.snapshots() == paths[-3:]


def test_retention_keeps_total_bytes_within_max_bytes(tmp_path):
    w = writer(tmp_path, max_bytes=250)
    paths = [w.write(b"x" * 100, T0 + timedelta(seconds=i), "interval") for i in range(4)]
    assert w.snapshots() == paths[-2:]
    assert sum(p.stat().st_size for p in w.snapshots()) <= 250


def test_newest_snapshot_stays_even_when_larger_than_max_bytes(tmp_path):
    w = writer(tmp_path, max_bytes=50)
    w.write(b"x" * 10, T0, "interval")
    newest = w.write(b"x" * 100, T0 + timedelta(seconds=1), "interval")
    assert w.snapshots() == [newest]


def test_retention_never_touches_foreign_files(tmp_path):
    directory = tmp_path / "snaps"
    directory.mkdir()
    foreign = {
        "holiday.jpg": b"u" * 1000,
        "20261121T050102.123Z_notes.txt": b"u",
        "20200101T000000.000Z_person.jpg": b"u",  # no sequence number: not ours
        "README": b"u",
    }
    for name, data in foreign.items():
        (directory / name).write_bytes(data)
    (directory / "sub").mkdir()
    w = writer(tmp_path, keep=1, max_bytes=10)
    for i in range(3):
        w.write(b"x" * 20, T0 + timedelta(seconds=i), "interval")
    for name, data in foreign.items():
        assert (directory / name).read_bytes() == data
    assert (directory / "sub").is_dir()
    assert len(w.snapshots()) == 1


def test_snapshots_from_an_earlier_run_count_towards_retention(tmp_path):
    first = writer(tmp_path, keep=2)
    old = first.write(b"x", T0, "interval")
    second = writer(tmp_path, keep=2)
    new = [second.write(b"y", T0 + timedelta(seconds=i + 1), "interval") for i in range(2)]
    assert not old.exists()
    assert second.snapshots() == new


@pytest.mark.parametrize("kw", [{"keep": 0}, {"max_bytes": -1}])
def test_rejects_impossible_limits(tmp_path, kw):
    with pytest.raises(ValueError):
        writer(tmp_path, **kw)


def test_max_bytes_zero_means_no_size_cap(tmp_path):
    """The bug: documented as "no limit", max_bytes = 0 crashed the daemon (exit 70)."""
    w = writer(tmp_path, keep=3, max_bytes=0)
    written = [w.write(b"x" * 1000, T0 + timedelta(seconds=i), "interval") for i in range(5)]
    assert w.snapshots() == written[-3:]  # only `keep` counts


# --- SnapshotPolicy ---------------------------------------------------------


def test_interval_policy_is_due_at_start_then_every_interval():
    p = SnapshotPolicy(interval_s=10.0, on_count_change=False)
    assert p.due(100.0, 0) == REASON_INTERVAL
    assert p.due(105.0, 0) is None
    assert p.due(109.999, 0) is None
    assert p.due(110.0, 0) == REASON_INTERVAL
    assert p.due(115.0, 3) is None  # count changes are not asked for


def test_interval_zero_never_fires():
    p = SnapshotPolicy(interval_s=0.0, on_count_change=False)
    assert all(p.due(t, 0) is None for t in (0.0, 1e6))


def test_count_change_fires_when_people_appear_and_leave():
    p = SnapshotPolicy(interval_s=0.0, on_count_change=True)
    assert p.due(1.0, 0) is None  # the scene starts empty
    assert p.due(2.0, 1) == REASON_COUNT_CHANGE
    assert p.due(3.0, 1) is None
    assert p.due(4.0, 2) == REASON_COUNT_CHANGE
    assert p.due(5.0, 0) == REASON_COUNT_CHANGE


def test_person_present_at_start_counts_as_a_change():
    p = SnapshotPolicy(interval_s=0.0, on_count_change=True)
    assert p.due(0.0, 2) == REASON_COUNT_CHANGE


def test_any_snapshot_restarts_the_interval():
    p = SnapshotPolicy(interval_s=10.0, on_count_change=True)
    assert p.due(0.0, 0) == REASON_INTERVAL
    assert p.due(6.0, 1) == REASON_COUNT_CHANGE
    assert p.due(12.0, 1) is None
    assert p.due(16.0, 1) == REASON_INTERVAL


def test_command_wins_and_is_consumed():
    p = SnapshotPolicy(interval_s=10.0, on_count_change=True)
    p.due(0.0, 0)
    p.request()
    assert p.due(1.0, 4) == REASON_COMMAND
    assert p.due(2.0, 4) is None  # the command snapshot already showed 4 people


def test_cooldown_holds_back_a_flickering_count():
    p = SnapshotPolicy(interval_s=0.0, on_count_change=True, cooldown_s=5.0)
    assert p.due(0.0, 1) == REASON_COUNT_CHANGE
    assert p.due(1.0, 2) is None
    assert p.due(2.0, 1) is None  # back to what the last snapshot showed
    assert p.due(6.0, 1) is None
    assert p.due(7.0, 2) == REASON_COUNT_CHANGE


def test_cooldown_does_not_hold_back_commands():
    p = SnapshotPolicy(interval_s=0.0, on_count_change=True, cooldown_s=60.0)
    p.due(0.0, 1)
    p.request()
    assert p.due(0.5, 1) == REASON_COMMAND


# --- what a snapshot shows: snapshots.privacy ------------------------------------------------


@pytest.mark.parametrize("privacy", ["skeleton", "blur"])
def test_a_fall_snapshot_and_its_published_copy_hide_the_camera_picture(tmp_path, privacy):
    """The snapshot stage with a fall raised on a demo photo: the file written, latest.jpg
    and the MQTT image are one JPEG, and it does not resemble the frame."""
    import numpy as np
    from PIL import Image

    from edgepose.core import Frame, FrameResult
    from edgepose.images import list_images
    from edgepose.scene import FALL_SNAPSHOT
    from edgepose.sinks import SnapshotStage
    from edgepose.sources import demo_dir

    from ..resemblance import COARSE_MAX, DETAIL_MAX, resemblance
    from .test_overlay import standing

    rgb = np.asarray(Image.open(list_images(demo_dir())[1]).convert("RGB"))
    published = []
    stage = SnapshotStage(SnapshotPolicy(interval_s=0.0, on_count_change=False), writer=writer(tmp_path),
                          publish=published.append, labels=True, min_score=0.3, jpeg_quality=85,
                          privacy=privacy)
    poses = standing(rgb.shape[1] / 2, 40, rgb.shape[0] - 80)
    result = FrameResult(Frame(rgb, seq=1, captured_at=T0.timestamp(), captured_mono=1.0), poses, 10.0,
                         snapshot=FALL_SNAPSHOT)
    out = stage.process(result)
    assert out.snapshot is not None and "_fall_" in out.snapshot
    assert stage.flush(5.0)
    stage.close()
    (path,) = writer(tmp_path).snapshots()
    jpegs = [path.read_bytes(), (path.parent / LATEST_NAME).read_bytes(), published[0].payload]
    assert len(set(jpegs)) == 1, "one JPEG for the file, latest.jpg and MQTT"
    found = resemblance(jpegs[0], rgb)
    assert found.detail < DETAIL_MAX and (privacy == "blur" or found.coarse < COARSE_MAX), found
