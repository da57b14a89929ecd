import math

import pytest
import torch

from facetrust.errors import InputError
from facetrust.protect.attack import PGD, PGDConfig, frozen_eval, step_sizes
from facetrust.protect.encoders import build_encoder
from facetrust.protect.eot import EoTConfig


@pytest.fixture()
def tiny():
    return build_encoder("tiny", seed=0)


def _inputs(size: int = 48):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g)
    mask = torch.zeros(1, 1, size, size)
    mask[..., 8:40, 10:38] = 1.0
    mask[..., 6:8, 10:38] = 0.4  # a feathered edge
    return x, mask


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_perturbation_within_eps_and_inside_mask(tiny, eps):
    x, mask = _inputs()
    pgd = PGD([tiny], PGDConfig(eps=eps, steps=6, eot_samples=2), EoTConfig())
    res = pgd(x, mask, generator=torch.Generator().manual_seed(1))
    change = (x + mask * res.delta).clamp(0, 1) - x
    assert float(change.abs().max()) <= eps + 1e-7
    assert float(res.delta.abs().max()) <= eps + 1e-7
    assert float(change[mask.expand_as(change) == 0].abs().max()) == 0.0
    assert float(change.abs().max()) > 0.5 * eps  # it did something
    assert len(res.similarity) == 6


def test_attack_lowers_similarity_on_its_encoder(tiny):
    x, mask = _inputs()
    mask = torch.ones_like(mask)
    pgd = PGD([tiny], PGDConfig(eps=8 / 255, steps=10), EoTConfig.none())
    res = pgd(x, mask, generator=torch.Generator().manual_seed(0))
    before, after = pgd.embed(x), pgd.embed((x + res.delta).clamp(0, 1))
    sim = float((before[0] * after[0]).sum())
    assert sim < 0.99
    assert res.similarity[-1] < res.similarity[0]


def test_modes_and_flags_restored(tiny):
    tiny.train()
    tiny.net.body[0].weight.requires_grad_(True)
    x, mask = _inputs(32)
    PGD([tiny], PGDConfig(steps=2))(x, mask[..., :32, :32])
    assert tiny.training and all(m.training for m in tiny.modules())
    assert tiny.net.body[0].weight.requires_grad
    assert not tiny.net.body[2].weight.requires_grad
    with frozen_eval([tiny]):
        assert not tiny.training and not tiny.net.body[0].weight.requires_grad
    assert tiny.training


def test_cosine_step_schedule():
    cfg = PGDConfig(eps=8 / 255, steps=40)
    a = step_sizes(cfg)
    assert len(a) == 40
    assert a[0] == pytest.approx(4 * cfg.eps / 40)
    assert a[-1] == pytest.approx(0.5 * cfg.eps / 40)
    assert all(u >= v for u, v in zip(a, a[1:], strict=False))
    assert sum(a) == pytest.approx(2.25 * cfg.eps, rel=0.05)
    assert step_sizes(PGDConfig(steps=0)) == []
    assert math.isclose(step_sizes(PGDConfig(eps=4 / 255, steps=1))[0], 4 / 255)


@pytest.mark.parametrize(
    "kwargs", [{"eps": 0.0}, {"eps": 0.5}, {"steps": -1}, {"eot_samples": 0}, {"momentum": 2.0}]
)
def test_bad_config(kwargs):
    with pytest.raises(InputError):
        PGDConfig(**kwargs)


def test_bad_shapes(tiny):
    pgd = PGD([tiny], PGDConfig(steps=1))
    with pytest.raises(InputError):
        pgd(torch.rand(3, 32, 32), torch.ones(1, 1, 32, 32))
    with pytest.raises(InputError):
        pgd(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 16, 16))
    with pytest.raises(InputError):
        PGD([])


def test_l2_attack_stays_in_its_ball_box_and_mask(tiny):
    x, mask = _inputs()
    radius = 0.8
    pgd = PGD([tiny], PGDConfig(eps=16 / 255, steps=8, norm="l2"), EoTConfig())
    res = pgd(x, mask, generator=torch.Generator().manual_seed(1), radius=radius)
    change = (x + mask * res.delta).clamp(0, 1) - x
    assert float((mask * res.delta).norm()) <= radius * (1 + 1e-5)
    assert float((mask * res.delta).norm()) > 0.5 * radius  # it spent its budget
    assert float(res.delta.abs().max()) <= 16 / 255 + 1e-7
    assert float(change[mask.expand_as(change) == 0].abs().max()) == 0.0
    assert res.similarity[-1] < res.similarity[0]


def test_l2_attack_needs_a_radius_and_zero_means_no_change(tiny):
    x, mask = _inputs(32)
    mask = mask[..., :32, :32]
    pgd = PGD([tiny], PGDConfig(steps=2, norm="l2"))
    with pytest.raises(InputError, match="radius"):
        pgd(x, mask)
    assert float(pgd(x, mask, radius=0.0).delta.abs().max()) == 0.0
    with pytest.raises(InputError, match="norm"):
        PGDConfig(norm="l1")
