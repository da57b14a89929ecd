"""Small files that cost a lot to process: the cases of issue 16, made here (nothing downloaded).

Each is a few KB or MB on the wire and would take minutes of CPU or GBs of memory without a
work budget. Shared by ``tests/serve/test_load.py`` and ``benchmarks/hostile.py``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image

__all__ = ["HostileInput", "hostile_inputs"]


@dataclass(frozen=True)
class HostileInput:
    name: str
    data: bytes
    why: str


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_zeros(width: int, height: int, color_type: int, channels: int) -> bytes:
    """A valid PNG of all-zero pixels, compressed in bands of rows (never held whole)."""
    comp = zlib.compressobj(6)
    row = width * channels + 1  # filter byte + pixels
    band = max(1, (8 << 20) // row)
    parts = [comp.compress(b"\x00" * (row * min(band, height - y))) for y in range(0, height, band)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def thin_png(length: int = 4_000_000) -> bytes:
    """1 x ``length`` grey pixels: thousands of detector windows without a cap."""
    return _png_zeros(1, length, color_type=0, channels=1)


def rgba_png(side: int = 7000) -> bytes:
    """``side`` x ``side`` RGBA (49 MP at 7000): ~0.2 GB decoded, more in conversions."""
    return _png_zeros(side, side, color_type=6, channels=4)


def webp_bomb(width: int = 16383, height: int = 2900) -> bytes:
    """A lossless WebP of one colour at WebP's largest width: a few KB, 47.5 MP decoded."""
    im = Image.new("RGB", (width, height), (90, 120, 150))
    buf = io.BytesIO()
    im.save(buf, format="WEBP", lossless=True, quality=0, method=0)
    return buf.getvalue()


def _intra_video(
    width: int, height: int, frames: int, rate: int, codec: str = "ffv1", pix_fmt="gray"
) -> bytes:
    """A Matroska video of ``frames`` copies of one intra-coded frame (encoded once, muxed many
    times with increasing timestamps), so even thousands of big frames are made in a second."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        image = np.full((height, width), 80, np.uint8)
        packets = list(stream.encode(av.VideoFrame.from_ndarray(image, format="gray")))
        packets += list(stream.encode())
        payload = bytes(packets[0])
        for i in range(frames):
            packet = av.Packet(payload)
            packet.stream = stream
            packet.time_base = Fraction(1, rate)
            packet.pts = packet.dts = i
            packet.is_keyframe = True
            out.mux(packet)
    return buf.getvalue()


def _static_vp8(width: int, height: int, frames: int, rate: int) -> bytes:
    """A WebM of one key frame then ``frames - 1`` copies of an empty inter frame (a few bytes
    each): a long, large-frame video in a small file."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        image = np.full((height, width, 3), 80, np.uint8)
        packets = []
        for _ in range(2):
            packets += stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
        packets += list(stream.encode())
        key, inter = bytes(packets[0]), bytes(packets[-1])
        for i in range(frames):
            packet = av.Packet(key if i == 0 else inter)
            packet.stream = stream
            packet.time_base = Fraction(1, rate)
            packet.pts = packet.dts = i
            packet.is_keyframe = i == 0
            out.mux(packet)
    return buf.getvalue()


def ffv1_big_frames(side: int = 7000, frames: int = 20) -> bytes:
    """FFV1 (lossless, intra-only) ``side`` x ``side`` frames: each 49 MP decoded."""
    return _intra_video(side, side, frames, rate=25)


def many_frames(frames: int = 20_000, width: int = 1920, height: int = 1080) -> bytes:
    """``frames`` full-HD frames at 60 fps (5.6 minutes): tens of gigapixels to decode."""
    return _static_vp8(width, height, frames, rate=60)


def hostile_inputs() -> list[HostileInput]:
    """Every case, in the order the issue lists them (the FIFO is a CLI case, not an upload)."""
    return [
        HostileInput("thin.png", thin_png(), "PNG of 1 x 4,000,000 pixels"),
        HostileInput("rgba7000.png", rgba_png(), "RGBA PNG of 7000 x 7000"),
        HostileInput("bomb.webp", webp_bomb(), "lossless WebP of 16383 x 2900"),
        HostileInput("ffv1.mkv", ffv1_big_frames(), "FFV1 video, 20 frames of 7000 x 7000"),
        HostileInput("long.webm", many_frames(), "video of 20,000 full-HD frames"),
    ]
