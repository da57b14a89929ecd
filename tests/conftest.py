"""Shared fixtures: real face images from scikit-image, synthetic videos, a tiny trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory) -> None:
    """Tests never read the user's cache (ONNX exports there switch ``--runtime auto``)."""
    import os

    os.environ["FACETRUST_CACHE_DIR"] = str(tmp_path_factory.mktemp("facetrust-cache"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """Eileen Collins (NASA, public domain), 512x512 RGB with one face."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def face_crop(astronaut) -> np.ndarray:
    """A tight crop around the astronaut's face."""
    return np.ascontiguousarray(astronaut[40:210, 150:300])


@pytest.fixture(scope="session")
def group_photo(astronaut) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 1200x800 canvas with four pasted heads of different sizes, and each face's box."""
    rng = np.random.default_rng(0)
    canvas = (rng.normal(120, 20, (800, 1200, 3))).clip(0, 255).astype(np.uint8)
    head = astronaut[0:260, 100:360]  # face at about x 75-175, y 70-170 of this patch
    places = []
    for x, y, w in [(40, 60, 300), (420, 300, 200), (800, 60, 360), (950, 560, 130)]:
        canvas[y : y + w, x : x + w] = np.asarray(Image.fromarray(head).resize((w, w)))
        s = w / 260
        places.append((int(x + 75 * s), int(y + 70 * s), int(x + 175 * s), int(y + 170 * s)))
    return canvas, places


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4") -> Path:
    """Write RGB frames to a video file with PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, astronaut) -> Path:
    """20 frames, 320x240: the astronaut's face drifting to the right."""
    frames = []
    for i in range(20):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        face = np.asarray(Image.fromarray(astronaut[20:260, 120:330]).resize((120, 137)))
        x = 20 + 4 * i
        canvas[50:187, x : x + 120] = face
        frames.append(canvas)
    return write_video(tmp_path_factory.mktemp("vid") / "face.mp4", frames)


@pytest.fixture(scope="session")
def noface_video(tmp_path_factory) -> Path:
    """12 frames of moving gradients: no face anywhere."""
    yy, xx = np.mgrid[0:120, 0:160]
    frames = [
        np.stack([(xx + 5 * i) % 256, (yy * 2) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
        for i in range(12)
    ]
    return write_video(tmp_path_factory.mktemp("vid") / "noface.avi", frames)


@pytest.fixture(scope="session")
def make_clip_tower():
    """Build a CLIP-shaped ViT (width 32, 2 heads, embed 8) of ``layers`` blocks, seeded, in eval
    mode; its weights drawn from N(0, ``std``) when given (larger activations), else as built."""
    import torch

    from facetrust.models.clip import ClipVisionTower

    def make(layers: int = 3, std: float | None = None):
        torch.manual_seed(0)
        tower = ClipVisionTower(width=32, layers=layers, heads=2, embed=8).eval()
        if std is not None:
            with torch.no_grad():
                for p in tower.parameters():
                    p.normal_(0, std)
        return tower

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A ``tiny_cnn`` trained for a few seconds on synthetic 32 px crops, saved as a checkpoint.

    "Fake" crops carry high-frequency noise, "real" crops are smooth; the model learns that,
    which is enough to exercise the whole detection path with real weights.
    """
    import torch

    from facetrust.models import CheckpointMeta, create_model, save_checkpoint

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model("tiny_cnn")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        smooth = torch.from_numpy(rng.uniform(0, 1, (16, 3, 1, 1))).float().expand(16, 3, 32, 32)
        noisy = (smooth + torch.from_numpy(rng.normal(0, 0.25, (16, 3, 32, 32))).float()).clamp(
            0, 1
        )
        x = torch.cat([smooth, noisy])
        y = torch.cat([torch.zeros(16), torch.ones(16)])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    meta = CheckpointMeta(
        facetrust_version="test",
        arch="tiny_cnn",
        input_size=32,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        face_margin=0.2,
        crop_size=32,  # trained on 32 px crops: detection cuts them that size
        calibration={"method": "temperature", "temperature": 1.5},
        threshold=0.5,
        threshold_rule="test",
        training_data={"synthetic": "smooth vs noisy 32 px"},
        metrics={"final_loss": float(loss.detach())},
        created="2026-01-01T00:00:00Z",
        name="tiny-test",
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, meta)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def chromium():
    """``chromium(**context_options)`` -> a new page in a fresh headless Chromium context
    (Debian's ``chromium``, driven by Playwright; nothing shared between tests). Everything
    opened is closed at teardown. A missing Chromium fails the test: it is never skipped."""
    if not CHROMIUM.exists():
        pytest.fail(
            "Chromium is missing: install Debian's package with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this in CI)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield lambda **options: browser.new_context(**options).new_page()
        finally:
            browser.close()
