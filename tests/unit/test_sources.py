"""Frame sources: image folders, the demo, PyAV files and streams, picamera2 via a stand-in."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from edgepose import sources
from edgepose.errors import ConfigError, FrameError, SourceError, SourceUnavailable
from edgepose.sources import (
    DemoSource,
    FrameSource,
    ImageFolderSource,
    Picamera2Source,
    StreamSource,
    V4l2Source,
    VideoFileSource,
    demo_dir,
    main_array_to_rgb,
    open_source,
    probe_source,
    redact_uri,
    yuv420_to_rgb,
)

# --- helpers -------------------------------------------------------------------------


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.tile(np.array(rgb, np.uint8), (height, width, 1))


def write_image(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path)
    return path


def read_all(source: FrameSource, limit: int = 100) -> list[np.ndarray | type[FrameError]]:
    """Every read until None (or `limit` reads), FrameError recorded as the class."""
    out: list[np.ndarray | type[FrameError]] = []
    for _ in range(limit):
        try:
            rgb = source.read()
        except FrameError:
            out.append(FrameError)
            continue
        if rgb is None:
            break
        out.append(rgb)
    return out


def write_video(path: Path, colours: list[tuple[int, int, int]], codec: str = "mpeg4") -> Path:
    """A tiny 64x48 video, one solid colour per frame."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_ndarray(solid(64, 48, colour), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


GREYS = [(v, v, v) for v in (20, 60, 100, 140, 180, 220, 40, 80, 120, 160)]


# --- image folders -------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_image(tmp_path / "a.png", solid(8, 6, (255, 0, 0)))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    write_image(tmp_path / "c.JPG", solid(8, 6, (0, 0, 255)))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_skips_corrupt_file_and_delivers_the_rest_in_name_order(folder: Path):
    source = ImageFolderSource(folder, loop=False)
    source.open()
    got = read_all(source)
    source.close()
    assert got[1] is FrameError
    red, blue = got[0], got[2]
    assert len(got) == 3
    assert red.shape == (6, 8, 3) and red.dtype == np.uint8
    assert tuple(red[0, 0]) == (255, 0, 0)
    assert np.all(np.abs(blue[3, 4].astype(int) - (0, 0, 255)) < 8)  # JPEG is lossy


def test_truncated_jpeg_is_a_frame_error(tmp_path: Path):
    good = write_image(tmp_path / "good.jpg", solid(64, 48, (10, 200, 30)))
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    source = ImageFolderSource(tmp_path, loop=False)
    source.open()
    got = read_all(source)
    assert got[1] is FrameError and isinstance(got[0], np.ndarray) and len(got) == 2


def test_image_folder_loops_when_asked(folder: Path):
    source = ImageFolderSource(folder, loop=True)
    source.open()
    got = read_all(source, limit=9)
    assert [g is FrameError for g in got] == [False, True, False] * 3


def test_image_folder_of_only_broken_files_fails_instead_of_looping_forever(tmp_path: Path):
    (tmp_path / "x.jpg").write_bytes(b"junk")
    source = ImageFolderSource(tmp_path, loop=True)
    source.open()
    with pytest.raises(FrameError):
        source.read()
    with pytest.raises(SourceError, match="none of the images"):
        source.read()


def test_empty_or_missing_folder_fails_to_open(tmp_path: Path):
    with pytest.raises(SourceError, match="no .jpg"):
        ImageFolderSource(tmp_path, loop=False).open()
    with pytest.raises(SourceError):
        ImageFolderSource(tmp_path / "absent", loop=False).open()


def test_image_is_turned_upright_by_its_exif_orientation(tmp_path: Path):
    image = Image.fromarray(solid(40, 20, (0, 128, 0)))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown as portrait
    image.save(tmp_path / "rotated.jpg", exif=exif)
    source = ImageFolderSource(tmp_path, loop=False)
    source.open()
    assert source.read().shape == (40, 20, 3)


def test_greyscale_and_rgba_images_come_out_rgb(tmp_path: Path):
    Image.new("L", (5, 4), 77).save(tmp_path / "1.png")
    Image.new("RGBA", (5, 4), (1, 2, 3, 4)).save(tmp_path / "2.png")
    source = ImageFolderSource(tmp_path, loop=False)
    source.open()
    grey, rgba = read_all(source)
    assert grey.shape == rgba.shape == (4, 5, 3)
    assert tuple(grey[0, 0]) == (77, 77, 77) and tuple(rgba[0, 0]) == (1, 2, 3)


# --- the demo --------------------------------------------------------------------------


def test_demo_yields_rgb_photos_and_loops():
    source = open_source("demo", width=640, height=480, loop=False)
    assert isinstance(source, DemoSource)
    source.open()
    count = len(sources.list_images(demo_dir()))
    assert 4 <= count <= 6
    held = sources.DEMO_FRAMES_PER_PHOTO
    frames = [source.read() for _ in range(count * held + 1)]
    source.close()
    for rgb in frames:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert min(rgb.shape[:2]) >= 400  # real photos, not thumbnails
        assert rgb.std() > 20  # not blank
    # Each photo is held like a scene a camera watches, then the next one comes.
    np.testing.assert_array_equal(frames[0], frames[held - 1])
    assert frames[held].shape != frames[0].shape or not np.array_equal(frames[held], frames[0])
    np.testing.assert_array_equal(frames[0], frames[count * held])  # looped back to the first


def test_the_demo_marks_the_first_frame_of_each_photo_as_a_scene_cut():
    """The next photo shows other people: nothing remembered of the last one may carry over."""
    source = DemoSource(frames_per_photo=3)
    source.open()
    cuts = []
    for _ in range(3 * 3):
        source.read()
        cuts.append(source.scene_cut)
    source.close()
    assert cuts == [True, False, False] * 3


def test_demo_photos_are_small_and_each_is_attributed():
    photos = sources.list_images(demo_dir())
    assert sum(p.stat().st_size for p in photos) < 1_500_000
    attribution = (demo_dir() / "ATTRIBUTION.md").read_text()
    for photo in photos:
        assert f"`{photo.name}`" in attribution
    assert "unmodified" in attribution and "CC BY 4.0" in attribution


@pytest.mark.shared
def test_demo_photos_are_unmodified_coco_photos_with_licences_that_allow_redistribution(coco_dev):
    allowed = {4: "CC BY 2.0", 5: "CC BY-SA 2.0"}
    images = {
        im["file_name"]: im
        for im in json.loads((coco_dev / "person_keypoints.json").read_text())["images"]
    }
    attribution = (demo_dir() / "ATTRIBUTION.md").read_text()
    for photo in sources.list_images(demo_dir()):
        entry = images[photo.name]
        assert entry["license"] in allowed, photo.name
        assert photo.read_bytes() == (coco_dev / "images" / photo.name).read_bytes()
        row = next(line for line in attribution.splitlines() if f"`{photo.name}`" in line)
        assert entry["flickr_url"] in row and allowed[entry["license"]] in row


# --- PyAV video files -------------------------------------------------------------------


def test_video_file_frames_come_out_rgb_in_order_then_end(tmp_path: Path):
    path = write_video(tmp_path / "clip.mp4", GREYS)
    source = open_source(str(path), width=640, height=480, loop=False)
    assert isinstance(source, VideoFileSource) and not source.live
    source.open()
    frames = read_all(source)
    source.close()
    assert len(frames) == len(GREYS)
    for rgb, (v, _, _) in zip(frames, GREYS, strict=True):
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        assert abs(int(rgb.mean()) - v) < 6


def test_video_file_loops_when_asked(tmp_path: Path):
    path = write_video(tmp_path / "clip.mkv", GREYS[:3])
    source = VideoFileSource(path, loop=True)
    source.open()
    means = [int(source.read().mean()) for _ in range(7)]
    source.close()
    assert [abs(m - GREYS[i % 3][0]) < 6 for i, m in enumerate(means)] == [True] * 7


def test_video_with_delayed_frames_is_flushed_at_the_end(tmp_path: Path):
    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV has no libx264")
    path = write_video(tmp_path / "clip.mp4", GREYS, codec="libx264")  # B-frames: decoder delay
    source = VideoFileSource(path, loop=False)
    source.open()
    assert len(read_all(source)) == len(GREYS)


def test_missing_or_non_video_file_fails_to_open(tmp_path: Path):
    # A missing file is not a camera that may come back: the daemon stops instead of retrying.
    with pytest.raises(SourceUnavailable, match="no such file"):
        VideoFileSource(tmp_path / "absent.mp4", loop=False).open()
    with pytest.raises(SourceUnavailable, match="not a regular file"):
        VideoFileSource(tmp_path, loop=False).open()
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(SourceError, match="cannot open"):
        VideoFileSource(tmp_path / "text.mp4", loop=False).open()


class FakePacket:
    def __init__(self, frames=None, error: Exception | None = None):
        self._frames, self._error = frames or [], error

    def decode(self):
        if self._error:
            raise self._error
        return self._frames


class FakeAvFrame:
    def __init__(self, value: int):
        self.value = value

    def to_ndarray(self, format: str):
        assert format == "rgb24"
        return solid(4, 2, (self.value, self.value, self.value))


class FakeContainer:
    def __init__(self, packets):
        self._packets = packets
        self.streams = type("Streams", (), {"video": [type("Stream", (), {})()]})()
        self.closed = False

    def demux(self, stream):
        for item in self._packets:
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self):
        self.closed = True


def test_undecodable_packet_is_a_frame_error_and_reading_goes_on(monkeypatch, tmp_path: Path):
    bad = av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
    container = FakeContainer(
        [FakePacket([FakeAvFrame(1)]), FakePacket(error=bad), FakePacket([FakeAvFrame(3)])]
    )
    monkeypatch.setattr(av, "open", lambda *a, **k: container)
    source = StreamSource("rtsp://camera.local/stream")
    source.open()
    got = read_all(source)
    assert got[1] is FrameError
    assert [int(g[0, 0, 0]) for g in (got[0], got[2])] == [1, 3]
    source.close()
    assert container.closed


def test_stream_that_breaks_mid_way_is_a_source_error(monkeypatch):
    container = FakeContainer([FakePacket([FakeAvFrame(1)]), OSError("connection reset")])
    monkeypatch.setattr(av, "open", lambda *a, **k: container)
    source = StreamSource("http://camera.local/video.mjpg")
    source.open()
    assert source.read() is not None
    with pytest.raises(SourceError, match="connection reset"):
        source.read()


def test_a_stalled_stream_says_so_instead_of_ffmpegs_immediate_exit(monkeypatch):
    """PyAV's read timeout surfaces as FFmpeg's "Immediate exit requested"."""
    container = FakeContainer([OSError("[Errno 1414092869] Immediate exit requested")])
    monkeypatch.setattr(av, "open", lambda *a, **k: container)
    source = StreamSource("http://camera.local/video.mjpg")
    source.open()
    with pytest.raises(SourceError, match="stream stalled: no data for 10 s"):
        source.read()


def test_stream_options_ask_for_tcp_and_timeouts(monkeypatch):
    seen = {}

    def fake_open(target, mode="r", **kwargs):
        seen.update(kwargs, target=target)
        return FakeContainer([])

    monkeypatch.setattr(av, "open", fake_open)
    source = StreamSource("rtsps://user:secret@cam.local:322/live?token=abc")
    source.open()
    assert seen["options"]["rtsp_transport"] == "tcp"
    assert int(seen["options"]["timeout"]) == int(
        sources.STREAM_READ_TIMEOUT_S * 1e6
    )  # microseconds
    assert seen["timeout"] == (sources.STREAM_OPEN_TIMEOUT_S, sources.STREAM_READ_TIMEOUT_S)
    assert source.read() is None  # an empty stream ends
    assert "secret" not in source.describe() and "abc" not in source.describe()


def test_v4l2_camera_is_opened_with_its_size_and_rate(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        av, "open", lambda target, mode="r", **kw: seen.update(kw) or FakeContainer([])
    )
    source = open_source("/dev/video2", width=320, height=240, loop=False, fps=15)
    assert isinstance(source, V4l2Source) and source.live
    source.open()
    assert seen["format"] == "v4l2"
    assert seen["options"] == {"video_size": "320x240", "framerate": "15"}


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not done.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


def test_silent_rtsp_server_raises_instead_of_hanging(monkeypatch, silent_server):
    monkeypatch.setattr(sources, "STREAM_OPEN_TIMEOUT_S", 1.0)
    monkeypatch.setattr(sources, "STREAM_READ_TIMEOUT_S", 1.0)
    source = StreamSource(f"rtsp://127.0.0.1:{silent_server}/live")
    started = time.monotonic()
    with pytest.raises(SourceError):
        source.open()
    assert time.monotonic() - started < 8


def test_refused_stream_is_a_source_error():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError):
        StreamSource(f"rtsp://127.0.0.1:{port}/live").open()


# --- the factory -------------------------------------------------------------------------


def test_factory_picks_the_source_from_the_uri(tmp_path: Path):
    kw = dict(width=640, height=480, loop=False)
    assert isinstance(open_source("picamera2", **kw), Picamera2Source)
    assert isinstance(open_source("picamera2:1", **kw), Picamera2Source)
    assert isinstance(open_source("/dev/video0", **kw), V4l2Source)
    for uri in ("rtsp://h/x", "rtsps://h/x", "http://h/x.mjpg", "https://h/x.m3u8"):
        assert isinstance(open_source(uri, **kw), StreamSource)
    assert isinstance(open_source(str(tmp_path), **kw), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path / "clip.mp4"), **kw), VideoFileSource)
    assert isinstance(open_source(f"file://{tmp_path}", **kw), ImageFolderSource)
    assert "picamera2" not in sys.modules  # making a source imports no camera stack


@pytest.mark.parametrize("uri", ["", "ftp://host/x", "picamera2:front"])
def test_factory_rejects_uris_it_does_not_know(uri: str):
    with pytest.raises(ConfigError, match="source.uri"):
        open_source(uri, width=640, height=480, loop=False)


def test_describe_never_shows_passwords_or_tokens():
    assert redact_uri("rtsp://admin:hunter2@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"
    assert "t0ken" not in redact_uri("https://cam/snap.mjpg?user=a&pwd=t0ken")
    assert redact_uri("/videos/a.mp4") == "/videos/a.mp4"
    source = open_source("rtsp://admin:hunter2@cam/s1", width=1, height=1, loop=False)
    assert "hunter2" not in source.describe()


def test_probe_reports_frame_size_or_the_reason(folder: Path, tmp_path: Path):
    probe = probe_source(str(folder), width=640, height=480)
    assert probe.ok and probe.detail.startswith("8x6 frames from")
    probe = probe_source(str(tmp_path / "absent.mkv"), width=640, height=480)
    assert not probe.ok and "no such file" in probe.detail and not probe.busy
    probe = probe_source("gopher://x", width=640, height=480)
    assert not probe.ok and "source.uri" in probe.detail


# --- YUV420 ------------------------------------------------------------------------------


def reference_yuv_to_rgb(y: float, u: float, v: float, full_range: bool) -> tuple[int, ...]:
    """BT.601 as the textbooks write it, one pixel at a time."""
    if full_range:
        rgb = (
            y + 1.402 * (v - 128),
            y - 0.344136 * (u - 128) - 0.714136 * (v - 128),
            y + 1.772 * (u - 128),
        )
    else:
        ys = 255 / 219 * (y - 16)
        kr, kb = 0.299, 0.114
        cb, cr = (u - 128) * 255 / 224, (v - 128) * 255 / 224
        rgb = (
            ys + 2 * (1 - kr) * cr,
            ys - 2 * (1 - kb) * kb / (1 - kr - kb) * cb - 2 * (1 - kr) * kr / (1 - kr - kb) * cr,
            ys + 2 * (1 - kb) * cb,
        )
    return tuple(int(min(255, max(0, round(c)))) for c in rgb)


def make_i420(width: int, height: int, stride: int, seed: int = 0):
    """Random planes and the padded buffer libcamera would deliver (padding = 0xEE)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 256, (height, width), dtype=np.uint8)
    u = rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8)
    v = rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8)
    buf = np.full(height * stride * 3 // 2, 0xEE, np.uint8)
    buf[: height * stride].reshape(height, stride)[:, :width] = y
    c = height // 2 * stride // 2
    base = height * stride
    buf[base : base + c].reshape(height // 2, stride // 2)[:, : width // 2] = u
    buf[base + c : base + 2 * c].reshape(height // 2, stride // 2)[:, : width // 2] = v
    return y, u, v, buf


@pytest.mark.parametrize("full_range", [True, False])
def test_yuv420_with_padded_stride_matches_the_reference_formula(full_range: bool):
    width, height, stride = 10, 6, 16  # 6 padding bytes per luma row, 3 per chroma row
    y, u, v, buf = make_i420(width, height, stride)
    rgb = yuv420_to_rgb(
        buf.reshape(height * 3 // 2, stride), width, height, stride, full_range=full_range
    )
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous  # interleaved R, G, B like every other frame
    for row in range(height):
        for col in range(width):
            want = reference_yuv_to_rgb(
                float(y[row, col]),
                float(u[row // 2, col // 2]),
                float(v[row // 2, col // 2]),
                full_range,
            )
            got = tuple(int(c) for c in rgb[row, col])
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1, (
                row,
                col,
                got,
                want,
            )


def test_yuv420_known_colours():
    width, height, stride = 4, 2, 4
    buf = np.concatenate([np.full(8, 128), np.full(2, 128), np.full(2, 128)]).astype(np.uint8)
    assert np.all(yuv420_to_rgb(buf.tobytes(), width, height, stride) == 128)  # mid grey
    red = np.concatenate([np.full(8, 76), np.full(2, 85), np.full(2, 255)]).astype(np.uint8)
    r, g, b = (int(c) for c in yuv420_to_rgb(red, width, height, stride)[0, 0])
    assert r > 250 and g < 5 and b < 5


def test_yuv420_rejects_bad_geometry():
    with pytest.raises(ValueError, match="even"):
        yuv420_to_rgb(np.zeros(100, np.uint8), 5, 4, 6)
    with pytest.raises(ValueError, match="stride"):
        yuv420_to_rgb(np.zeros(100, np.uint8), 8, 4, 6)
    with pytest.raises(ValueError, match="too small"):
        yuv420_to_rgb(np.zeros(10, np.uint8), 8, 4, 8)


# --- picamera2 through a stand-in ---------------------------------------------------------


def test_main_stream_formats_come_out_rgb():
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    assert main_array_to_rgb(rgb, "BGR888").tolist() == [[[10, 20, 30]]]  # R, G, B in memory
    assert main_array_to_rgb(rgb[..., ::-1], "RGB888").tolist() == [[[10, 20, 30]]]  # B, G, R
    assert main_array_to_rgb(np.array([[[10, 20, 30, 0]]], np.uint8), "XBGR8888").tolist() == [
        [[10, 20, 30]]
    ]
    assert main_array_to_rgb(np.array([[[30, 20, 10, 0]]], np.uint8), "XRGB8888").tolist() == [
        [[10, 20, 30]]
    ]
    with pytest.raises(ValueError):
        main_array_to_rgb(rgb, "YUV420")


class StandInRequest:
    def __init__(self, camera: StandInCamera):
        self.camera = camera

    def make_array(self, name: str) -> np.ndarray:
        if self.camera.make_array_error is not None:
            raise self.camera.make_array_error
        return self.camera.arrays[name]


class StandInCamera:
    """The slice of picamera2.Picamera2 that Picamera2Source uses."""

    def __init__(self, granted_main_format: str | None = None):
        self.granted_main_format = granted_main_format
        self.calls: list[str] = []
        self.config: dict | None = None
        self.arrays: dict[str, np.ndarray] = {}
        self.make_array_error: Exception | None = None
        self.capture_error: Exception | None = None
        self.held = 0  # requests handed out and not yet released
        self.released = 0

    def create_video_configuration(self, main=None, lores=None, **kwargs):
        self.calls.append("create_video_configuration")
        return {"main": dict(main), "lores": dict(lores) if lores else None, **kwargs}

    def configure(self, config):
        self.calls.append("configure")
        if self.granted_main_format:
            config["main"]["format"] = self.granted_main_format
        self.config = config

    def start(self):
        self.calls.append("start")

    @contextlib.contextmanager
    def captured_request(self, wait=None):
        assert wait is not None and wait > 0  # a dead camera must time out
        if self.capture_error is not None:
            raise self.capture_error
        self.held += 1
        try:
            yield StandInRequest(self)
        finally:
            self.held -= 1
            self.released += 1

    def stop(self):
        self.calls.append("stop")

    def close(self):
        self.calls.append("close")


def camera_source(camera: StandInCamera, **kwargs) -> Picamera2Source:
    return Picamera2Source(width=8, height=4, camera_factory=lambda num: camera, **kwargs)


def test_picamera2_asks_for_rgb_in_memory_and_returns_it_unchanged():
    camera = StandInCamera()
    pixels = np.random.default_rng(1).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    camera.arrays["main"] = pixels
    source = camera_source(camera)
    source.open()
    assert camera.config["main"] == {"size": (8, 4), "format": "BGR888"}
    np.testing.assert_array_equal(source.read(), pixels)
    assert camera.held == 0 and camera.released == 1
    source.close()
    assert camera.calls == ["create_video_configuration", "configure", "start", "stop", "close"]


def test_picamera2_swaps_channels_when_granted_bgr_memory_order():
    camera = StandInCamera(granted_main_format="RGB888")  # B, G, R bytes in memory
    camera.arrays["main"] = solid(8, 4, (30, 20, 10))
    source = camera_source(camera)
    source.open()
    assert tuple(source.read()[0, 0]) == (10, 20, 30)


def test_picamera2_releases_the_request_when_make_array_fails():
    camera = StandInCamera()
    camera.make_array_error = RuntimeError("buffer mapping failed")
    source = camera_source(camera)
    source.open()
    with pytest.raises(FrameError, match="buffer mapping failed"):
        source.read()
    assert camera.held == 0 and camera.released == 1


def test_picamera2_capture_timeout_is_a_source_error():
    camera = StandInCamera()
    camera.capture_error = TimeoutError("camera timed out")
    source = camera_source(camera)
    source.open()
    with pytest.raises(SourceError, match="timed out"):
        source.read()


def test_picamera2_that_cannot_start_is_a_source_error_and_closes_the_camera():
    camera = StandInCamera()
    camera.start = lambda: (_ for _ in ()).throw(
        RuntimeError("Pipeline handler in use by another process")
    )
    source = camera_source(camera)
    with pytest.raises(SourceError, match="in use"):
        source.open()
    assert camera.calls[-1] == "close"

    def no_camera(num):
        raise IndexError("list index out of range")

    with pytest.raises(SourceError):
        Picamera2Source(width=8, height=4, camera_factory=no_camera).open()


def test_picamera2_lores_stream_is_converted_with_its_stride():
    camera = StandInCamera()
    camera.arrays["main"] = solid(8, 4, (1, 2, 3))
    y, u, v, buf = make_i420(4, 2, 16, seed=3)
    camera.arrays["lores"] = buf.reshape(3, 16)  # make_array gives (h * 3/2, stride)
    source = camera_source(camera, lores_size=(4, 2))
    source.open()
    assert camera.config["lores"] == {"size": (4, 2), "format": "YUV420"}
    source.read()
    np.testing.assert_array_equal(source.last_lores, yuv420_to_rgb(buf, 4, 2, 16))
    assert camera.held == 0


@pytest.mark.parametrize(
    ("main", "box", "lores"),
    [
        ((640, 480), (353, 257), (342, 256)),  # the default model input: height limits
        ((640, 480), (257, 353), (256, 192)),  # portrait model input: width limits
        ((640, 480), (1281, 721), (640, 480)),  # never larger than main
        ((1280, 720), (481, 353), (480, 270)),
    ],
)
def test_lores_keeps_the_main_aspect_inside_the_model_input_box(main, box, lores):
    assert sources.fit_lores_size(main, box) == lores


def test_picamera2_asks_for_a_lores_stream_fitted_to_the_model_input():
    camera = StandInCamera()
    source = Picamera2Source(
        width=640, height=480, lores_size=(353, 257), camera_factory=lambda num: camera
    )
    source.open()
    assert camera.config["lores"] == {"size": (342, 256), "format": "YUV420"}
    assert source.last_lores is None  # nothing read yet


def test_camera_stack_is_imported_only_inside_the_picamera2_code():
    text = Path(sources.__file__).read_text()
    assert not re.search(r"^(from|import) (picamera2|libcamera)\b", text, re.M)
    assert re.search(r"^\s+from picamera2 import Picamera2", text, re.M)


def test_picamera2_is_asked_for_the_frame_rate_it_needs():
    camera = StandInCamera()
    camera.arrays["main"] = np.zeros((4, 8, 3), np.uint8)
    source = camera_source(camera, fps=10.0)
    source.open()
    assert camera.config["controls"] == {"FrameRate": 10.0}
    source.close()
    plain = StandInCamera()
    camera_source(plain).open()
    assert "controls" not in plain.config


@pytest.mark.parametrize(("uri", "device"), [("picamera2", True), ("picamera2:1", True), ("/dev/video0", True),
                                             ("demo", False), ("rtsp://cam/1", False), ("clip.mp4", False)])
def test_device_sources_are_the_ones_a_running_service_holds(uri, device):
    from edgepose.sources import is_device_source

    assert is_device_source(uri) is device
