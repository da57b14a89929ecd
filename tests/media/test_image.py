"""Image decoding: formats, colour modes, orientation, limits and bad input."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from facetrust.errors import InputError, MediaError
from facetrust.media import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ImageLimits,
    decode_image,
    load_image,
    sniff_kind,
    sniff_path,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


# --- helpers ---------------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def two_colour(w: int = 32, h: int = 24) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = RED
    arr[:, w // 2 :] = BLUE
    return Image.fromarray(arr)


def noisy_jpeg(w: int = 256, h: int = 256) -> bytes:
    rng = np.random.default_rng(1)
    return encode(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "JPEG")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_file(w: int, h: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG built by hand (Pillow cannot write 16-bit colour PNGs)."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG from HxW, HxWx3 or HxWx4 values in 0..65535."""
    big_endian = np.asarray(pixels, dtype=">u2")
    color_type = 0 if big_endian.ndim == 2 else {3: 2, 4: 6}[big_endian.shape[2]]
    rows = b"".join(b"\x00" + row.tobytes() for row in big_endian)
    return png_file(big_endian.shape[1], big_endian.shape[0], 16, color_type, zlib.compress(rows))


def assert_rgb(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == (*shape, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def assert_close(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = 0) -> None:
    assert np.abs(pixel.astype(int) - np.array(colour)).max() <= tol, (pixel, colour)


def media_error(match: str):
    return pytest.raises(MediaError, match=match)


def one_line(exc: pytest.ExceptionInfo) -> None:
    text = str(exc.value)
    assert text and "\n" not in text and "\r" not in text


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kwargs", "tol"),
    [
        ("JPEG", {"quality": 95}, 40),
        ("PNG", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, 40),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("GIF", {}, 0),
    ],
)
def test_each_format_decodes_with_correct_colours(fmt: str, kwargs: dict, tol: int) -> None:
    out = decode_image(encode(two_colour(), fmt, **kwargs))
    assert_rgb(out, (24, 32))
    assert_close(out[12, 4], RED, tol)
    assert_close(out[12, 28], BLUE, tol)


def test_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 255, 0), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    out = decode_image(data)
    assert_rgb(out, (16, 16))
    assert_close(out[8, 8], RED)


def test_type_is_decided_by_content_not_name(tmp_path: Path) -> None:
    png_named_jpg = tmp_path / "photo.jpg"
    png_named_jpg.write_bytes(encode(two_colour(), "PNG"))
    out = load_image(png_named_jpg)
    assert_close(out[0, 0], RED)

    text_named_jpg = tmp_path / "notes.jpg"
    text_named_jpg.write_text("hello, this is not a picture\n" * 10)
    with media_error(r"not a supported image \(content is not JPEG/PNG/WEBP/BMP/TIFF/GIF\)") as e:
        load_image(text_named_jpg)
    one_line(e)


# --- EXIF orientation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "shape", "marker", "elsewhere"),
    [
        # stored 40 wide x 20 high, red top-left quadrant, blue elsewhere
        (1, (20, 40), (5, 10), (15, 30)),
        (3, (20, 40), (15, 30), (5, 10)),  # rotated 180: marker bottom-right
        (6, (40, 20), (10, 15), (30, 5)),  # rotated 90 clockwise: marker top-right
        (8, (40, 20), (30, 5), (10, 15)),  # rotated 90 counter-clockwise: marker bottom-left
    ],
)
def test_exif_orientation_is_applied(
    orientation: int,
    shape: tuple[int, int],
    marker: tuple[int, int],
    elsewhere: tuple[int, int],
) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:] = BLUE
    arr[:10, :20] = RED
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert_rgb(out, shape)
    assert_close(out[marker], RED, 40)
    assert_close(out[elsewhere], BLUE, 40)


# --- colour modes ----------------------------------------------------------------------------


def test_grayscale_png() -> None:
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    out = decode_image(encode(Image.fromarray(gray, "L"), "PNG"))
    assert_rgb(out, (4, 16))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_one_bit_png() -> None:
    im = Image.new("1", (8, 4), 0)
    im.putpixel((1, 1), 1)
    out = decode_image(encode(im, "PNG"))
    assert_close(out[1, 1], (255, 255, 255))
    assert_close(out[0, 0], (0, 0, 0))


def test_rgba_is_composited_on_white() -> None:
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (255, 0, 0, 0)  # fully transparent: white
    arr[1, 0] = (0, 0, 255, 128)  # half blue over white
    arr[1, 1] = (0, 0, 0, 0)
    out = decode_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert_close(out[0, 0], RED)
    assert_close(out[0, 1], (255, 255, 255))
    assert_close(out[1, 0], (127, 127, 255), 1)
    assert_close(out[1, 1], (255, 255, 255))


def test_la_png_is_composited_on_white() -> None:
    im = Image.new("LA", (2, 1))
    im.putpixel((0, 0), (0, 255))
    im.putpixel((1, 0), (0, 0))
    out = decode_image(encode(im, "PNG"))
    assert_close(out[0, 0], (0, 0, 0))
    assert_close(out[0, 1], (255, 255, 255))


def test_palette_png() -> None:
    im = two_colour().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    data = encode(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode_image(data)
    assert_close(out[0, 0], RED)
    assert_close(out[0, 31], BLUE)


def test_palette_png_with_transparency() -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    data = encode(im, "PNG", transparency=1)  # palette entry 1 (blue) is transparent
    out = decode_image(data)
    assert_close(out[0, 0], RED)
    assert_close(out[0, 1], (255, 255, 255))


def test_gif_with_transparency() -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((1, 0), 1)
    out = decode_image(encode(im, "GIF", transparency=1))
    assert_close(out[0, 0], RED)
    assert_close(out[0, 1], (255, 255, 255))


def test_16_bit_grayscale_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    assert_rgb(out, (1, 4))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16_bit_grayscale_tiff() -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = decode_image(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_array_equal(out[0, :, 1], [0, 128, 255])


def test_16_bit_rgb_png() -> None:
    px = np.array([[[65535, 32768, 0], [0, 65535, 32768]]], dtype=np.uint16)
    out = decode_image(png16(px))
    assert_rgb(out, (1, 2))
    np.testing.assert_array_equal(out[0], [[255, 128, 0], [0, 255, 128]])


def test_16_bit_rgba_png() -> None:
    px = np.array([[[65535, 0, 0, 65535], [0, 0, 65535, 0]]], dtype=np.uint16)
    out = decode_image(png16(px))
    np.testing.assert_array_equal(out[0], [RED, (255, 255, 255)])


def test_cmyk_jpeg() -> None:
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    data = encode(im, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert_rgb(out, (16, 16))
    assert_close(out[8, 8], RED, 10)


# --- bad files -------------------------------------------------------------------------------


def test_zero_bytes(tmp_path: Path) -> None:
    with media_error("empty file"):
        decode_image(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with media_error("empty file"):
        load_image(empty)


def test_truncated_jpeg() -> None:
    data = noisy_jpeg()
    assert decode_image(data).shape == (256, 256, 3)
    with media_error("image is truncated or corrupt") as e:
        decode_image(data[: len(data) // 2])
    one_line(e)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png() -> None:
    rng = np.random.default_rng(2)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    for cut in (len(data) // 2, 40):
        with media_error("image is truncated or corrupt") as e:
            decode_image(data[:cut])
        one_line(e)


def test_corrupt_png_data() -> None:
    data = bytearray(encode(two_colour(64, 64), "PNG"))
    data[60:80] = b"\x00" * 20  # inside IDAT: breaks the zlib stream (and the CRC)
    with media_error("image is truncated or corrupt") as e:
        decode_image(bytes(data))
    one_line(e)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with media_error("not a supported image") as e:
        decode_image(data)
    one_line(e)


def test_header_only_files_of_each_format() -> None:
    heads = [
        b"\xff\xd8\xff\xe0",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"RIFF\0\0\0\0WEBPVP8 ",
        b"II*\0",
    ]
    for head in heads:
        with pytest.raises(MediaError) as e:
            decode_image(head + b"\0" * 10)
        one_line(e)


def test_video_bytes_are_not_an_image() -> None:
    with media_error("content is a video"):
        decode_image(b"\0\0\0\x18ftypisom" + b"\0" * 40)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with media_error("file not found: .*nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    with media_error("file not found"):
        load_image(str(tmp_path / "nope.jpg"))
    with media_error("not a file"):
        load_image(tmp_path)


# --- limits ----------------------------------------------------------------------------------


def test_default_pixel_limit_on_a_real_decompression_bomb() -> None:
    """A valid 8000x8000 grey PNG (64 MP, ~64 KB): refused from the header, never decoded."""
    w = h = 8000
    idat = zlib.compress(b"\x00" * ((w + 1) * h), 9)
    data = png_file(w, h, 8, 0, idat)
    assert len(data) < 200_000
    with media_error(r"image too large: 8000x8000 = 64\.0 MP exceeds the 50\.0 MP limit") as e:
        decode_image(data)
    one_line(e)


def test_pixel_limit_before_pillows_own_bomb_check() -> None:
    """20000x20000 declared: Pillow refuses it itself at open; still a one-line MediaError."""
    before = Image.MAX_IMAGE_PIXELS
    data = png_file(20000, 20000, 1, 0, zlib.compress(b"\x00" * 64))
    with media_error(r"image too large: 400\.0 MP exceeds the 50\.0 MP limit") as e:
        decode_image(data)
    one_line(e)
    with media_error("image too large"):
        decode_image(png_file(60000, 60000, 8, 2, zlib.compress(b"\x00")))
    assert before == Image.MAX_IMAGE_PIXELS  # the global is never touched


def test_pillow_bomb_warning_raised_as_error_is_converted() -> None:
    """With warnings as errors, Pillow's DecompressionBombWarning must not escape raw: facetrust
    applies its own limit, so the (truncated) 100 MP image fails as a MediaError."""
    data = png_file(10000, 10000, 1, 0, zlib.compress(b"\x00" * 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with media_error("image is truncated or corrupt"):
            decode_image(data, ImageLimits(max_pixels=200_000_000))
        with media_error("image too large: 10000x10000 = 100.0 MP exceeds the 50.0 MP limit"):
            decode_image(data)


def test_lowered_pixel_limit() -> None:
    data = encode(two_colour(), "JPEG")
    with media_error(r"image too large: 32x24 = 0\.0 MP exceeds the 0\.0 MP limit"):
        decode_image(data, ImageLimits(max_pixels=700))
    assert decode_image(data, ImageLimits(max_pixels=768)).shape == (24, 32, 3)
    with media_error("image too large"):
        load_image(np.zeros((24, 32), np.uint8), ImageLimits(max_pixels=700))


def test_byte_limit(tmp_path: Path) -> None:
    data = encode(two_colour(), "PNG")
    limits = ImageLimits(max_bytes=len(data) - 1)
    with media_error("file too large"):
        decode_image(data, limits)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with media_error("file too large"):
        load_image(path, limits)
    assert load_image(path, ImageLimits(max_bytes=len(data))).shape == (24, 32, 3)


def test_bad_limits() -> None:
    with pytest.raises(InputError):
        ImageLimits(max_pixels=0)
    with pytest.raises(InputError):
        decode_image(b"x", limits=50)  # type: ignore[arg-type]


# --- other sources ---------------------------------------------------------------------------


def test_load_from_path_str_bytes_bytearray(tmp_path: Path) -> None:
    data = encode(two_colour(), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    expected = decode_image(data)
    for source in (path, str(path), data, bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(load_image(source), expected)


def test_load_from_pil_image() -> None:
    out = load_image(two_colour().convert("P"))
    assert_rgb(out, (24, 32))
    assert_close(out[0, 0], RED)
    assert_close(load_image(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))[0, 0], (255, 255, 255))


def test_load_from_arrays() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = load_image(gray)
    assert_rgb(out, (3, 4))
    np.testing.assert_array_equal(out[..., 1], gray)
    np.testing.assert_array_equal(load_image(gray[:, :, None]), out)

    rgb = np.random.default_rng(3).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = load_image(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert out is not rgb and not np.shares_memory(out, rgb)
    assert load_image(np.asfortranarray(rgb)).flags.c_contiguous

    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    np.testing.assert_array_equal(load_image(rgba)[0], [RED, (255, 255, 255)])

    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(floats)[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(load_image(floats.astype(np.float64))[0, :, 2], [0, 128, 255])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros(16, np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4, 3), np.int64),
        np.zeros((4, 4, 3), np.uint16),
        np.zeros((4, 4, 3), bool),
        np.full((4, 4), 2.0),
        np.full((4, 4), -0.5),
        np.full((4, 4), np.nan),
    ],
)
def test_bad_arrays_are_input_errors(bad: np.ndarray) -> None:
    with pytest.raises(InputError) as e:
        load_image(bad)
    assert not isinstance(e.value, MediaError)
    one_line(e)


@pytest.mark.parametrize("bad", [42, None, 3.5, ["a.jpg"], {"path": "a.jpg"}])
def test_wrong_source_type_is_input_error(bad: object) -> None:
    with pytest.raises(InputError, match="cannot load an image"):
        load_image(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        decode_image(bad)  # type: ignore[arg-type]


# --- sniffing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image"),
        (b"GIF87a\x01\x00", "image"),
        (b"GIF89a\x01\x00", "image"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "image"),
        (b"BM" + b"\0" * 12 + struct.pack("<I", 40) + b"\0" * 8, "image"),
        (b"II*\0\x08\0\0\0", "image"),
        (b"MM\0*\0\0\0\x08", "image"),
        (b"\0\0\0\x20ftypisom\0\0\x02\0", "video"),
        (b"\0\0\0\x14ftypqt  \0\0\x02\0", "video"),
        (b"\0\0\0\x1cftypmp42\0\0\0\0", "video"),
        (b"RIFF\x24\0\0\0AVI LIST", "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "video"),
        (b"\0\0\0\x18ftypheic\0\0\0\0", None),  # HEIF still: unsupported
        (b"\0\0\0\x1cftypavif\0\0\0\0", None),
        (b"RIFF\x24\0\0\0WAVEfmt ", None),
        (b"BM is a text file that starts with BM", None),
        (b"hello world", None),
        (b"", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniff_kind(head: bytes, kind: str | None) -> None:
    assert sniff_kind(head) == kind


def test_sniff_path(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(encode(two_colour(), "PNG"))
    (tmp_path / "b.png").write_bytes(b"\0\0\0\x20ftypisom" + b"\0" * 100)
    (tmp_path / "c.jpg").write_text("text")
    assert sniff_path(tmp_path / "a.mp4") == "image"
    assert sniff_path(str(tmp_path / "b.png")) == "video"
    assert sniff_path(tmp_path / "c.jpg") is None
    with media_error("file not found"):
        sniff_path(tmp_path / "missing")


def test_suffix_sets() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"} <= IMAGE_SUFFIXES
    assert {".mp4", ".mov", ".avi", ".mkv", ".webm"} <= VIDEO_SUFFIXES
    assert not IMAGE_SUFFIXES & VIDEO_SUFFIXES
    assert isinstance(IMAGE_SUFFIXES, frozenset) and isinstance(VIDEO_SUFFIXES, frozenset)
