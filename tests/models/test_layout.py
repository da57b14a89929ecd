"""Channels-last layout on the CPU (:mod:`facetrust.models.layout`): the scoring core and the
trainer put every CNN and its inputs in it; the logits do not change."""

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
    assert channels_last(None, "cpu") is None  # nothing to convert


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


def test_the_scorer_runs_its_cnn_channels_last_with_the_same_logits(tiny_checkpoint):
    model, meta = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    scorer = FaceScorer(model, meta)
    assert model.get_parameter(_first_conv(model)).is_contiguous(memory_format=CL)
    seen = []
    model.register_forward_pre_hook(
        lambda m, inp: seen.append(inp[0].is_contiguous(memory_format=CL))
    )
    logits = scorer.cnn_logits(crops)
    assert seen == [True]
    contiguous, _ = load_checkpoint(tiny_checkpoint)
    with torch.inference_mode():
        ref = contiguous.eval()(scorer.preprocess(crops))[:, 0].numpy()
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
