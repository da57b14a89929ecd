"""Channels-last layout on the CPU (:mod:`facetrust.models.layout`): the trainer puts every CNN
and its batches in it, and the scoring core's batches are in it already; the logits do not
change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrust.detect.scoring import FaceScorer
from facetrust.models import create_model, load_checkpoint
from facetrust.models.layout import channels_last

CL = torch.channels_last


def test_cpu_modules_and_images_go_channels_last_and_nothing_else_changes():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(2, 2))
    assert channels_last(m, "cpu") is m
    assert m[0].weight.is_contiguous(memory_format=CL) and not m[0].weight.is_contiguous()
    x = torch.randn(2, 3, 8, 8)
    assert channels_last(x, "cpu").is_contiguous(memory_format=CL)
    assert channels_last(x, "cuda") is x  # other devices: unchanged
    m2 = torch.nn.Conv2d(3, 4, 3)
    channels_last(m2, torch.device("cuda"))
    assert m2.weight.is_contiguous()
    flat = torch.randn(4, 5)
    assert channels_last(flat, "cpu") is flat  # not a batch of images
    with pytest.raises(TypeError, match="module or tensor"):
        channels_last(np.zeros((2, 3, 8, 8)), "cpu")  # a numpy batch is a caller's mistake


@pytest.mark.parametrize("arch", ["tiny_cnn", "tiny_att", "efficientnet_lite0", "mobilenetv2_100"])
def test_every_cnn_gives_the_same_logits_in_either_layout(arch):
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False).eval()
    s = 64
    x = torch.randn(3, 3, s, s)
    with torch.inference_mode():
        ref = model(x)
        channels_last(model, "cpu")
        out = model(channels_last(x, "cpu"))
    assert model.get_parameter(_first_conv(model)).is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def _first_conv(model) -> str:
    return next(f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))


def test_the_scoring_cnn_reads_a_channels_last_batch(tiny_checkpoint):
    """Scoring needs no conversion: the preprocessed batch is the NHWC uint8 crops permuted, so
    it is channels-last in memory and the convolutions run in that layout (an NCHW copy of the
    same batch costs more per face, benchmarks/cnn_layout_speed.py)."""
    model, meta = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    scorer = FaceScorer(model, meta)
    seen = []
    conv = model.get_submodule(_first_conv(model).rsplit(".", 1)[0])
    conv.register_forward_hook(
        lambda m, inp, out: seen.append(
            (inp[0].is_contiguous(memory_format=CL), out.is_contiguous(memory_format=CL))
        )
    )
    scorer.cnn_logits(crops)
    assert seen == [(True, True)]
