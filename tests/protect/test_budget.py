import math

import numpy as np
import pytest
import torch

from facetrust.errors import InputError
from facetrust.protect.attack import PGD, PGDConfig
from facetrust.protect.budget import (
    Budget,
    BudgetProjector,
    CloakShape,
    fit_budget,
    torch_ssim_map,
)
from facetrust.protect.encoders import build_encoder
from facetrust.protect.eot import EoTConfig
from facetrust.protect.metrics import region_psnr, region_ssim, ssim_map


def _pair(seed: int = 0, size: int = 40):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255


def test_torch_ssim_map_matches_the_numpy_one_inside():
    a, b = _pair()
    ours = torch_ssim_map(_t(a), _t(b))[0, 0].numpy()
    ref = ssim_map(a, b)
    # borders differ (reflect vs symmetric padding); the inside is the same computation
    np.testing.assert_allclose(ours[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-6)


def test_torch_ssim_map_gradient_float64():
    a, b = _pair(1, 16)
    x = _t(a).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: torch_ssim_map(t, _t(b)).mean(), (x,))


def test_cloak_shape_is_linear_grey_dominant_and_has_little_low_frequency():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 3, 48, 48, generator=g, dtype=torch.float64)
    jnd = torch.ones(1, 1, 48, 48, dtype=torch.float64)
    shape = CloakShape(chroma=0.25, lowfreq=1.0, lowfreq_sigma=3.0)
    d = shape(z, jnd)
    torch.testing.assert_close(shape(2 * z, jnd), 2 * d)
    grey = d.mean(1, keepdim=True)
    colour = d - grey
    assert float(colour.norm()) < 0.4 * float(grey.expand_as(d).norm())  # chroma 0.25 x sqrt 2
    # a smooth (low-frequency) z is mostly removed
    smooth = torch.ones_like(z)
    assert float(shape(smooth, jnd)[..., 12:-12, 12:-12].abs().max()) < 0.02
    with pytest.raises(InputError, match="chroma"):
        CloakShape(chroma=2.0)


@pytest.mark.parametrize("kwargs", [{"ssim": 1.0, "psnr": 30}, {"ssim": 0.9, "psnr": 10}])
def test_budget_is_validated(kwargs):
    with pytest.raises(InputError):
        Budget(**kwargs)


def test_projector_scales_onto_the_binding_bound():
    a, _ = _pair(2, 48)
    ref = _t(a).float()
    region = torch.zeros(1, 1, 48, 48, dtype=torch.bool)
    region[..., 8:40, 8:40] = True
    d = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 0.02
    p = BudgetProjector(ref, region, Budget(ssim=0.95, psnr=34.0))
    s = p.scale(d, iterations=6)
    ss, ps = p.measure(s * d)
    assert ss >= 0.95 - 0.003 and ps >= 34.0 - 0.05
    assert abs(ss - 0.95) < 0.003 or abs(ps - 34.0) < 0.05


def test_fit_budget_spends_exactly_the_budget_on_8_bit_output():
    a, _ = _pair(3, 64)
    region = np.zeros((64, 64), bool)
    region[10:54, 10:54] = True
    rng = np.random.default_rng(0)
    pert = (rng.normal(0, 0.01, a.shape) * region[..., None]).astype(np.float32)
    budget = Budget(ssim=0.97, psnr=36.0)
    img, scales, figures = fit_budget(a, a, [pert], [region], budget, eps=16 / 255)
    s, q = region_ssim(a, img, region), region_psnr(a, img, region)
    assert s >= 0.97 and q >= 36.0
    assert s - 0.97 < 0.002 or q - 36.0 < 0.1
    assert figures[0] == pytest.approx((s, q))
    assert np.abs(img.astype(int) - a.astype(int)).max() <= 16
    assert np.array_equal(img[~region], a[~region])
    assert scales[0] > 0


def test_budget_attack_keeps_the_budget_and_lowers_similarity():
    tiny = build_encoder("tiny", seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 48, 48, generator=g)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 8:40, 8:40] = 1.0
    budget = Budget(ssim=0.95, psnr=32.0)
    proj = BudgetProjector(x, mask >= 0.5, budget)
    pgd = PGD([tiny], PGDConfig(eps=16 / 255, steps=8, norm="budget"), EoTConfig.none())
    res = pgd(x, mask, generator=g, shape=CloakShape(), projector=proj)
    ss, ps = proj.measure(mask * res.delta)
    assert ss >= 0.95 - 0.01 and ps >= 32.0 - 0.2
    assert res.similarity[-1] < res.similarity[0]
    assert float((mask == 0).expand_as(res.delta).float().mul(mask * res.delta).abs().max()) == 0
    with pytest.raises(InputError, match="budget"):
        pgd(x, mask)
    assert math.isfinite(ps)
