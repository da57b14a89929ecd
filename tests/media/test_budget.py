"""Work budgets decided from the header (facetrust.media.budget), and files that are not files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrust.errors import InputError, MediaError
from facetrust.media import decode_image, load_image, read_video_frames, sniff_path
from facetrust.media.budget import (
    DeadlineExceeded,
    WorkBudget,
    check_deadline,
    current_budget,
    use_budget,
)
from facetrust.media.sniff import read_file_limited

HOSTILE = Path(__file__).resolve().parents[1] / "serve" / "hostile_inputs.py"


def _png(shape, mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, shape[::-1]).save(buf, format="PNG")
    return buf.getvalue()


def test_thin_image_is_refused_from_its_header_quickly():
    import zlib

    # 1 x 4,000,000 grey PNG, 8 KB on the wire
    raw = zlib.compress(b"\x00\x00" * 4_000_000, 9)
    import struct

    def chunk(kind, payload):
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 4_000_000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match=r"^image too thin: 1x4000000 .* 1000:1 limit"):
        decode_image(data)
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(MediaError, match="too thin"):
        load_image(np.zeros((1, 5000, 3), np.uint8))
    with use_budget(WorkBudget(max_aspect_ratio=None)):
        assert decode_image(_png((1, 2000))).shape == (1, 2000, 3)


def test_large_jpeg_is_decoded_reduced_by_dct_scaling():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    assert decode_image(data).shape == (3000, 4000, 3)  # no reduction by default
    with use_budget(WorkBudget(analysis_max_pixels=1_000_000)):
        out = decode_image(data)
    assert out.shape[0] * out.shape[1] <= 1_000_000
    assert out.shape[:2] == (750, 1000)  # 1/4 scale: 3/4 aspect kept
    # same picture: close to a box-downscaled decode
    ref = np.asarray(Image.fromarray(arr).reduce(4), np.float32)
    assert np.abs(out.astype(np.float32).mean() - ref.mean()) < 2.0


def test_large_png_is_reduced_after_decoding_with_exif_orientation_kept():
    im = Image.new("RGBA", (3000, 2000), (255, 0, 0, 0))  # transparent: white after compositing
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    with use_budget(WorkBudget(analysis_max_pixels=600_000)):
        out = decode_image(buf.getvalue())
    h, w = out.shape[:2]
    assert h * w <= 600_000 and h > w  # upright: portrait after the EXIF turn
    assert (out == 255).all()


def test_rgba_decode_memory_is_bounded(tmp_path):
    """An RGBA 7000 x 7000 PNG (190 KB) decoded in a fresh process: peak RSS growth stays near
    the decoded sizes (RGBA 196 MB + RGB 147 MB), not several times them."""
    code = f"""
import importlib.util, sys, pathlib
spec = importlib.util.spec_from_file_location("h", {str(HOSTILE)!r})
m = importlib.util.module_from_spec(spec); sys.modules["h"] = m; spec.loader.exec_module(m)
data = m.rgba_png(7000)
from facetrust.media import decode_image
def kb(key):
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
pathlib.Path("/proc/self/clear_refs").write_text("5")
before = kb("VmRSS")
out = decode_image(data)
assert out.shape == (7000, 7000, 3)
print((kb("VmHWM") - before) // 1024)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    peak_mb = int(r.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth {peak_mb} MB")
    assert peak_mb < 450, peak_mb  # was ~1,500 MB with whole-image 16-bit temporaries


def _video(path: Path, w: int, h: int, n: int, rate: int = 25) -> Path:
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = np.full((h, w, 3), (i * 7) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_video_decode_budget_refuses_before_decoding(tmp_path):
    path = _video(tmp_path / "v.mp4", 320, 240, 40)
    with use_budget(WorkBudget(max_video_decode_pixels=320 * 240 * 20)):
        with pytest.raises(MediaError, match=r"^video is too large to analyse: 40 frames"):
            read_video_frames(path, num_frames=8)
        # sampling only the start needs less decoding
        info, frames = read_video_frames(path, num_frames=2, fps=0.1)
        assert len(frames) == 1


def test_video_frames_are_kept_within_the_byte_budget(tmp_path):
    path = _video(tmp_path / "v.mp4", 640, 480, 10)
    _, full = read_video_frames(path, num_frames=4)
    assert full[0].image.shape == (480, 640, 3)
    budget = 4 * 3 * 160 * 120  # room for four 160 x 120 frames
    with use_budget(WorkBudget(max_video_decoded_bytes=budget)):
        info, frames = read_video_frames(path, num_frames=4)
    assert [f.index for f in frames] == [f.index for f in full]
    assert info.width == 640  # the stream's size is still reported
    for f in frames:
        h, w = f.image.shape[:2]
        assert h * w * 3 <= budget // 4 and abs(w / h - 4 / 3) < 0.05


def test_deadline(tmp_path):
    path = _video(tmp_path / "v.mp4", 64, 48, 30)
    expired = WorkBudget().with_timeout(-1.0)
    with use_budget(expired):
        assert current_budget() is expired
        with pytest.raises(DeadlineExceeded):
            check_deadline()
        with pytest.raises(DeadlineExceeded, match="deadline exceeded"):
            read_video_frames(path, num_frames=4)
        with pytest.raises(DeadlineExceeded):
            decode_image(_png((20, 20)))
    check_deadline()  # outside: no deadline
    assert WorkBudget().with_timeout(10).remaining() > 9
    with pytest.raises(InputError):
        WorkBudget(max_windows=0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    """open() on a FIFO blocks until a writer comes; the kind of file is checked first."""
    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        for call in (
            lambda: sniff_path(fifo),
            lambda: read_file_limited(fifo, 1000),
            lambda: load_image(fifo),
            lambda: read_video_frames(fifo),
        ):
            try:
                call()
            except MediaError as exc:
                errors.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert len(errors) == 4
    assert all(str(e) == f"not a regular file: {fifo}" for e in errors)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_cli_detect_with_a_fifo_reports_it_and_keeps_the_other_result(tmp_path, tiny_checkpoint):
    """``mkfifo f.jpg; facetrust detect f.jpg astronaut.jpg`` used to hang forever."""
    example = Path(__file__).resolve().parents[2] / "examples" / "astronaut.jpg"
    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "facetrust.cli", "detect", "--json", "-m", str(tiny_checkpoint)]
    r = subprocess.run([*cmd, str(fifo), str(example)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-1000:]
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0] == {"path": str(fifo), "error": f"not a regular file: {fifo}"}
    assert lines[1]["path"] == str(example) and lines[1]["kind"] == "image"
