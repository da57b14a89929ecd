"""The ``mobilefacenet`` surrogate encoder: builds, differentiates, and recognises a face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facetrust.errors import InputError
from facetrust.protect.encoders import (
    DEFAULT_ENCODERS,
    ENCODER_NAMES,
    Encoder,
    TinyEncoder,
    build_encoder,
    sub_square,
)


@pytest.fixture(scope="module")
def mobilefacenet():
    return build_encoder("mobilefacenet")


def test_build_mobilefacenet_on_a_224_crop(mobilefacenet):
    assert "mobilefacenet" in ENCODER_NAMES and "mobilefacenet" not in DEFAULT_ENCODERS
    assert not any(p.requires_grad for p in mobilefacenet.parameters())
    x = torch.rand(1, 3, 224, 224, requires_grad=True)
    y = mobilefacenet(x)
    assert y.shape == (1, 192) and y.dtype == torch.float32 and torch.isfinite(y).all()
    F.cosine_similarity(y, torch.ones(1, 192)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the sub-square is cut before resizing: outside it the gradient is exactly zero
    assert x.grad[..., :, :10].abs().sum() == 0


def test_sub_square_geometry():
    x = torch.arange(100.0).reshape(1, 1, 10, 10)
    assert sub_square(x, 0.4, 0.5)[0, 0].tolist()[0] == [33.0, 34.0, 35.0, 36.0]
    assert sub_square(x, 0.4, 0.0)[0, 0, 0, 0] == 3.0  # clamped to the top edge
    assert sub_square(x, 0.4, 1.0)[0, 0, -1, -1] == 96.0  # clamped to the bottom edge
    assert sub_square(torch.zeros(2, 3, 8, 12), 0.5).shape == (2, 3, 4, 4)
    with pytest.raises(InputError, match="crop"):
        Encoder("t", TinyEncoder(), 64, (0.5,) * 3, (0.25,) * 3, crop=0.0)


def _gray(rgb: np.ndarray) -> np.ndarray:
    g = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(g[..., None], 3, axis=-1) / 255.0


def _tensor(a: np.ndarray, size: int | None = None) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float()
    return t if size is None else F.interpolate(t, size=(size, size), mode="area")


def test_same_face_shifted_is_closer_than_different_faces(mobilefacenet, astronaut):
    """Protector-style crops (face box + 25 % on each side), grey and 37 px like the LFW faces
    they are compared with (so neither colour nor resolution tells them apart)."""
    from skimage import data

    g = _gray(astronaut)
    anchor = _tensor(g[0:256, 96:352], 37)
    shifted = _tensor(g[5:261, 99:355], 37)
    # skimage's LFW faces are tight 25 px crops: add the 25 % margin (edges replicated)
    lfw = [np.pad(f, ((6, 6), (6, 6)), mode="edge") for f in data.lfw_subset()[:20]]
    others = torch.cat([_tensor(np.repeat(f[..., None], 3, axis=-1)) for f in lfw])
    with torch.no_grad():
        e = F.normalize(mobilefacenet(torch.cat([anchor, shifted])), dim=1)
        o = F.normalize(mobilefacenet(others), dim=1)
    same = float(e[0] @ e[1])
    to_others = (e[0] @ o.T).max().item()
    between_others = (o @ o.T - 2 * torch.eye(len(o))).max().item()
    assert same > to_others and same > between_others, (same, to_others, between_others)
