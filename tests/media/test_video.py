"""Video decoding: containers, frame sampling, rotation, limits and bad files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facetrust.errors import InputError, MediaError
from facetrust.media import VideoFrame, VideoInfo, probe_video, read_video_frames
from facetrust.media import video as video_module

# The conftest's synthetic videos: 64x48, 10 fps, frame i flat grey 10 + 8 * i.
W, H = 64, 48
VIDEO_RATE = 10
MakeVideo = Callable[..., Path]


def frame_value(i: int) -> int:
    return 10 + 8 * i


def test_fixture_matches_the_assumptions_here(make_video: MakeVideo) -> None:
    assert make_video.size == (W, H) and make_video.rate == VIDEO_RATE  # type: ignore[attr-defined]
    assert [make_video.frame_value(i) for i in (0, 29)] == [10, 242]  # type: ignore[attr-defined]


def assert_frames_match_content(frames: list[VideoFrame]) -> None:
    """Each synthetic frame is flat grey ``frame_value(index)``: the picture names its index."""
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.flags.c_contiguous
        assert abs(float(f.image.mean()) - frame_value(f.index)) < 4, (f.index, f.image.mean())
        assert f.time_s == pytest.approx(f.index / VIDEO_RATE, abs=1e-3)


def one_line(exc: pytest.ExceptionInfo) -> None:
    text = str(exc.value)
    assert text and "\n" not in text and "\r" not in text


CONTAINERS = [
    ("clip.mp4", "libx264"),
    ("clip-mpeg4.mp4", "mpeg4"),
    ("clip.mov", "libx264"),
    ("clip.avi", "mpeg4"),
    ("clip-mjpeg.avi", "mjpeg"),
    ("clip.mkv", "libx264"),
    ("clip.webm", "libvpx"),
]


@pytest.mark.parametrize(("name", "codec"), CONTAINERS)
def test_containers_decode_and_sample(make_video: MakeVideo, name: str, codec: str) -> None:
    path = make_video(name, codec)
    info, frames = read_video_frames(path, num_frames=8)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == pytest.approx(VIDEO_RATE)
    assert info.frame_count == 30
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.codec
    assert len(frames) == 8
    assert [f.index for f in frames] == [0, 4, 8, 12, 17, 21, 25, 29]
    for f in frames:
        assert f.image.shape == (H, W, 3)
    assert_frames_match_content(frames)

    probed = probe_video(path)
    assert (probed.width, probed.height, probed.rotation) == (W, H, 0)
    assert probed.fps == pytest.approx(VIDEO_RATE)
    assert probed.codec == info.codec


def test_uniform_sampling_spreads_over_the_video(make_video: MakeVideo) -> None:
    path = make_video("u.mp4", "libx264")
    _, frames = read_video_frames(path, num_frames=16)
    idx = [f.index for f in frames]
    assert len(idx) == 16
    assert idx == sorted(set(idx))
    assert idx[0] == 0 and idx[-1] == 29
    assert max(np.diff(idx)) <= 2
    assert_frames_match_content(frames)

    _, one = read_video_frames(path, num_frames=1)
    assert [f.index for f in one] == [14]  # the middle (time 1.45 s: tie goes to the earlier)


def test_fps_mode(make_video: MakeVideo) -> None:
    path = make_video("f.mp4", "libx264")
    _, frames = read_video_frames(path, fps=2.0)
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25]
    assert_frames_match_content(frames)

    _, every = read_video_frames(path, fps=100.0)  # faster than the video: each frame once
    assert [f.index for f in every] == list(range(30))

    _, capped = read_video_frames(path, fps=10.0, max_frames=5, num_frames=5)
    assert [f.index for f in capped] == [0, 1, 2, 3, 4]


def test_fewer_frames_than_requested(make_video: MakeVideo) -> None:
    path = make_video("short.mkv", "libx264", n_frames=5)
    info, frames = read_video_frames(path, num_frames=16)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert info.frame_count == 5
    assert_frames_match_content(frames)


def test_bytes_input_matches_path(make_video: MakeVideo) -> None:
    path = make_video("b.webm", "libvpx")
    info_p, frames_p = read_video_frames(path, num_frames=5)
    info_b, frames_b = read_video_frames(path.read_bytes(), num_frames=5)
    assert info_p == info_b
    assert [f.index for f in frames_p] == [f.index for f in frames_b]
    for a, b in zip(frames_p, frames_b, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    assert probe_video(path.read_bytes()).width == W


def test_name_does_not_matter(make_video: MakeVideo, tmp_path: Path) -> None:
    path = make_video("real.avi", "mpeg4")
    renamed = tmp_path / "looks-like.jpg"
    renamed.write_bytes(path.read_bytes())
    _, frames = read_video_frames(renamed, num_frames=3)
    assert [f.index for f in frames] == [0, 14, 29]


# --- rotation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("display_ccw", "rotation_cw", "shape", "white_at", "black_at"),
    [
        # Stored frame: 64x48, white top-left quadrant on black.
        (90, 270, (W, H), (W - 8, 8), (8, 8)),  # turned counter-clockwise: white bottom-left
        (-90, 90, (W, H), (8, H - 8), (W - 8, 8)),  # turned clockwise (phones): white top-right
        (180, 180, (H, W), (H - 8, W - 8), (8, 8)),  # upside down: white bottom-right
    ],
)
def test_rotation_metadata_gives_upright_frames(
    make_video: MakeVideo,
    display_ccw: int,
    rotation_cw: int,
    shape: tuple[int, int],
    white_at: tuple[int, int],
    black_at: tuple[int, int],
) -> None:
    path = make_video(f"rot{display_ccw}.mp4", "libx264", 6, rotation=display_ccw, marker=True)
    info, frames = read_video_frames(path, num_frames=2)
    assert info.rotation == rotation_cw
    assert (info.height, info.width) == shape
    assert probe_video(path).rotation == rotation_cw
    for f in frames:
        assert f.image.shape == (*shape, 3)
        assert f.image[white_at].min() > 200
        assert f.image[black_at].max() < 50


def test_rotate_upright_helper() -> None:
    img = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(video_module.rotate_upright(img, 0), img)
    np.testing.assert_array_equal(video_module.rotate_upright(img, 90), [[3, 0], [4, 1], [5, 2]])
    np.testing.assert_array_equal(video_module.rotate_upright(img, 180), img[::-1, ::-1])
    np.testing.assert_array_equal(video_module.rotate_upright(img, 270), [[2, 5], [1, 4], [0, 3]])
    assert video_module.rotate_upright(img, 90).flags.c_contiguous
    assert video_module._normalise_rotation(-90.0) == 270
    assert video_module._normalise_rotation(89.9) == 90
    assert video_module._normalise_rotation(float("nan")) == 0


# --- bad files and limits --------------------------------------------------------------------


def test_zero_byte_video(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    for call in (lambda: read_video_frames(path), lambda: probe_video(path)):
        with pytest.raises(MediaError, match="empty file"):
            call()
    with pytest.raises(MediaError, match="empty file"):
        read_video_frames(b"")


def test_random_bytes_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="not a readable video") as e:
        read_video_frames(path)
    one_line(e)


def test_garbage_after_a_valid_signature(tmp_path: Path) -> None:
    junk = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for head in (b"\0\0\0\x18ftypisom\0\0\0\0isom", b"RIFF\0\x10\0\0AVI LIST", b"\x1a\x45\xdf\xa3"):
        with pytest.raises(MediaError) as e:
            read_video_frames(head + junk)
        one_line(e)


def test_truncated_mp4(make_video: MakeVideo, tmp_path: Path) -> None:
    path = make_video("noisy.mp4", "libx264", 10, noise=True)
    assert path.stat().st_size > 4096
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:1024])
    with pytest.raises(MediaError, match="not a readable video") as e:
        read_video_frames(cut)
    one_line(e)
    with pytest.raises(MediaError):
        probe_video(cut)


def test_audio_only_file(make_audio_only: Callable[[str], Path]) -> None:
    path = make_audio_only("sound.m4a")
    with pytest.raises(MediaError, match="no video stream") as e:
        read_video_frames(path)
    one_line(e)
    with pytest.raises(MediaError, match="no video stream"):
        probe_video(path)


def test_image_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "still.mp4"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(MediaError, match="not a readable video: the content is an image"):
        read_video_frames(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found"):
        read_video_frames(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="file not found"):
        probe_video(str(tmp_path / "nope.mp4"))


def test_too_long(make_video: MakeVideo) -> None:
    path = make_video("long.mp4", "libx264")
    with pytest.raises(MediaError, match=r"video too long: 3\.0 s exceeds the 1\.0 s limit") as e:
        read_video_frames(path, max_seconds=1.0)
    one_line(e)


def test_byte_limit(make_video: MakeVideo) -> None:
    path = make_video("big.mp4", "libx264")
    size = path.stat().st_size
    with pytest.raises(MediaError, match="file too large"):
        read_video_frames(path, max_bytes=size - 1)
    with pytest.raises(MediaError, match="file too large"):
        read_video_frames(path.read_bytes(), max_bytes=size - 1)
    assert len(read_video_frames(path, num_frames=2, max_bytes=size)[1]) == 2


def test_frame_pixel_limit(make_video: MakeVideo, monkeypatch: pytest.MonkeyPatch) -> None:
    assert video_module.MAX_FRAME_PIXELS == 50_000_000
    path = make_video("px.mp4", "libx264", 3)
    monkeypatch.setattr(video_module, "MAX_FRAME_PIXELS", W * H - 1)
    with pytest.raises(MediaError, match="video frame too large: 64x48"):
        read_video_frames(path)
    with pytest.raises(MediaError, match="video frame too large"):
        probe_video(path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_frames": 0},
        {"num_frames": 2.5},
        {"num_frames": 20, "max_frames": 10},
        {"fps": 0},
        {"fps": -1.0},
        {"fps": float("nan")},
        {"fps": "2"},
        {"max_seconds": 0},
        {"max_bytes": 0},
    ],
)
def test_bad_arguments(make_video: MakeVideo, kwargs: dict) -> None:
    path = make_video("args.mp4", "libx264", 3)
    with pytest.raises(InputError) as e:
        read_video_frames(path, **kwargs)
    assert not isinstance(e.value, MediaError)


@pytest.mark.parametrize("bad", [42, None, np.zeros(4), ["a.mp4"]])
def test_wrong_source_type(bad: object) -> None:
    with pytest.raises(InputError, match="cannot read a video"):
        read_video_frames(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        probe_video(bad)  # type: ignore[arg-type]
