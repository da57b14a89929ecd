"""The ``faceres`` surrogate encoder: builds, differentiates, and recognises a face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facetrust.protect.encoders import (
    DEFAULT_ENCODERS,
    ENCODER_NAMES,
    FACERES_OUTPUT,
    build_encoder,
    resolve_dtype,
)


@pytest.fixture(scope="module")
def faceres():
    return build_encoder("faceres")


def test_build_faceres_on_a_224_crop(faceres):
    assert "faceres" in ENCODER_NAMES and "faceres" in DEFAULT_ENCODERS
    assert not any(p.requires_grad for p in faceres.parameters())
    # only the descriptor is computed, not the age and gender heads
    assert faceres.net.net.output_names == (FACERES_OUTPUT,)
    x = torch.rand(1, 3, 224, 224, requires_grad=True)
    y = faceres(x)
    assert y.shape == (1, 1024) and y.dtype == torch.float32 and torch.isfinite(y).all()
    F.cosine_similarity(y, torch.ones(1, 1024)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_faceres_runs_in_float32_whatever_is_asked():
    enc = build_encoder("faceres", dtype=resolve_dtype("bfloat16"))
    assert enc.dtype == torch.float32
    assert all(b.dtype != torch.bfloat16 for b in enc.buffers())


def _tensor(a: np.ndarray, size: int | None = None) -> torch.Tensor:
    """``(H, W, 3)`` 0-255 -> ``(1, 3, H, W)`` in [0, 1], optionally area-resized to ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float() / 255.0
    return t if size is None else F.interpolate(t, size=(size, size), mode="area")


def test_same_face_shifted_is_closer_than_different_faces(faceres, astronaut):
    """Protector-style crops (face box + 25 % on each side), grey and 37 px like the LFW faces
    they are compared with (so neither colour nor resolution tells them apart)."""
    from skimage import data

    rgb = astronaut.astype(np.float32)
    grey = np.repeat((rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, -1)
    anchor = _tensor(grey[0:256, 96:352], 37)
    shifted = _tensor(grey[5:261, 99:355], 37)
    # skimage's LFW faces are tight 25 px crops in [0, 1]: add the 25 % margin (edges replicated)
    lfw = [np.pad(f, ((6, 6), (6, 6)), mode="edge") * 255.0 for f in data.lfw_subset()[:20]]
    others = torch.cat([_tensor(np.repeat(f[..., None], 3, axis=-1)) for f in lfw])
    with torch.no_grad():
        e = F.normalize(faceres(torch.cat([anchor, shifted])), dim=1)
        o = F.normalize(faceres(others), dim=1)
    same = float(e[0] @ e[1])
    to_others = (e[0] @ o.T).max().item()
    between_others = (o @ o.T - 2 * torch.eye(len(o))).max().item()
    assert same > to_others and same > between_others, (same, to_others, between_others)
