"""A corpus of malformed and hostile uploads, each with the status ``/v1/detect`` must answer.

Every file is generated here (nothing is downloaded): truncations of real files, zero-byte and
one-byte files, decompression bombs and huge declared dimensions in every image format,
polyglots, scripts and documents, broken and over-long videos.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.jpg"


@dataclass(frozen=True)
class Hostile:
    name: str  # also the upload's file name: extensions are deliberately misleading
    data: bytes
    status: int  # what /v1/detect must answer
    why: str


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png(width: int, height: int, idat: bytes, color_type: int = 0, depth: int = 8) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 12_000) -> bytes:
    """A complete, valid grey PNG of ``side`` x ``side`` zeros: a few hundred KB on the wire."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    return _png(side, side, b"".join(parts))


def _encoded(fmt: str, size=(64, 48), **kw) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _jpeg_with_dims(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 segment is rewritten to declare other dimensions."""
    data = bytearray(_encoded("JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\x00" * 64


def _tiff_header(width: int, height: int) -> bytes:
    entries = [
        (256, 4, 1, width),  # ImageWidth LONG
        (257, 4, 1, height),  # ImageLength LONG
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, min(width * height, 2**32 - 1)),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8 + 16) + b"\x00" * 16 + ifd + b"\x00" * 32


def _gif_header(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b",\x00\x00" * 4


def _webp_vp8x(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
    payload += (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + chunk + b"VP8 " + struct.pack("<I", 4) + b"\x00" * 4
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _video(
    path: Path, frames: int = 6, size=(64, 48), codec="mpeg4", fmt=None, pts_step=1, rate=10
):
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i * pts_step
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def _audio_only(path: Path) -> bytes:
    import av

    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 800), np.int16), format="s16", layout="mono"
            )
            frame.sample_rate = 8000
            frame.pts = i * 800
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            # a fixed timestamp: the same bytes on every run (the entry's date is in them, and
            # the polyglots below are parsed through them: with the current time, the GIF+JAR
            # file was a 413 at some minutes and a 422 at others)
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def build_corpus(workdir: Path) -> list[Hostile]:
    """Generate the corpus (videos are written through ``workdir``)."""
    jpeg = EXAMPLE.read_bytes()
    png = _encoded("PNG")
    gif = _encoded("GIF")
    tiff = _encoded("TIFF")
    webp = _encoded("WEBP")
    mp4 = _video(workdir / "ok.mp4")
    avi = _video(workdir / "ok.avi", fmt="avi")
    mkv = _video(workdir / "ok.mkv", fmt="matroska")
    long_video = _video(workdir / "long.mkv", frames=3, fmt="matroska", pts_step=400, rate=1)
    zeros_zip = _zip({"zeros.bin": b"\x00" * 5_000_000})
    c: list[Hostile] = [
        # --- empty, tiny and truncated files
        Hostile("empty.jpg", b"", 400, "zero bytes"),
        Hostile("one.png", b"\x89", 415, "one byte"),
        Hostile("magic-only.jpg", b"\xff\xd8\xff", 422, "JPEG magic and nothing else"),
        Hostile("trunc-2k.jpg", jpeg[:2000], 422, "JPEG cut in its header"),
        Hostile("trunc-half.jpg", jpeg[: len(jpeg) // 2], 422, "JPEG cut in its scan data"),
        Hostile("no-eoi.jpg", jpeg[:-200], 422, "JPEG without its last 200 bytes"),
        Hostile("trunc.png", png[: len(png) // 2], 422, "PNG cut in IDAT"),
        Hostile("sig-only.png", png[:8], 422, "PNG signature only"),
        Hostile("ihdr-only.png", png[:33], 422, "PNG signature and IHDR only"),
        Hostile("bad-crc.png", png[:29] + b"\x00\x00\x00\x00" + png[33:], 422, "IHDR CRC wrong"),
        Hostile("trunc.gif", gif[: len(gif) // 2], 422, "GIF cut in its image data"),
        Hostile("trunc.tif", tiff[: len(tiff) // 3], 422, "TIFF cut in its strips"),
        Hostile("trunc.webp", webp[: len(webp) // 2], 422, "WEBP cut in VP8 data"),
        Hostile("riff-webp.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 ", 422, "WEBP header only"),
        Hostile("bmp-header.bmp", _bmp_header(64, 64)[:60], 422, "BMP cut after its header"),
        Hostile("magic-noise.jpg", b"\xff\xd8\xff" + bytes(range(256)) * 8, 422, "JPEG + noise"),
        Hostile("jpeg-html.jpg", b"\xff\xd8\xff<html><script>alert(1)</script>", 422, "JPEG+HTML"),
        # --- bombs and huge declared dimensions
        Hostile("bomb.png", png_bomb(), 413, "valid 12000x12000 PNG, 144 MP, ~150 KB"),
        Hostile("huge-ihdr.png", _png(100_000, 100_000, zlib.compress(b"\x00" * 64)), 413, "10 GP"),
        Hostile("zero-ihdr.png", _png(0, 0, zlib.compress(b"")), 422, "0x0 PNG"),
        Hostile("huge.jpg", _jpeg_with_dims(65_000, 65_000), 413, "JPEG declaring 65000x65000"),
        Hostile("zero.jpg", _jpeg_with_dims(0, 0), 422, "JPEG declaring 0x0"),
        Hostile("huge.gif", _gif_header(65_535, 65_535), 413, "GIF screen 65535x65535"),
        Hostile("huge.bmp", _bmp_header(60_000, 60_000), 413, "BMP declaring 60000x60000"),
        Hostile("neg.bmp", _bmp_header(-5, 0), 422, "BMP with a zero/negative size"),
        Hostile("huge.tif", _tiff_header(70_000, 70_000), 413, "TIFF declaring 70000x70000"),
        Hostile("huge.webp", _webp_vp8x(16_383, 16_383), 413, "WEBP canvas 16383x16383"),
        Hostile("bad-colortype.png", _png(8, 8, zlib.compress(b"\x00" * 72), 7), 422, "PNG type 7"),
        # --- polyglots and wrong extensions
        Hostile("zip-then-jpeg.jpg", zeros_zip + jpeg, 415, "ZIP first, JPEG appended"),
        Hostile("broken-jpeg-zip.jpg", jpeg[:3000] + zeros_zip, 422, "truncated JPEG + ZIP"),
        Hostile("pdf.jpg", b"%PDF-1.7\n1 0 obj<<>>endobj\n" + jpeg, 415, "PDF carrying a JPEG"),
        Hostile("gifar.gif", b"GIF89a" + b"\x00" * 7 + zeros_zip, 422, "GIF header + JAR"),
        Hostile("html.png", b"<!doctype html><script>alert(document.domain)</script>", 415, "HTML"),
        Hostile(
            "xss.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)'
            b"</script></svg>",
            415,
            "SVG with script",
        ),
        Hostile(
            "xxe.jpg",
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
            415,
            "XML external entity",
        ),
        Hostile("text.jpg", b"hello, this is plain text pretending to be a JPEG\n", 415, "text"),
        Hostile("data.json", b'{"image": "not here"}', 415, "JSON as a file"),
        Hostile("elf.png", b"\x7fELF\x02\x01\x01" + b"\x00" * 100, 415, "ELF executable"),
        Hostile("pe.mp4", b"MZ\x90\x00" + b"\x00" * 100, 415, "Windows executable"),
        Hostile("script.jpg", b"#!/bin/sh\nrm -rf /\n", 415, "shell script"),
        Hostile("php.png", b"<?php system($_GET['c']); ?>", 415, "PHP"),
        Hostile("zeros.gz", zlib.compress(b"\x00" * 10_000_000, 9), 415, "zlib bomb"),
        Hostile("zeros.zip", zeros_zip, 415, "zip bomb-ish archive"),
        Hostile("still.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", 415, "HEIC"),
        Hostile("sound.mp4", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 50, 415, "MP3"),
        Hostile("wave.avi", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40, 415, "WAV"),
        Hostile("icon.png", b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 60, 415, "ICO"),
        # --- broken and over-long videos
        Hostile("ftyp-only.mp4", mp4[:32], 422, "MP4 ftyp box only"),
        Hostile("trunc.mp4", mp4[: len(mp4) // 3], 422, "MP4 without its moov"),
        Hostile("ftyp-noise.mp4", mp4[:32] + bytes(range(256)) * 16, 422, "ftyp + noise"),
        Hostile("ftyp-jpeg.mov", mp4[:32] + jpeg, 422, "ftyp box + JPEG"),
        Hostile("avi-header.avi", avi[:12], 422, "AVI RIFF header only"),
        Hostile("avi-head-noise.avi", avi[:200] + b"\xff" * 500, 422, "AVI header + noise"),
        Hostile("ebml-only.mkv", mkv[:4], 422, "Matroska magic only"),
        Hostile("ebml-noise.mkv", mkv[:4] + bytes(range(256)) * 8, 422, "Matroska magic + noise"),
        Hostile("audio-only.mkv", _audio_only(workdir / "audio.mkv"), 422, "no video stream"),
        Hostile("long.mkv", long_video, 413, "800 s video, over the 600 s limit"),
    ]
    names = [h.name for h in c]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return c
