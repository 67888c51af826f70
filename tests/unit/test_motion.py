"""edgepose.motion: the small grey image, the changed-cell fraction and the gate's
decisions, on synthetic frame sequences with a fixed seed (times are passed in)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgepose.motion import (
    GateDecision,
    MotionDetector,
    MotionGate,
    MotionSettings,
    changed_fraction,
    grey_from_rgb,
    grey_from_y,
)

H, W = 480, 640
BLOCK = 10  # 640x480 on the default 64x48 grid


@functools.lru_cache(maxsize=4)
def room(seed: int = 0) -> np.ndarray:
    """A textured, static 'empty room' (smooth shading plus some furniture edges); read-only."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 60 + 80 * (xx / W) + 40 * (yy / H)
    img = np.stack([base, base * 0.9 + 10, base * 0.8 + 20], axis=-1)
    for _ in range(12):
        x0, y0 = rng.integers(0, W - 80), rng.integers(0, H - 80)
        img[y0:y0 + rng.integers(20, 80), x0:x0 + rng.integers(20, 80)] += rng.integers(-50, 50, 3)
    out = np.clip(img, 0, 255).astype(np.uint8)
    out.flags.writeable = False
    return out


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    """Sensor noise, as a real camera adds to every frame of a still scene."""
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def with_person(img: np.ndarray, x: int, y: int = 200, w: int = 60, h: int = 200,
                colour=(200, 40, 40)) -> np.ndarray:
    out = img.copy()
    out[y:y + h, x:x + w] = colour
    return out


# --- the small grey image --------------------------------------------------------------


def test_grey_from_rgb_is_the_block_mean_of_bt601_luma():
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    grey = grey_from_rgb(rgb)
    assert grey.shape == (48, 64) and grey.dtype == np.uint8
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = luma.reshape(48, BLOCK, 64, BLOCK).mean(axis=(1, 3))
    assert np.abs(grey.astype(np.float64) - expected).max() <= 1.0


def test_grey_from_y_is_the_exact_block_mean_and_drops_partial_cells():
    y = np.random.default_rng(2).integers(0, 256, (H + 7, W + 5), dtype=np.uint8)
    grey = grey_from_y(y)
    assert grey.shape == (48, 64)
    expected = (y[:H, :W].reshape(48, BLOCK, 64, BLOCK).astype(np.uint32).sum(axis=(1, 3)) + 50) // 100
    assert np.array_equal(grey, expected.astype(np.uint8))


def test_grey_from_rgb_and_from_y_agree_on_a_grey_frame():
    plane = np.random.default_rng(3).integers(0, 256, (H, W), dtype=np.uint8)
    rgb = np.repeat(plane[..., None], 3, axis=2)
    assert np.abs(grey_from_rgb(rgb).astype(int) - grey_from_y(plane).astype(int)).max() <= 1


def test_small_and_odd_frames_keep_square_cells():
    # The largest square cell that still gives at least 64x48 cells: 160x90 -> 1 px (90 < 2*48).
    assert grey_from_y(np.zeros((90, 160), np.uint8)).shape == (90, 160)
    assert grey_from_y(np.zeros((100, 200), np.uint8)).shape == (50, 100)
    assert grey_from_y(np.zeros((10, 10), np.uint8)).shape == (10, 10)
    with pytest.raises(ValueError):
        grey_from_rgb(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        grey_from_y(np.zeros((10, 10, 3), np.uint8))


# --- changed cells ---------------------------------------------------------------------


def test_a_uniform_brightness_shift_is_not_motion_unless_compensation_is_off():
    bg = grey_from_rgb(room()).astype(np.float32)
    brighter = grey_from_rgb(np.clip(room().astype(int) + 30, 0, 255).astype(np.uint8))
    assert changed_fraction(bg, brighter, 12) < 0.005
    assert changed_fraction(bg, brighter, 12, compensate_brightness=False) > 0.9


def test_a_person_sized_object_changes_enough_cells():
    bg = grey_from_rgb(room()).astype(np.float32)
    # 60x200 px of a 640x480 frame: about 4% of the cells.
    fraction = changed_fraction(bg, grey_from_rgb(with_person(room(), 300)), 12)
    assert 0.02 < fraction < 0.06


def test_sensor_noise_on_a_still_scene_changes_no_cells():
    rng = np.random.default_rng(4)
    detector = MotionDetector()
    fractions = [detector.update(grey_from_rgb(noisy(room(), rng)), t / 10) for t in range(50)]
    assert fractions[0] == 1.0  # no background yet
    assert max(fractions[1:]) < MotionSettings().min_changed


def test_slow_movement_is_caught_although_each_frame_differs_by_little():
    """A low-contrast object creeping 1 px per frame at 30 fps: consecutive frames differ
    by < pixel_threshold in every cell, but the background lags by its time constant."""
    rng = np.random.default_rng(5)
    scene = room()
    frames = [noisy(with_person(scene, 100 + i, colour=(150, 150, 150)), rng, 1.0) for i in range(60)]
    greys = [grey_from_rgb(f) for f in frames]
    step = max(changed_fraction(greys[i].astype(np.float32), greys[i + 1], 12) for i in range(59))
    assert step < MotionSettings().min_changed
    detector = MotionDetector()
    fractions = [detector.update(g, i / 30) for i, g in enumerate(greys)]
    assert max(fractions[1:]) >= MotionSettings().min_changed


def test_the_background_adapts_by_time_not_by_frame_count():
    """The same 1.5 s after a scene change leaves the same residual at 5 fps and at 30 fps."""
    before, after = grey_from_rgb(room(0)), grey_from_rgb(with_person(room(0), 300))
    residual = {}
    for fps in (5, 30):
        detector = MotionDetector()
        detector.update(before, 0.0)
        n = int(1.5 * fps)
        for i in range(1, n + 1):
            last = detector.update(after, i / fps)
        residual[fps] = last
    assert residual[5] == pytest.approx(residual[30], abs=0.01)


def test_settings_are_validated():
    for bad in ({"pixel_threshold": 300}, {"min_changed": 0.0}, {"background_tau_s": 0},
                {"idle_interval_s": 0}, {"hold_s": -1}, {"still_interval_s": 0}, {"grid": (0, 48)}):
        with pytest.raises(ValueError):
            MotionSettings(**bad)


# --- the gate ----------------------------------------------------------------------------


def run_gate(gate: MotionGate, frames, times, people=None) -> list[GateDecision]:
    """Feed frames; after every run, observe the people 'found' (people(t) -> int)."""
    decisions = []
    for frame, t in zip(frames, times):
        d = gate.decide_rgb(frame, t)
        decisions.append(d)
        if d.run:
            gate.observe(t, people(t) if people else 0)
    return decisions


def test_a_still_empty_scene_runs_inference_only_every_idle_interval():
    rng = np.random.default_rng(6)
    fps, seconds = 10, 20
    times = [i / fps for i in range(fps * seconds)]
    frames = [noisy(room(), rng) for _ in times]
    decisions = run_gate(MotionGate(MotionSettings(idle_interval_s=2.0)), frames, times)
    runs = [(t, d.reason) for t, d in zip(times, decisions) if d.run]
    assert runs[0] == (0.0, "first")
    assert all(reason == "interval" for _, reason in runs[1:])
    assert len(runs) == seconds // 2  # t = 0, 2, ..., 18: 10 of 200 frames
    gaps = np.diff([t for t, _ in runs])
    assert np.allclose(gaps, 2.0)


def test_someone_walking_in_is_inferred_on_the_first_frame_they_appear():
    rng = np.random.default_rng(7)
    fps = 10
    times = [i / fps for i in range(60)]
    enter = 35  # frame index; a person steps in from the left edge
    frames = [noisy(room(), rng) if i < enter
              else noisy(with_person(room(), 8 * (i - enter), colour=(235, 225, 215)), rng)
              for i in range(60)]
    decisions = run_gate(MotionGate(), frames, times)
    assert decisions[enter].run and decisions[enter].reason == "motion"
    assert not any(d.run for d in decisions[enter - 4:enter])  # idle just before


def test_a_still_person_is_inferred_every_still_interval_and_a_moving_scene_every_frame():
    """Someone walks in at 1 s and stands still until 9 s, then leaves. While the scene
    moves (they appear, the background absorbs them, they leave) every frame runs; once
    nothing moves, one frame every still_interval_s, never a gap a tracker or the
    presence hold would notice; after hold_s without anyone, the idle interval."""
    rng = np.random.default_rng(8)
    fps, hold, still = 10, 3.0, 0.5
    settings = MotionSettings(hold_s=hold, idle_interval_s=2.0, still_interval_s=still)
    times = [i / fps for i in range(200)]
    present = [1.0 <= t < 9.0 for t in times]
    frames = [noisy(with_person(room(), 300), rng) if p else noisy(room(), rng) for p in present]
    decisions = run_gate(MotionGate(settings), frames, times, people=lambda t: int(1.0 <= t < 9.0 - 1e-9))
    by_time = dict(zip(times, decisions))
    assert by_time[1.0].run and by_time[1.0].reason == "motion", "the first frame that changed"
    runs = [t for t in times if 1.0 <= t < 9.0 and by_time[t].run]
    assert max(np.diff(runs)) <= still + 1 / fps + 1e-9  # tracking.max_age_s is 1 s by default
    settled = [by_time[t] for t in times if 5.0 <= t < 9.0]
    assert {d.reason for d in settled} == {"still", "still_interval"}
    assert sum(d.run for d in settled) == 8  # 4 s at one every 0.5 s, of 40 frames
    assert by_time[9.0].run and by_time[9.0].reason == "motion", "leaving is motion"
    # Last seen at 8.9 s: followed until 8.9 + hold, then idle again.
    late = [t for t in times if t >= 8.9 + hold + 2.0]
    assert {by_time[t].reason for t in late} == {"idle", "interval"}
    assert min(np.diff([t for t in late if by_time[t].run])) >= 2.0 - 1e-9


def test_a_count_that_changes_while_nothing_moves_is_checked_again_on_the_next_frame():
    """A still person the model misses once: the next frame runs at once (a tracker keeps
    its id over one missed inference), and the still interval resumes when two agree."""
    settings = MotionSettings(still_interval_s=0.5)
    gate = MotionGate(settings)
    grey = grey_from_rgb(with_person(room(), 300))
    found = {9 / 8: 0}  # missed once; found on every other inference
    decisions = {}
    for i in range(20):
        t = i / 8  # 8 fps: binary fractions keep the times exact
        d = decisions[t] = gate.decide(grey, t)
        if d.run:
            gate.observe(t, found.get(t, 1))
    ran = {t: d.reason for t, d in decisions.items() if d.run}
    # 1/8: the first count; 10/8: after the miss; 11/8: found again (0 then 1); then two agree.
    assert ran == {0.0: "first", 1 / 8: "recheck", 5 / 8: "still_interval", 9 / 8: "still_interval",
                   10 / 8: "recheck", 11 / 8: "recheck", 15 / 8: "still_interval", 19 / 8: "still_interval"}, ran


def test_a_fall_in_a_still_scene_runs_on_its_first_frame():
    """A person standing still for seconds (inferred every still interval), then on the
    floor: the frame that shows it runs at once, and every frame while it settles."""
    rng = np.random.default_rng(10)
    gate = MotionGate(MotionSettings(still_interval_s=0.5))
    standing = with_person(room(), 300, y=200, w=60, h=200)
    lying = with_person(room(), 220, y=380, w=200, h=60)
    times = [i / 10 for i in range(80)]
    frames = [noisy(standing if t < 6.0 else lying, rng) for t in times]
    decisions = dict(zip(times, run_gate(gate, frames, times, people=lambda t: 1)))
    assert not all(decisions[t].run for t in times if 4.0 <= t < 6.0), "standing still: skipped frames"
    assert decisions[6.0].run and decisions[6.0].reason == "motion"
    assert all(decisions[t].run for t in times if 6.0 <= t < 7.0)


def test_decide_from_a_y_plane_matches_decide_from_rgb_for_grey_frames():
    rng = np.random.default_rng(9)
    planes = [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(5)]
    a, b = MotionGate(), MotionGate()
    for i, plane in enumerate(planes):
        rgb = np.repeat(plane[..., None], 3, axis=2)
        assert a.decide_y(plane, i * 0.1).run == b.decide_rgb(rgb, i * 0.1).run


def test_reset_forgets_the_background_and_the_last_sighting():
    gate = MotionGate()
    g = grey_from_rgb(room())
    gate.decide(g, 0.0)
    gate.observe(0.0, 2)
    assert gate.decide(g, 0.1).reason == "recheck"  # someone seen: followed
    gate.reset()
    assert gate.decide(g, 0.2).reason == "first"
    assert gate.decide(g, 0.3).reason == "idle"


def test_while_tracking_a_moving_scene_the_background_is_refreshed_at_most_every_refresh_interval():
    """Every frame runs while someone is tracked and the scene moves: the grey image is only
    needed to keep the background current and to notice when the scene comes to rest, so
    most frames skip it; once the scene is still, or tracking ends, every frame needs it."""
    from edgepose.motion import TRACKING_REFRESH_S

    gate = MotionGate(MotionSettings(hold_s=1.0))
    walking = [grey_from_rgb(with_person(room(), 40 * i)) for i in range(12)]
    assert gate.needs_image(0.0)
    assert gate.decide(walking[0], 0.0).reason == "first"
    gate.observe(0.0, people=1)
    needed = []
    for i in range(1, 9):  # 8 fps while tracked (binary fractions keep the times exact)
        t = i / 8
        needed.append(gate.needs_image(t))
        assert gate.expects_to_run(t)
        decision = gate.decide(walking[i] if needed[-1] else None, t)
        assert decision.run and decision.reason == ("motion" if needed[-1] else "tracking")
        gate.observe(t, people=1)
    assert TRACKING_REFRESH_S == 0.2
    # Refreshed at 0; then an image at the first frame 0.2 s or more after the last one.
    assert needed == [False, True, False, True, False, True, False, True]
    # The person stops: the next image shows no motion (its background caught up), and
    # from then on every frame needs its image, the first that changes must run.
    rest = walking[8]
    for i in range(9, 60):
        t = i / 8
        if gate.needs_image(t):
            decision = gate.decide(rest, t)
            if decision.reason in ("still", "still_interval"):
                break
        else:
            gate.decide(None, t)
        gate.observe(t, people=1)
    assert not gate.expects_to_run(t) and gate.needs_image(t + 1 / 8)
    assert gate.needs_image(t + 10.0), "nobody seen for hold_s: every frame needs its image"


def test_deciding_without_an_image_when_one_is_needed_is_a_bug():
    gate = MotionGate(MotionSettings())
    with pytest.raises(ValueError):
        gate.decide(None, 0.0)
