import pytest
import torch
from torch import nn

from facetrust.train.faults import FaultConfig, FaultInjector, resettable_layers
from facetrust.train.losses import bce_loss


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), (torch.rand(n, generator=g) < 0.5).float()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.Linear(8, 1)
    )


def test_all_off_is_identity():
    f = FaultInjector(FaultConfig())
    assert f.active == [] and repr(f) == "FaultInjector(off)"
    x, y = _batch()
    x2, y2 = f.corrupt_batch(x, y, step=3)
    assert x2 is x and y2 is y
    assert f.loss_fn(bce_loss) is bce_loss
    model = _model()
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 10):
        assert f.after_backward(model, step) is False
        assert f.on_step_end(model, step) == []
    assert f.on_epoch_end(model, 1) == []
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_label_noise_flips_about_the_fraction_and_only_flips():
    f = FaultInjector(FaultConfig(label_noise=0.3, seed=1))
    y = (torch.arange(10_000) % 2).float()
    x = torch.zeros(10_000, 1)
    _, y2 = f.corrupt_batch(x, y, step=1)
    assert set(y2.unique().tolist()) <= {0.0, 1.0}
    changed = (y2 != y).float().mean().item()
    assert 0.28 < changed < 0.32
    assert torch.equal(y2[y2 != y], 1 - y[y2 != y])
    _, again = f.corrupt_batch(x, y, step=1)  # same step, same flips
    assert torch.equal(again, y2)
    _, other = f.corrupt_batch(x, y, step=2)
    assert not torch.equal(other, y2)
    _, yl = f.corrupt_batch(x, y.long(), step=1)  # integer labels too
    assert yl.dtype == torch.long and torch.equal(yl.float(), y2)
    with pytest.raises(ValueError, match="binary"):
        f.corrupt_batch(x[:3], torch.tensor([0, 1, 2]), step=1)


def test_input_noise_has_the_configured_std():
    f = FaultInjector(FaultConfig(input_noise=0.25))
    x = torch.full((200, 3, 16, 16), 0.5)
    y = torch.zeros(200)
    x2, y2 = f.corrupt_batch(x, y, step=1)
    assert torch.equal(y2, y) and torch.equal(x, torch.full_like(x, 0.5))  # input untouched
    d = x2 - x
    assert d.std().item() == pytest.approx(0.25, rel=0.02)
    assert abs(d.mean().item()) < 0.01


def test_shuffle_keeps_labels_but_changes_order():
    f = FaultInjector(FaultConfig(shuffle_labels=True))
    x, y = _batch(256)
    x2, y2 = f.corrupt_batch(x, y, step=5)
    assert x2 is x
    assert torch.equal(torch.sort(y2).values, torch.sort(y).values)
    assert not torch.equal(y2, y)


def test_wrong_loss_differs_and_its_gradient_points_the_wrong_way():
    f = FaultInjector(FaultConfig(wrong_loss=True))
    wrong = f.loss_fn(bce_loss)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, generator=g, requires_grad=True)
    y = (torch.rand(32, generator=g) < 0.5).float()
    right_val = bce_loss(z, y)
    (g_right,) = torch.autograd.grad(right_val, z)
    wrong_val = wrong(z, y)
    (g_wrong,) = torch.autograd.grad(wrong_val, z)
    assert not torch.isclose(right_val, wrong_val)
    assert torch.all(torch.sign(g_right) == -torch.sign(g_wrong))  # every logit, opposite way
    assert torch.allclose(wrong(z, y, 0.1), bce_loss(z, 1 - y, 0.1))  # extra args passed on


def test_zero_grad_every_n_zeroes_exactly_on_multiples():
    f = FaultInjector(FaultConfig(zero_grad_every_n=3))
    model = _model()
    x, _ = _batch(4)
    zeroed = []
    for step in range(1, 13):
        model.zero_grad()
        model(x).sum().backward()
        did = f.after_backward(model, step)
        allzero = all(torch.all(p.grad == 0) for p in model.parameters())
        assert did == allzero
        if did:
            zeroed.append(step)
    assert zeroed == [3, 6, 9, 12]
    assert f.after_backward(model, 0) is False


def _changed_layers(model, before):
    out = set()
    for name, m in resettable_layers(model):
        for k, v in m.state_dict().items():
            if not torch.equal(v, before[f"{name}.{k}"]):
                out.add(name)
    return out


@pytest.mark.parametrize("reset_on", ["epoch", "step"])
def test_random_weight_reset_changes_exactly_one_layer(reset_on):
    f = FaultInjector(FaultConfig(random_weight_reset=1.0, reset_on=reset_on, seed=4))
    hook, idle = (
        (f.on_epoch_end, f.on_step_end) if reset_on == "epoch" else (f.on_step_end, f.on_epoch_end)
    )
    model = _model()
    names = {n for n, _ in resettable_layers(model)}
    assert names == {"0", "3", "4"}
    seen = set()
    for n in range(1, 7):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert idle(model, n) == []
        assert _changed_layers(model, before) == set()
        rng_state = torch.get_rng_state()
        reset = hook(model, n)
        assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
        assert len(reset) == 1 and reset[0] in names
        assert _changed_layers(model, before) == set(reset)
        seen.update(reset)
    assert len(seen) > 1  # the layer is chosen at random

    off = FaultInjector(FaultConfig(random_weight_reset=0.0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert off.on_epoch_end(model, 1) == [] and off.on_step_end(model, 1) == []
    assert _changed_layers(model, before) == set()


def test_active_repr_and_validation():
    f = FaultInjector(FaultConfig(label_noise=0.1, wrong_loss=True, random_weight_reset=0.5))
    assert f.active == ["label_noise", "wrong_loss", "random_weight_reset"]
    r = repr(f)
    assert "label_noise=0.1" in r and "wrong_loss=True" in r and "reset_on='epoch'" in r
    for bad in (
        {"label_noise": 1.5},
        {"input_noise": -1},
        {"zero_grad_every_n": -2},
        {"random_weight_reset": 2.0},
        {"reset_on": "batch"},
    ):
        with pytest.raises(ValueError):
            FaultConfig(**bad)
