"""Synthetic media for the media tests: everything is made here, nothing binary is committed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

VIDEO_SIZE = (64, 48)  # width, height
VIDEO_RATE = 10


def frame_value(i: int) -> int:
    """The flat grey level of synthetic video frame ``i`` (so a frame's content names its index)."""
    return 10 + 8 * i


def encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises different errors for unknown codecs across versions
        return False
    return True


def write_video(
    path: Path,
    codec: str,
    n_frames: int = 30,
    *,
    rate: int = VIDEO_RATE,
    size: tuple[int, int] = VIDEO_SIZE,
    rotation: int | None = None,
    marker: bool = False,
    noise: bool = False,
) -> Path:
    """Write a tiny video whose frame ``i`` is flat grey ``frame_value(i)``.

    ``marker`` paints frames black with a white top-left quadrant instead (for rotation tests);
    ``noise`` adds random noise (so the file is large enough to truncate meaningfully).
    """
    w, h = size
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            if marker:
                img = np.zeros((h, w, 3), np.uint8)
                img[: h // 2, : w // 2] = 255
            else:
                img = np.full((h, w, 3), frame_value(i), np.uint8)
            if noise:
                img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, codec: str = "aac", seconds: float = 0.5) -> Path:
    rate = 44100 if codec == "aac" else 48000
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        fmt = stream.codec_context.format.name
        frame_size = stream.codec_context.frame_size or 1024
        n = int(seconds * rate)
        t = 0
        while t < n:
            samples = np.zeros((1, frame_size), dtype=np.float32)
            if not fmt.endswith("p"):
                samples = samples.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = t
            for packet in stream.encode(frame):
                container.mux(packet)
            t += frame_size
        for packet in stream.encode():
            container.mux(packet)
    return path


class VideoMaker:
    """Writes tiny synthetic videos under a folder; see :func:`write_video` for the content."""

    size = VIDEO_SIZE
    rate = VIDEO_RATE
    frame_value = staticmethod(frame_value)

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, name: str, codec: str, n_frames: int = 30, **options: Any) -> Path:
        if not encoder_available(codec):
            pytest.skip(f"PyAV's bundled FFmpeg has no {codec} encoder")
        return write_video(self.folder / name, codec, n_frames, **options)


@pytest.fixture
def make_video(tmp_path: Path) -> VideoMaker:
    """``make_video(name, codec, n_frames=30, **options) -> path`` under ``tmp_path``."""
    return VideoMaker(tmp_path)


@pytest.fixture
def make_audio_only(tmp_path: Path) -> Callable[[str], Path]:
    """``make_audio_only(name) -> path``: an AAC-only file (no video stream)."""

    def make(name: str) -> Path:
        if not encoder_available("aac"):
            pytest.skip("PyAV's bundled FFmpeg has no aac encoder")
        return write_audio_only(tmp_path / name)

    return make
