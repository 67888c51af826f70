"""Frame sources: one `source.uri` string picks where RGB frames come from.

Every source follows `FrameSource`: `open()`, `read()` until it returns None
(end of stream), `close()`. Errors follow one rule so the capture loop can
treat every source alike: `SourceError` when the source as a whole fails (it
is closed and reopened after a back-off), `FrameError` when one frame is bad
(it is counted and skipped).

picamera2 and libcamera are imported only inside `Picamera2Source`, so this
module loads on machines without a Pi camera stack. The sources stay in one module
because they share that error rule and `open_source`'s parsing of the URI, and each is
small; a new kind of source is one class here and one branch in `open_source`.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from .errors import ConfigError, FrameError, SourceError, SourceUnavailable
from .images import IMAGE_SUFFIXES, list_images, read_rgb

log = logging.getLogger(__name__)

#: Network schemes PyAV opens as live streams.
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
#: Seconds a network stream may take to connect, then to deliver each packet,
#: before it counts as dead (a dead RTSP server must raise, not hang).
STREAM_OPEN_TIMEOUT_S = 10.0
STREAM_READ_TIMEOUT_S = 10.0
#: Seconds picamera2 may take to complete one request before the camera counts as gone.
CAMERA_READ_TIMEOUT_S = 5.0
#: The folder of bundled demo photos inside the package.
DEMO_PACKAGE_DIR = "demo"
#: Frames each demo photo is shown for (2 s at the demo config's 5 fps).
DEMO_FRAMES_PER_PHOTO = 10


@runtime_checkable
class FrameSource(Protocol):
    """Where frames come from. Not thread-safe: one reader at a time."""

    #: True when frames arrive in real time whether or not they are read
    #: (cameras, network streams): the capture loop then reads every frame and
    #: skips the surplus, since reading late would return stale frames. False for
    #: files and folders, which the capture loop paces by waiting before `read()`.
    live: bool

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None:
        """The next frame, (H, W, 3) uint8 RGB; None at the end of the stream."""
        ...

    def close(self) -> None: ...

    def describe(self) -> str:
        """Where frames come from, for logs and status; never contains secrets."""
        ...

    # Optional: `scene_cut`, True when the frame just read shows a scene unrelated
    # to the one before (the demo's next photo); the capture loop copies it into
    # `Frame.scene_cut`. A camera or a video file never sets it.


# --- URI handling --------------------------------------------------------------


def redact_uri(uri: str) -> str:
    """`uri` with any password and query values replaced by ***, for logs."""
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return uri
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        query = urlencode([(key, "***") for key, _ in parse_qsl(query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def open_source(
    uri: str,
    *,
    width: int,
    height: int,
    loop: bool,
    lores_size: tuple[int, int] | None = None,
    fps: float | None = None,
) -> FrameSource:
    """The source `uri` names, not yet opened.

    `uri` is "demo", "picamera2" (or "picamera2:N" for camera N), "/dev/videoN",
    an rtsp/rtsps/http/https URL, a directory of images, or a video file.
    `width` x `height` is the capture size asked of cameras (ignored by files).
    `loop` restarts files and folders at their end (the demo always loops).
    `lores_size` (w, h) adds picamera2's small inference stream. `fps` asks the
    Pi camera or a V4L2 camera for that frame rate (None: the camera's default), so
    it does not deliver frames that would only be skipped.

    Raises ConfigError for a URI no source understands; problems reaching the
    source are left to `open()`, which raises SourceError and can be retried.
    """
    uri = uri.strip()
    if not uri:
        raise ConfigError("source.uri: must not be empty")
    if uri == "demo":
        return DemoSource()
    if uri == "picamera2" or uri.startswith("picamera2:"):
        camera_num = _camera_number(uri)
        return Picamera2Source(
            width=width, height=height, lores_size=lores_size, camera_num=camera_num, fps=fps
        )
    scheme = urlsplit(uri).scheme.lower()
    if scheme in STREAM_SCHEMES:
        return StreamSource(uri)
    if scheme == "file":
        uri = urlsplit(uri).path
    elif scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ConfigError(
            f"source.uri: unsupported scheme {scheme!r} (use demo, picamera2, /dev/videoN, "
            f"{', '.join(s + '://' for s in STREAM_SCHEMES)}, a video file or an image folder)"
        )
    if uri.startswith("/dev/video"):
        return V4l2Source(uri, width=width, height=height, fps=fps)
    path = Path(uri).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, loop=loop)
    return VideoFileSource(path, loop=loop)


def is_device_source(uri: str) -> bool:
    """A camera only one process can hold at a time (the Pi camera, a V4L2 device)."""
    uri = uri.strip()
    return uri == "picamera2" or uri.startswith("picamera2:") or uri.startswith("/dev/video")


#: What opening a camera another process holds raises: the kernel's EBUSY for a V4L2
#: device, libcamera's words for the Pi camera.
BUSY_TEXTS = ("Device or resource busy", "Pipeline handler in use by another process")


def is_busy_error(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, says the device is busy."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.EBUSY:
            return True
        if any(text in str(exc) for text in BUSY_TEXTS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def holds_camera(uri: str, open_file: str) -> bool:
    """Whether `open_file` (where a /proc/<pid>/fd link points) is the camera `uri` names:
    the V4L2 device itself (symlinks such as /dev/v4l/by-id/... resolved), or for the
    Pi camera a media controller device, which libcamera keeps open while it runs."""
    uri = uri.strip()
    if uri == "picamera2" or uri.startswith("picamera2:"):
        return open_file.startswith("/dev/media")
    return open_file == os.path.realpath(uri)


@dataclass(frozen=True, slots=True)
class SourceProbe:
    """What `probe_source` found: ok, a line for the user, and whether the failure was a
    busy device (another process holds the camera)."""

    ok: bool
    detail: str
    busy: bool = False


def _camera_number(uri: str) -> int:
    _, _, number = uri.partition(":")
    if not number:
        return 0
    if not number.isdigit():
        raise ConfigError(f"source.uri: camera number in {uri!r} must be a whole number")
    return int(number)


def probe_source(
    uri: str,
    *,
    width: int,
    height: int,
    lores_size: tuple[int, int] | None = None,
    max_bad_frames: int = 10,
) -> SourceProbe:
    """Open the source, read one good frame, close it: for `edgepose check`.

    Ok with "WxH frames from ...", or not with why not. Never raises for a
    source problem; a bad URI gives the config message.
    """
    try:
        source = open_source(uri, width=width, height=height, loop=False, lores_size=lores_size)
    except ConfigError as exc:
        return SourceProbe(False, str(exc))
    try:
        source.open()
        for _ in range(max_bad_frames):
            try:
                rgb = source.read()
            except FrameError as exc:
                log.debug("probe: skipping a bad frame: %s", exc)
                continue
            if rgb is None:
                return SourceProbe(False, f"{source.describe()}: no frames (empty stream)")
            return SourceProbe(True, f"{rgb.shape[1]}x{rgb.shape[0]} frames from {source.describe()}")
        return SourceProbe(False, f"{source.describe()}: {max_bad_frames} bad frames in a row")
    except SourceError as exc:
        return SourceProbe(False, str(exc), busy=is_busy_error(exc))
    finally:
        source.close()


# --- Image folders and the demo --------------------------------------------------


class ImageFolderSource:
    """Sorted image files (images.IMAGE_SUFFIXES) of one folder, one frame each."""

    live = False

    def __init__(self, folder: Path | str, *, loop: bool, name: str | None = None):
        self._folder = Path(folder)
        self._loop = loop
        self._name = name or f"image folder {self._folder}"
        self._paths: list[Path] = []
        self._next = 0
        self._good_this_pass = 0

    def open(self) -> None:
        try:
            self._paths = list_images(self._folder)
        except OSError as exc:
            raise SourceError(f"{self._name}: cannot list images: {exc}") from exc
        if not self._paths:
            raise SourceError(
                f"{self._name}: no {'/'.join(IMAGE_SUFFIXES)} files in {self._folder}"
            )
        self._next = 0
        self._good_this_pass = 0

    def read(self) -> np.ndarray | None:
        if not self._paths:
            raise SourceError(f"{self._name}: read() before open()")
        if self._next >= len(self._paths):
            if not self._loop:
                return None
            if self._good_this_pass == 0:
                # Looping over nothing but broken files would spin forever.
                raise SourceError(f"{self._name}: none of the images can be decoded")
            self._next = 0
            self._good_this_pass = 0
        path = self._paths[self._next]
        self._next += 1
        rgb = read_rgb(path)
        self._good_this_pass += 1
        return rgb

    def close(self) -> None:
        self._paths = []

    def describe(self) -> str:
        return self._name


def demo_dir() -> Path:
    """The folder of bundled demo photos (package data)."""
    return Path(str(resources.files("edgepose").joinpath(DEMO_PACKAGE_DIR)))


class DemoSource(ImageFolderSource):
    """The bundled photos of people (edgepose/demo/), always looping, each held for
    `frames_per_photo` frames: like a scene a camera watches, a person stays long
    enough to count as entered (presence.enter_s) and keeps one track id. The next
    photo shows other people: its first frame is marked as a scene cut, so nobody
    in it inherits the track id of someone in the photo before."""

    def __init__(self, frames_per_photo: int = DEMO_FRAMES_PER_PHOTO) -> None:
        super().__init__(demo_dir(), loop=True, name="demo photos")
        self._frames_per_photo = frames_per_photo
        self._held: np.ndarray | None = None
        self._shown = 0
        #: True when the last read started a photo (see FrameSource).
        self.scene_cut = False

    def read(self) -> np.ndarray | None:
        self.scene_cut = False
        if self._held is None or self._shown % self._frames_per_photo == 0:
            self._held = super().read()  # a bad photo raises and the next call moves on
            self.scene_cut = True
        self._shown += 1
        return self._held


# --- PyAV: V4L2 cameras, network streams, video files ------------------------------


class PyAvSource:
    """Anything FFmpeg opens, decoded with PyAV to RGB frames.

    Subclasses only say how to open the container; reading is shared.
    """

    live = True

    def __init__(self, target: str, *, loop: bool = False):
        self._target = target
        self._loop = loop
        self._container: Any = None
        self._stream: Any = None
        self._packets: Iterator[Any] | None = None
        self._pending: list[Any] = []
        self._frames_this_pass = 0

    # Subclasses override these two.
    def _open_args(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return redact_uri(self._target)

    def open(self) -> None:
        import av

        self.close()
        try:
            container = av.open(self._target, mode="r", **self._open_args())
        except Exception as exc:  # PyAV raises FFmpegError, OSError, ValueError...
            raise SourceError(f"{self.describe()}: cannot open: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.describe()}: has no video stream")
        self._container = container
        self._stream = container.streams.video[0]
        if not self.live:
            # Frame threads decode files faster but hold frames back: not for live streams.
            self._stream.thread_type = "AUTO"
        self._packets = container.demux(self._stream)
        self._pending = []
        self._frames_this_pass = 0

    def read(self) -> np.ndarray | None:
        frame = self.grab()
        return None if frame is None else self.convert(frame)

    def grab(self) -> Any | None:
        """The next decoded frame, not yet converted to RGB (None at the end): the
        capture loop converts only the frames it keeps (`convert`)."""
        if self._container is None:
            raise SourceError(f"{self.describe()}: read() before open()")
        while not self._pending:
            packet = self._next_packet()
            if packet is None:
                if not self._restart_at_end():
                    return None
                continue
            try:
                self._pending = list(packet.decode())
            except Exception as exc:  # av.error.InvalidDataError and friends
                raise FrameError(f"{self.describe()}: cannot decode a packet: {exc}") from exc
        self._frames_this_pass += 1
        return self._pending.pop(0)

    def convert(self, frame: Any) -> np.ndarray:
        """(H, W, 3) uint8 RGB of a grabbed frame."""
        try:
            return frame.to_ndarray(format="rgb24")
        except Exception as exc:
            raise FrameError(f"{self.describe()}: cannot convert a frame: {exc}") from exc

    def _next_packet(self) -> Any | None:
        """The next packet of the video stream; None at the end of the container."""
        assert self._packets is not None
        try:
            return next(self._packets)
        except StopIteration:
            return None
        except Exception as exc:  # the stream dropped, timed out, or the file is cut short
            if "Immediate exit requested" in str(exc):  # FFmpeg's words for PyAV's timeout
                raise SourceError(
                    f"{self.describe()}: stream stalled: no data for {STREAM_READ_TIMEOUT_S:g} s"
                ) from exc
            raise SourceError(f"{self.describe()}: stream failed: {exc}") from exc

    def _restart_at_end(self) -> bool:
        """Reopen a looping file at its end; False when the stream is over."""
        if not self._loop:
            return False
        if self._frames_this_pass == 0:
            raise SourceError(f"{self.describe()}: no decodable frames to loop over")
        log.debug("%s: end of file, starting again", self.describe())
        self.open()  # reopening is more robust than seeking across formats
        return True

    def close(self) -> None:
        container, self._container = self._container, None
        self._stream = None
        self._packets = None
        self._pending = []
        if container is not None:
            try:
                container.close()
            except Exception as exc:
                log.debug("%s: error while closing: %s", self.describe(), exc)


class V4l2Source(PyAvSource):
    """A USB (UVC) camera through Video4Linux2."""

    def __init__(self, device: str, *, width: int, height: int, fps: float | None = None):
        super().__init__(device)
        self._width = width
        self._height = height
        self._fps = fps

    def _open_args(self) -> dict[str, Any]:
        options = {"video_size": f"{self._width}x{self._height}"}
        if self._fps:
            options["framerate"] = f"{self._fps:g}"
        return {
            "format": "v4l2",
            "options": options,
            "timeout": (STREAM_OPEN_TIMEOUT_S, STREAM_READ_TIMEOUT_S),
        }

    def open(self) -> None:
        try:
            super().open()
        except SourceError as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.ENOENT:
                # Unplugged, or another number: retried like any camera that may come back.
                raise SourceError(f"{self.describe()}: no such device (is the camera plugged in? "
                                  "ls /dev/video*)") from exc
            raise

    def describe(self) -> str:
        return f"V4L2 camera {self._target} ({self._width}x{self._height})"


class StreamSource(PyAvSource):
    """An RTSP(S) or HTTP(S) stream; a silent server raises instead of hanging."""

    def _open_args(self) -> dict[str, Any]:
        options: dict[str, str] = {}
        if urlsplit(self._target).scheme.lower() in ("rtsp", "rtsps"):
            # TCP survives NAT and Wi-Fi loss better than UDP; "timeout" is the
            # RTSP socket timeout in microseconds (FFmpeg >= 5; older called it stimeout).
            options["rtsp_transport"] = "tcp"
            options["timeout"] = str(int(STREAM_READ_TIMEOUT_S * 1_000_000))
        else:
            options["rw_timeout"] = str(int(STREAM_READ_TIMEOUT_S * 1_000_000))
        # PyAV's own timeout interrupts FFmpeg whatever the protocol.
        return {"options": options, "timeout": (STREAM_OPEN_TIMEOUT_S, STREAM_READ_TIMEOUT_S)}

    def describe(self) -> str:
        return f"stream {redact_uri(self._target)}"


class VideoFileSource(PyAvSource):
    """A video file; `loop` starts it again at its end."""

    live = False

    def __init__(self, path: Path | str, *, loop: bool):
        super().__init__(os.fspath(path), loop=loop)

    def open(self) -> None:
        path = Path(self._target)
        if not path.exists():
            # Not a camera that may come back: retrying would only hide the mistake.
            raise SourceUnavailable(f"{self.describe()}: no such file (source.uri)")
        if not path.is_file():
            raise SourceUnavailable(f"{self.describe()}: not a regular file (source.uri)")
        super().open()

    def describe(self) -> str:
        return f"video file {self._target}"


# --- picamera2 ---------------------------------------------------------------------


def yuv420_to_rgb(
    buf: np.ndarray | bytes, width: int, height: int, stride: int, *, full_range: bool = True
) -> np.ndarray:
    """(height, width, 3) uint8 RGB from one planar YUV420 (I420) buffer.

    `buf` holds the Y plane (height rows of `stride` bytes), then U and V
    (height/2 rows of stride/2 bytes each), as libcamera lays them out; the
    bytes past `width` on each row are padding. picamera2's make_array gives it
    as a (height * 3/2, stride) array. Colours are BT.601: full range (sYCC,
    JPEG) by default, else limited range (SMPTE 170M). Chroma is upsampled by
    repeating each sample over its 2x2 block.
    """
    if width % 2 or height % 2:
        raise ValueError(f"YUV420 needs even sizes, got {width}x{height}")
    if stride < width or stride % 2:
        raise ValueError(f"stride {stride} must be even and at least the width {width}")
    if isinstance(buf, (bytes, bytearray, memoryview)):
        flat = np.frombuffer(buf, dtype=np.uint8)
    else:
        flat = np.asarray(buf, dtype=np.uint8).reshape(-1)
    y_size = height * stride
    c_rows, c_stride = height // 2, stride // 2
    c_size = c_rows * c_stride
    if flat.size < y_size + 2 * c_size:
        raise ValueError(
            f"YUV420 buffer of {flat.size} bytes is too small for {width}x{height}, stride {stride}"
        )
    y = flat[:y_size].reshape(height, stride)[:, :width].astype(np.float32)
    u = flat[y_size : y_size + c_size].reshape(c_rows, c_stride)[:, : width // 2]
    v = flat[y_size + c_size : y_size + 2 * c_size].reshape(c_rows, c_stride)[:, : width // 2]
    u = u.astype(np.float32) - 128.0
    v = v.astype(np.float32) - 128.0
    if full_range:
        r_v, g_u, g_v, b_u = 1.402, 0.344136, 0.714136, 1.772
    else:
        y = 1.164383 * (y - 16.0)
        r_v, g_u, g_v, b_u = 1.596027, 0.391762, 0.812968, 2.017232
    # This runs per frame on the Pi: rather than repeating chroma to full size,
    # view luma as 2x2 blocks, (h/2, 2, w/2, 2), broadcast each chroma term over
    # its block and write straight into one interleaved buffer (no full-size
    # temporaries; about 3x faster, same bytes).
    y = y.reshape(c_rows, 2, width // 2, 2)
    u, v = u[:, None, :, None], v[:, None, :, None]
    rgb = np.empty((*y.shape, 3), np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    np.add(y, r_v * v, out=r)
    np.subtract(y, g_u * u, out=g)
    g -= g_v * v
    np.add(y, b_u * u, out=b)
    np.clip(np.rint(rgb, out=rgb), 0, 255, out=rgb)
    return rgb.reshape(height, width, 3).astype(np.uint8)


def main_array_to_rgb(array: np.ndarray, fmt: str) -> np.ndarray:
    """(H, W, 3) RGB from picamera2's main-stream array in pixel format `fmt`.

    libcamera names formats by the order of a little-endian word, so the bytes
    in memory run the other way: "RGB888" is B, G, R in memory and "BGR888" is
    R, G, B (picamera2 maps them to PIL's "BGR" and "RGB" modes).
    """
    if fmt == "BGR888":
        return array
    if fmt == "RGB888":
        return np.ascontiguousarray(array[..., ::-1])
    if fmt == "XBGR8888":  # R, G, B, X in memory
        return np.ascontiguousarray(array[..., :3])
    if fmt == "XRGB8888":  # B, G, R, X in memory
        return np.ascontiguousarray(array[..., 2::-1])
    raise ValueError(f"main stream format {fmt!r} is not an RGB format")


#: What the main stream asks for: R, G, B bytes in memory, see main_array_to_rgb.
PICAMERA2_MAIN_FORMAT = "BGR888"
PICAMERA2_LORES_FORMAT = "YUV420"


def _open_picamera2(camera_num: int) -> Any:
    try:
        from picamera2 import Picamera2  # apt python3-picamera2; only here
    except ImportError as exc:
        raise SourceUnavailable(
            f"the Pi camera (source.uri = \"picamera2\") needs picamera2, which is not installed "
            f"({exc}): on Raspberry Pi OS run sudo ./install.sh (python3-picamera2); elsewhere set "
            "source.uri to /dev/videoN, an rtsp:// or http:// stream, a video file, an image "
            "folder, or \"demo\" for the bundled photos"
        ) from exc
    return Picamera2(camera_num)


def _sycc_colour_space() -> Any | None:
    """libcamera's sYCC (BT.601 full range), so lores matches yuv420_to_rgb; None without libcamera."""
    try:
        from libcamera import ColorSpace
    except ImportError:
        return None
    return ColorSpace.Sycc()


def fit_lores_size(main_size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest even (w, h) with the main stream's aspect that fits in `box` and in main.

    The ISP scales lores from the same sensor crop as main, so a lores of another
    aspect would be a distorted picture; fitting it in the model's input box
    gives the part of the letterboxed input that holds the picture.
    """
    main_w, main_h = main_size
    scale = min(box[0] / main_w, box[1] / main_h, 1.0)
    width = max(2, int(main_w * scale) // 2 * 2)
    height = max(2, int(main_h * scale) // 2 * 2)
    return width, height


class Picamera2Source:
    """The Pi camera through picamera2: main stream for frames, optional lores for inference.

    `read()` returns the main stream (width x height) as RGB: the frame that
    snapshots and overlays use. With `lores_size` (typically the model's input
    size), the camera also delivers a small YUV420 stream of the same picture,
    fitted inside that box by `fit_lores_size`; `last_lores` gives it for the
    last frame read as (h, w, 3) RGB, converted only when asked, so inference
    can skip resizing the main frame. The camera object is reached only through
    create_video_configuration, configure, start, captured_request, stop and
    close, so tests pass a stand-in through `camera_factory`.
    """

    live = True

    def __init__(
        self,
        *,
        width: int,
        height: int,
        lores_size: tuple[int, int] | None = None,
        camera_num: int = 0,
        camera_factory: Callable[[int], Any] | None = None,
        read_timeout_s: float = CAMERA_READ_TIMEOUT_S,
        fps: float | None = None,
    ):
        self._fps = fps
        self._width = width
        self._height = height
        self._lores_size = fit_lores_size((width, height), lores_size) if lores_size else None
        self._camera_num = camera_num
        self._camera_factory = camera_factory or _open_picamera2
        self._read_timeout_s = read_timeout_s
        self._camera: Any = None
        self._started = False
        self._main_format = PICAMERA2_MAIN_FORMAT
        self._lores_wh: tuple[int, int] | None = None
        self._lores_yuv: np.ndarray | None = None  # (h * 3/2, stride) of the last frame
        self._lores_rgb: np.ndarray | None = None

    @property
    def last_lores(self) -> np.ndarray | None:
        """(h, w, 3) uint8 RGB of the lores stream of the last frame read; None without lores."""
        if self._lores_rgb is None and self._lores_yuv is not None:
            lores_w, lores_h = self._lores_wh
            self._lores_rgb = yuv420_to_rgb(
                self._lores_yuv, lores_w, lores_h, self._lores_yuv.shape[-1]
            )
        return self._lores_rgb

    def open(self) -> None:
        self.close()
        try:
            self._camera = self._camera_factory(self._camera_num)
            main = {"size": (self._width, self._height), "format": PICAMERA2_MAIN_FORMAT}
            kwargs: dict[str, Any] = {"main": main}
            if self._lores_size is not None:
                kwargs["lores"] = {
                    "size": tuple(self._lores_size),
                    "format": PICAMERA2_LORES_FORMAT,
                }
                colour_space = _sycc_colour_space()
                if colour_space is not None:
                    kwargs["colour_space"] = colour_space
            if self._fps:
                kwargs["controls"] = {"FrameRate": float(self._fps)}
            config = self._camera.create_video_configuration(**kwargs)
            self._camera.configure(config)
            # configure() updates the stream dicts in place with what libcamera granted.
            self._main_format = config["main"].get("format", PICAMERA2_MAIN_FORMAT)
            if self._lores_size is not None:
                self._lores_wh = tuple(config["lores"].get("size", self._lores_size))
            self._camera.start()
            self._started = True
        except SourceUnavailable:
            self.close()
            raise
        except Exception as exc:  # no camera, "Pipeline handler in use", bad config...
            self.close()
            raise SourceError(f"{self.describe()}: cannot start camera: {exc}") from exc

    def read(self) -> np.ndarray | None:
        if self._camera is None:
            raise SourceError(f"{self.describe()}: read() before open()")
        try:
            # The context manager releases the request whatever happens inside;
            # a leaked request stalls the camera.
            with self._camera.captured_request(wait=self._read_timeout_s) as request:
                return self._convert(request)
        except FrameError:
            raise
        except Exception as exc:  # timeout, or the camera went away
            raise SourceError(f"{self.describe()}: no frame from the camera: {exc}") from exc

    def _convert(self, request: Any) -> np.ndarray:
        """Main-stream RGB of one request (and its lores copy); FrameError for a bad buffer."""
        self._lores_yuv = self._lores_rgb = None
        try:
            rgb = main_array_to_rgb(request.make_array("main"), self._main_format)
            if self._lores_wh is not None:
                # make_array copies, so the buffer can go back to the camera now.
                self._lores_yuv = request.make_array("lores")  # (h * 3/2, stride) uint8
        except Exception as exc:
            raise FrameError(f"{self.describe()}: bad camera buffer: {exc}") from exc
        return rgb

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        if self._started:
            self._started = False
            try:
                camera.stop()
            except Exception as exc:
                log.debug("%s: error while stopping: %s", self.describe(), exc)
        try:
            camera.close()  # frees the camera for the next open (else "in use")
        except Exception as exc:
            log.debug("%s: error while closing: %s", self.describe(), exc)

    def describe(self) -> str:
        lores = f", lores {self._lores_size[0]}x{self._lores_size[1]}" if self._lores_size else ""
        return f"picamera2 camera {self._camera_num} ({self._width}x{self._height}{lores})"
