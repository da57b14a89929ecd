"""The targeted cloak: a pull towards another identity of a bank, next to the push away."""

import pytest
import torch
import torch.nn.functional as F

from facetrust.errors import InputError
from facetrust.protect import Protector
from facetrust.protect.attack import PGD, PGDConfig
from facetrust.protect.encoders import IDENTITY_ENCODERS, build_encoder, identity_bank
from facetrust.protect.eot import EoTConfig


@pytest.fixture()
def tiny():
    return build_encoder("tiny", seed=0)


def _inputs(size: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g), torch.ones(1, 1, size, size)


def _bank(tiny, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        return F.normalize(tiny(torch.rand(n, 3, 48, 48, generator=g)), dim=-1)


def test_choose_identity_takes_the_bank_entry_least_like_the_original(tiny):
    x, _ = _inputs()
    bank = _bank(tiny)
    pgd = PGD([tiny], PGDConfig(steps=1, target_weight=1.0), EoTConfig.none(), [bank])
    ref = pgd.embed(x)
    (goal,) = pgd.choose_identity(ref)
    k = int((bank @ ref[0][0]).argmin())
    assert torch.allclose(goal[0], bank[k])
    # without a target weight there is no goal
    plain = PGD([tiny], PGDConfig(steps=1), EoTConfig.none(), [bank])
    assert plain.choose_identity(ref) == [None]


def test_target_weight_pulls_the_embedding_towards_the_goal(tiny):
    x, mask = _inputs()
    bank = _bank(tiny)
    sims = {}
    for w in (0.0, 2.0):
        cfg = PGDConfig(eps=8 / 255, steps=10, target_weight=w)
        pgd = PGD([tiny], cfg, EoTConfig.none(), [bank])
        res = pgd(x, mask, generator=torch.Generator().manual_seed(0))
        (goal,) = PGD([tiny], PGDConfig(target_weight=1.0), None, [bank]).choose_identity(
            pgd.embed(x)
        )
        (adv,) = pgd.embed((x + res.delta).clamp(0, 1))
        sims[w] = float(adv[0] @ goal[0])
    assert sims[2.0] > sims[0.0] + 0.05


def test_identity_bank_configuration_errors(tiny):
    with pytest.raises(InputError, match="target_weight"):
        PGDConfig(target_weight=-0.5)
    with pytest.raises(InputError, match="identity bank"):
        PGD([tiny], PGDConfig(target_weight=1.0))
    with pytest.raises(InputError, match="one entry per encoder"):
        PGD([tiny], PGDConfig(target_weight=1.0), None, [_bank(tiny), _bank(tiny)])
    with pytest.raises(InputError, match="identity bank"):
        Protector(encoders=("tiny",), target_weight=1.0, device="cpu")
    # the tiny test encoder has no identity space: the default leaves the cloak untargeted
    assert Protector(encoders=("tiny",), device="cpu").pgd_config.target_weight == 0.0


@pytest.mark.parametrize("name", IDENTITY_ENCODERS)
def test_shipped_identity_banks_are_unit_embeddings(name):
    bank = identity_bank(name)
    assert bank is not None and bank.shape[0] >= 16
    assert torch.allclose(bank.norm(dim=-1), torch.ones(bank.shape[0]), atol=1e-3)
    # distinct identities, not one face repeated
    off = (bank @ bank.T)[~torch.eye(len(bank), dtype=torch.bool)]
    assert float(off.max()) < 0.99
    assert identity_bank("tiny") is None


def test_steps_default_per_preset_and_explicit_steps_win():
    from facetrust.protect.protector import PRESET_STEPS

    for name in PRESET_STEPS:
        p = Protector(name, encoders=("tiny",), device="cpu")
        assert p.pgd_config.steps == PRESET_STEPS[name]
    assert PRESET_STEPS["subtle"] < PRESET_STEPS["strong"]
    # a custom budget keeps the named preset's steps; an explicit count wins
    assert Protector("strong", ssim=0.9, encoders=("tiny",)).pgd_config.steps == 80
    assert Protector("strong", steps=7, encoders=("tiny",)).pgd_config.steps == 7


def test_target_weight_default_per_preset():
    from facetrust.protect.protector import PRESET_TARGET_WEIGHT

    for name, w in PRESET_TARGET_WEIGHT.items():  # faceres has a bank; nothing is built here
        assert Protector(name, device="cpu").pgd_config.target_weight == w
    # the pull towards another identity is an option: it protected less on the 60 photos
    assert set(PRESET_TARGET_WEIGHT.values()) == {0.0}
    assert Protector("strong", target_weight=0.5, device="cpu").pgd_config.target_weight == 0.5
