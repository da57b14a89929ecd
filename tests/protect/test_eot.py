import pytest
import torch

from facetrust.errors import InputError
from facetrust.protect.eot import EoT, EoTConfig, TransformSample, rotate


def test_sampler_draws_the_configured_transforms():
    cfg = EoTConfig(
        p_flip=0.3, p_rotate=0.6, rotate=12.0, p_shift=0.5, p_resize=0.7, p_blur=0.2, p_jpeg=0.4
    )
    eot = EoT(cfg)
    g = torch.Generator().manual_seed(0)
    draws = eot.sample_many(2000, g)
    rate = {
        n: sum(n in d.names for d in draws) / len(draws)
        for n in ("flip", "rotate", "shift", "resize", "blur", "jpeg")
    }
    assert rate["flip"] == pytest.approx(0.3, abs=0.05)
    assert rate["rotate"] == pytest.approx(0.6, abs=0.05)
    angles = [d.rotate for d in draws if d.rotate is not None]
    assert min(angles) >= -12.0 and max(angles) <= 12.0 and max(angles) - min(angles) > 20
    assert rate["shift"] == pytest.approx(0.5, abs=0.05)
    assert rate["resize"] == pytest.approx(0.7, abs=0.05)
    assert rate["blur"] == pytest.approx(0.2, abs=0.05)
    assert rate["jpeg"] == pytest.approx(0.4, abs=0.05)
    scales = [d.resize for d in draws if d.resize is not None]
    assert min(scales) >= 0.5 and max(scales) <= 1.0 and max(scales) - min(scales) > 0.45
    qualities = [d.jpeg_quality for d in draws if d.jpeg_quality is not None]
    assert min(qualities) >= 50 and max(qualities) <= 95 and len(set(qualities)) > 30
    sigmas = [d.blur_sigma for d in draws if d.blur_sigma is not None]
    assert min(sigmas) >= 0.3 and max(sigmas) <= 1.2
    for zoom, dx, dy in (d.shift for d in draws if d.shift is not None):
        assert 0.9 <= zoom <= 1.0 and abs(dx) <= 0.04 and abs(dy) <= 0.04


def test_sampler_is_seeded():
    eot = EoT()
    a = eot.sample_many(20, torch.Generator().manual_seed(5))
    b = eot.sample_many(20, torch.Generator().manual_seed(5))
    assert a == b


def test_none_config_is_identity():
    eot = EoT(EoTConfig.none())
    g = torch.Generator().manual_seed(0)
    assert all(d == TransformSample() for d in eot.sample_many(50, g))
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(eot(x, g), x)


def test_every_transform_keeps_shape_and_passes_gradients():
    eot = EoT()
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    t = TransformSample(
        shift=(0.92, 0.03, -0.02),
        resize=0.5,
        blur_sigma=1.0,
        jpeg_quality=60.0,
        flip=True,
        rotate=-8.0,
    )
    y = eot.apply(x, t)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= 0.0 and float(y.detach().max()) <= 1.0
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert t.names == ("flip", "rotate", "shift", "resize", "blur", "jpeg")


def test_default_flips_half_the_draws_and_rotates_every_one():
    draws = EoT().sample_many(400, torch.Generator().manual_seed(0))
    assert sum(bool(d.flip) for d in draws) / len(draws) == pytest.approx(0.5, abs=0.08)
    assert all(d.rotate is not None and abs(d.rotate) <= 10.0 for d in draws)


@pytest.mark.parametrize("shape", [(9, 9), (9, 17)])
def test_rotation_turns_counter_clockwise_about_the_centre(shape):
    h, w = shape
    x = torch.zeros(1, 3, h, w)
    x[..., h // 2, w // 2 + 3] = 1.0  # 3 px right of the centre
    y = rotate(x, 90.0)
    assert y[0, 0].argmax().item() == (h // 2 - 3) * w + w // 2  # now 3 px above it
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-6)
    flipped = EoT().apply(x, TransformSample(flip=True))
    assert flipped[0, 0, h // 2, w // 2 - 3] == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p_jpeg": 1.5},
        {"resize": (0.9, 0.5)},
        {"jpeg_quality": (50, 120)},
        {"shift": 0.5},
        {"p_flip": -0.1},
        {"rotate": 60.0},
    ],
)
def test_bad_config(kwargs):
    with pytest.raises(InputError):
        EoTConfig(**kwargs)
