"""Safe video decoding with PyAV: probe, then sample upright RGB frames.

Frames are chosen in two passes over the file. The first pass only demuxes (no decoding): it
lists every video packet's timestamp, which gives the exact frame count, duration and
presentation order in any container. The sampled positions are picked from that list, and the
second pass decodes sequentially, converting only the chosen frames to RGB, and stops after
the last one. The container format is decided by content and forced when opening, so FFmpeg
never follows playlists or other indirections; paths are read through Python file objects,
never handed to FFmpeg as URLs.
"""

from __future__ import annotations

import io
import math
import os
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import av
import av.error
import numpy as np

from facetrust.errors import InputError, MediaError
from facetrust.media.budget import check_deadline, current_budget
from facetrust.media.sniff import (
    HEAD_BYTES,
    check_byte_limit,
    image_format,
    one_line,
    open_regular_file,
    video_format,
)

__all__ = ["VideoFrame", "VideoInfo", "probe_video", "read_video_frames"]

VideoSource = str | os.PathLike | bytes | bytearray | memoryview

#: Largest decoded frame, in pixels.
MAX_FRAME_PIXELS = 50_000_000
#: Largest number of video packets indexed (a 3-hour video at 240 fps has 2.6 million).
MAX_PACKETS = 5_000_000
_DEFAULT_MAX_BYTES = 2 * 1024**3
_SUPPORTED = "MP4/MOV/AVI/MKV/WEBM"
# Frame rate assumed for timing when a stream declares none and has no timestamps.
_FALLBACK_RATE = 25.0

# What PyAV/FFmpeg raise on bad data (av.error.FFmpegError covers the FFmpeg error codes).
_AV_ERRORS: tuple[type[BaseException], ...] = (
    av.error.FFmpegError,
    OSError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    NotImplementedError,
)


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    ``index`` is the frame's position in presentation order (0 = first frame), ``time_s`` its
    time in seconds from the first frame, ``image`` an upright ``HxWx3`` uint8 RGB array.
    """

    index: int
    time_s: float
    image: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream declares.

    ``width`` and ``height`` are those of the upright frames (after rotation). ``rotation`` is
    the clockwise turn, in degrees (0, 90, 180 or 270), that makes the stored frames upright;
    frames returned by :func:`read_video_frames` already have it applied. ``duration_s`` and
    ``frame_count`` are ``None`` when the container does not say (``read_video_frames``
    fills both in from the packet index).
    """

    width: int
    height: int
    fps: float
    duration_s: float | None
    frame_count: int | None
    rotation: int
    codec: str


def probe_video(source: VideoSource, *, max_bytes: int = _DEFAULT_MAX_BYTES) -> VideoInfo:
    """Read a video's header and its first frame (for the rotation); return its :class:`VideoInfo`.

    ``source`` is a file path or the file's bytes. Raises MediaError when it is not a readable
    video, has no video stream or no decodable frame.
    """
    with _open_container(source, max_bytes) as container:
        stream = _video_stream(container)
        first = _first_frame(container, stream)
        rotation = _rotation_cw(first, stream)
        return _info(stream, container, rotation, frame_count=_declared_frames(stream))


def read_video_frames(
    source: VideoSource,
    num_frames: int = 16,
    fps: float | None = None,
    max_frames: int = 10_000,
    max_seconds: float = 3 * 3600,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> tuple[VideoInfo, list[VideoFrame]]:
    """Decode upright RGB frames from a video (MP4, MOV, AVI, MKV, WEBM).

    Without ``fps``: ``num_frames`` frames spread evenly over the duration, from the first
    frame to the last, each the frame nearest its target time. With ``fps``: the frame nearest
    to every ``1/fps`` seconds from the first frame, at most ``max_frames``. No frame is
    returned twice, so a video with fewer frames than asked gives all of them. Frames come in
    increasing index order. ``source`` is a file path or the file's bytes.

    The work budget in force (:mod:`facetrust.media.budget`) applies: a video whose decoding
    (every frame up to the last sampled one, times the frame size) exceeds
    ``max_video_decode_pixels`` is refused after the demux-only pass, before any frame is
    decoded; when the sampled frames would hold more than ``max_video_decoded_bytes`` of RGB
    they are converted at a reduced size (same aspect ratio); the deadline is checked between
    frames.

    Raises InputError for bad arguments; MediaError for an empty, unreadable or corrupt file,
    one without a video stream or decodable frames, one longer than ``max_seconds`` or larger
    than ``max_bytes``, or frames above 50 MP.
    """
    budget = current_budget()
    _check_int("num_frames", num_frames)
    _check_int("max_frames", max_frames)
    _check_int("max_bytes", max_bytes)
    if num_frames > max_frames:
        raise InputError(f"num_frames={num_frames} exceeds max_frames={max_frames}")
    if fps is not None:
        _check_positive("fps", fps)
    _check_positive("max_seconds", max_seconds)

    # Pass 1: index the packets (demux only, nothing decoded) and choose positions.
    with _open_container(source, max_bytes) as container:
        stream = _video_stream(container)
        declared = _declared_duration(stream, container)
        if declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds)
        stamps, has_pts = _packet_timestamps(container, stream)
        time_base = float(stream.time_base) if stream.time_base else 0.0
        rate = _declared_rate(stream)
        stream_duration = _stream_duration(stream)
        frame_w, frame_h = int(stream.codec_context.width), int(stream.codec_context.height)
    if len(stamps) == 0:
        raise MediaError("video has no decodable frames")
    if not has_pts or time_base <= 0:
        has_pts = False
        times = np.arange(len(stamps), dtype=np.float64) / (rate or _FALLBACK_RATE)
    else:
        times = (stamps - stamps[0]).astype(np.float64) * time_base
    span = float(times[-1])
    if span > max_seconds:
        raise _too_long(span, max_seconds)
    if rate <= 0:
        rate = (len(times) - 1) / span if span > 0 else 0.0
    if fps is None:
        positions = _uniform_positions(times, num_frames)
    else:
        positions = _fps_positions(times, fps, max_frames)
    decode_pixels = (int(positions[-1]) + 1) * frame_w * frame_h
    if decode_pixels > budget.max_video_decode_pixels:
        raise MediaError(
            f"video is too large to analyse: {int(positions[-1]) + 1} frames of "
            f"{frame_w}x{frame_h} to decode ({decode_pixels / 1e9:.1f} gigapixels) exceed the "
            f"{budget.max_video_decode_pixels / 1e9:.1f} gigapixel budget"
        )
    check_deadline("indexing the video")
    per_frame = budget.max_video_decoded_bytes // (3 * len(positions))

    # Pass 2: decode sequentially, convert only the chosen frames, stop after the last one.
    with _open_container(source, max_bytes) as container:
        stream = _video_stream(container)
        timing = _Timing(stamps, times, has_pts, time_base, rate)
        frames, rotation, decoded, reached_end = _decode_positions(
            container, stream, positions, timing, max(1, per_frame)
        )
        if not frames:
            raise MediaError("video has no decodable frames")
        duration = stream_duration
        if duration is None:
            duration = span + (1.0 / rate if rate > 0 else 0.0)
        info = _info(
            stream,
            container,
            rotation,
            frame_count=decoded if reached_end else len(stamps),
            duration_s=duration,
            fps=rate,
        )
    return info, frames


# --- opening ---------------------------------------------------------------------------------


@contextmanager
def _open_container(source: VideoSource, max_bytes: int) -> Iterator[Any]:
    """Open ``source`` as an input container whose format was sniffed from its content."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        check_byte_limit(len(data), max_bytes)
        with io.BytesIO(data) as f, _open_av(f) as container:
            yield container
        return
    if isinstance(source, str | os.PathLike):
        with open_regular_file(source) as f:
            check_byte_limit(os.fstat(f.fileno()).st_size, max_bytes)
            with _open_av(f) as container:
                yield container
        return
    raise InputError(f"cannot read a video from {type(source).__name__}: pass a file path or bytes")


@contextmanager
def _open_av(f: BinaryIO) -> Iterator[Any]:
    head = f.read(HEAD_BYTES)
    f.seek(0)
    fmt = video_format(head)
    if fmt is None:
        if image_format(head) is not None:
            raise MediaError("not a readable video: the content is an image")
        raise MediaError(f"not a readable video: content is not {_SUPPORTED}")
    try:
        container = av.open(f, mode="r", format=fmt)
    except MemoryError:
        raise MediaError("not a readable video: out of memory while opening it") from None
    except _AV_ERRORS as e:
        raise MediaError(f"not a readable video: {_describe(e)}") from None
    with container:
        try:
            yield container
        except MemoryError:
            raise MediaError("video is too large to decode in the available memory") from None
        except (MediaError, InputError):
            raise
        except _AV_ERRORS as e:
            raise MediaError(f"not a readable video: {_describe(e)}") from None


def _describe(e: BaseException) -> str:
    text = getattr(e, "strerror", None) if isinstance(e, av.error.FFmpegError) else None
    text = one_line(text or e).strip()
    return text or type(e).__name__


def _video_stream(container: Any) -> Any:
    """The first real video stream (cover art is skipped); make it decode with threads."""
    attached = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if stream.disposition & attached:
            continue
        if stream.codec_context is None:
            raise MediaError("not a readable video: no decoder for its video codec")
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_FRAME_PIXELS:
            raise _frame_too_large(w, h)
        current_budget().check_aspect(w, h)
        stream.thread_type = "AUTO"
        return stream
    raise MediaError("not a readable video: it has no video stream")


def _frame_too_large(w: int, h: int) -> MediaError:
    return MediaError(
        f"video frame too large: {w}x{h} = {w * h / 1e6:.1f} MP "
        f"exceeds the {MAX_FRAME_PIXELS / 1e6:.1f} MP limit"
    )


def _too_long(seconds: float, max_seconds: float) -> MediaError:
    return MediaError(f"video too long: {seconds:.1f} s exceeds the {max_seconds:.1f} s limit")


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive int, got {value!r}")


def _check_positive(name: str, value: object) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type]
        raise InputError(f"{name} must be a positive number, got {value!r}")


# --- header facts ----------------------------------------------------------------------------


def _declared_duration(stream: Any, container: Any) -> float | None:
    duration = _stream_duration(stream)
    if duration is not None:
        return duration
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _stream_duration(stream: Any) -> float | None:
    if stream.duration is not None and stream.duration > 0 and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _declared_frames(stream: Any) -> int | None:
    return int(stream.frames) if stream.frames and stream.frames > 0 else None


def _declared_rate(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            value = float(rate)
            if math.isfinite(value) and value < 10_000:
                return value
    return 0.0


def _info(
    stream: Any,
    container: Any,
    rotation: int,
    *,
    frame_count: int | None,
    duration_s: float | None = None,
    fps: float | None = None,
) -> VideoInfo:
    w, h = int(stream.codec_context.width), int(stream.codec_context.height)
    if rotation in (90, 270):
        w, h = h, w
    return VideoInfo(
        width=w,
        height=h,
        fps=_declared_rate(stream) if fps is None else fps,
        duration_s=_declared_duration(stream, container) if duration_s is None else duration_s,
        frame_count=frame_count,
        rotation=rotation,
        codec=str(stream.codec_context.name),
    )


# --- rotation --------------------------------------------------------------------------------


def _rotation_cw(frame: Any, stream: Any) -> int:
    """Clockwise degrees (0/90/180/270) that make ``frame`` upright.

    PyAV's ``frame.rotation`` is the display matrix's counter-clockwise angle; old files may
    instead carry a ``rotate`` tag (clockwise) in the stream metadata.
    """
    ccw = getattr(frame, "rotation", 0) or 0
    if ccw:
        return _normalise_rotation(-float(ccw))
    tag = (stream.metadata or {}).get("rotate")
    if tag:
        try:
            return _normalise_rotation(float(tag))
        except ValueError:
            return 0
    return 0


def _normalise_rotation(degrees_cw: float) -> int:
    if not math.isfinite(degrees_cw):
        return 0
    return int(round(degrees_cw / 90.0)) % 4 * 90


def rotate_upright(image: np.ndarray, rotation_cw: int) -> np.ndarray:
    """Turn ``image`` (``HxWxC``) clockwise by ``rotation_cw`` degrees (a multiple of 90)."""
    k = (rotation_cw // 90) % 4
    if k == 0:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(np.rot90(image, k=-k))


def _first_frame(container: Any, stream: Any) -> Any:
    for packet in container.demux(stream):
        try:
            out = packet.decode()
        except av.error.InvalidDataError:
            continue
        for frame in out:
            if frame.width * frame.height > MAX_FRAME_PIXELS:
                raise _frame_too_large(frame.width, frame.height)
            return frame
    raise MediaError("video has no decodable frames")


# --- pass 1: packet index and choice of frames ----------------------------------------------


def _packet_timestamps(container: Any, stream: Any) -> tuple[np.ndarray, bool]:
    """Sorted presentation timestamps of the stream's packets, in the stream time base.

    Returns ``(stamps, True)``; when some packet carries no timestamp at all, returns
    ``(arange(count), False)`` and positions stand in for times.
    """
    stamps = array("q")
    missing = False
    count = 0
    for packet in container.demux(stream):
        if packet.size == 0 or getattr(packet, "is_discard", False):
            continue
        count += 1
        if count > MAX_PACKETS:
            raise MediaError(f"video has too many frames (more than {MAX_PACKETS})")
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            missing = True
        elif not missing:
            stamps.append(ts)
    if missing:
        return np.arange(count, dtype=np.int64), False
    out = np.array(stamps, dtype=np.int64)
    out.sort()
    return out, True


def _nearest(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target time, the position of the nearest time (ties go to the earlier)."""
    right = np.clip(np.searchsorted(times, targets, side="left"), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    # Within a nanosecond counts as a tie, so float noise cannot flip the choice.
    use_left = np.abs(targets - times[left]) <= np.abs(times[right] - targets) + 1e-9
    return np.where(use_left, left, right).astype(np.int64)


def _uniform_positions(times: np.ndarray, num_frames: int) -> np.ndarray:
    """``num_frames`` distinct positions nearest to evenly spaced times (all if fewer)."""
    n = len(times)
    if num_frames >= n:
        return np.arange(n, dtype=np.int64)
    if num_frames == 1:
        targets = np.array([times[-1] / 2.0])
    else:
        targets = np.linspace(0.0, float(times[-1]), num_frames)
    pos = _nearest(times, targets)
    # Variable frame rate can map two targets to one frame: spread them to distinct frames.
    for i in range(1, num_frames):
        pos[i] = max(pos[i], pos[i - 1] + 1)
    for i in range(num_frames - 1, -1, -1):
        upper = n - num_frames + i if i == num_frames - 1 else min(pos[i + 1] - 1, n - 1)
        pos[i] = min(pos[i], upper)
    return pos


def _fps_positions(times: np.ndarray, fps: float, max_frames: int) -> np.ndarray:
    """Positions nearest to every ``1/fps`` seconds, without repeats, at most ``max_frames``."""
    count = min(int(math.floor(float(times[-1]) * fps + 1e-9)) + 1, max_frames)
    targets = np.arange(count, dtype=np.float64) / fps
    return np.unique(_nearest(times, targets))


def _to_rgb(frame: Any, max_pixels: int) -> np.ndarray:
    """The frame as ``HxWx3`` uint8 RGB, scaled down to at most ``max_pixels`` pixels."""
    w, h = frame.width, frame.height
    if w * h <= max_pixels:
        return frame.to_ndarray(format="rgb24")
    k = math.sqrt(max_pixels / (w * h))
    ow, oh = max(2, int(w * k) // 2 * 2), max(2, int(h * k) // 2 * 2)
    return frame.reformat(width=ow, height=oh, format="rgb24", interpolation="AREA").to_ndarray()


# --- pass 2: decoding ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timing:
    stamps: np.ndarray  # sorted packet timestamps (or positions when has_pts is False)
    times: np.ndarray  # seconds from the first frame, per position
    has_pts: bool
    time_base: float
    rate: float

    def position(self, pts: int | None, last: int) -> int:
        """Presentation position of a decoded frame: by its timestamp, else the next one."""
        if self.has_pts and pts is not None:
            i = int(np.searchsorted(self.stamps, pts, side="left"))
            n = len(self.stamps)
            while i < n and i <= last and self.stamps[i] == pts:
                i += 1
            if i < n and self.stamps[i] == pts:
                return i
        return last + 1

    def time_s(self, position: int, pts: int | None) -> float:
        if position < len(self.times):
            return float(self.times[position])
        if self.has_pts and pts is not None:
            return float((pts - int(self.stamps[0])) * self.time_base)
        return position / (self.rate or _FALLBACK_RATE)


def _decode_positions(
    container: Any,
    stream: Any,
    positions: np.ndarray,
    timing: _Timing,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
) -> tuple[list[VideoFrame], int, int, bool]:
    """Decode in order and keep the frames at ``positions``, each converted to RGB at no more
    than ``max_frame_pixels`` pixels (scaled down, aspect ratio kept).

    A chosen frame that never comes out of the decoder (a corrupt packet) is replaced by the
    next decoded frame. Returns the frames, the first frame's rotation, how many frames were
    decoded and whether decoding reached the end of the stream.
    """
    wanted = [int(p) for p in positions]
    frames: list[VideoFrame] = []
    rotation: int | None = None
    j = 0
    last = -1
    decoded = 0
    for packet in container.demux(stream):
        try:
            out = packet.decode()
        except av.error.InvalidDataError:
            continue  # a damaged packet: skip it, as FFmpeg does
        for frame in out:
            decoded += 1
            if decoded % 8 == 0:
                check_deadline("decoding the video")
            last = timing.position(frame.pts, last)
            if rotation is None:
                rotation = _rotation_cw(frame, stream)
            if j < len(wanted) and wanted[j] <= last:
                if frame.width * frame.height > MAX_FRAME_PIXELS:
                    raise _frame_too_large(frame.width, frame.height)
                rgb = _to_rgb(frame, max_frame_pixels)
                image = rotate_upright(rgb, _rotation_cw(frame, stream))
                frames.append(VideoFrame(last, timing.time_s(last, frame.pts), image))
                while j < len(wanted) and wanted[j] <= last:
                    j += 1
            if j == len(wanted):
                return frames, rotation or 0, decoded, False
    return frames, rotation or 0, decoded, True
