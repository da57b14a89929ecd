"""Fixtures for the model tests: ImageNet-style preprocessing of scikit-image photos."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image


def preprocess(image: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic), centre-crop, normalise: ``[1, 3, S, S]``."""
    im = Image.fromarray(image).convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return x.unsqueeze(0)


@pytest.fixture(scope="session")
def imagenet_input() -> Callable[[str, str], torch.Tensor]:
    """``imagenet_input(arch, photo)``: a skimage photo, preprocessed as ``model_info`` says."""
    from skimage import data

    from facetrust.models import model_info

    def make(arch: str, photo: str) -> torch.Tensor:
        info = model_info(arch)
        return preprocess(getattr(data, photo)(), info.input_size, info.mean, info.std)

    return make


@pytest.fixture(scope="session", autouse=True)
def _timm_imported() -> None:
    """Import timm once up front (a few seconds), so no single test carries that cost."""
    from facetrust._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import timm  # noqa: F401


@pytest.fixture(scope="module")
def tower(make_clip_tower):
    """A 2-block CLIP-shaped ViT (width 32) with random weights: the export's CLIP branch."""
    return make_clip_tower(layers=2, std=0.2)


@pytest.fixture
def float32_clip(monkeypatch):
    """The torch CLIP path in float32 (it uses bfloat16 autocast on CPUs with native bf16)."""
    import facetrust.detect.experts.clip as clip_mod

    monkeypatch.setattr(clip_mod, "_cpu_bf16", lambda: False)
