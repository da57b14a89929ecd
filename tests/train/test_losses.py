import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facetrust.train.losses import (
    BCELoss,
    CELoss,
    CombinedLoss,
    KLConsistency,
    KLDistillation,
    SupConLoss,
    bce_loss,
    ce_loss,
    kl_consistency,
    kl_distillation,
    supcon_loss,
)

Z = torch.tensor([2.0, -1.0, 0.5, 0.0])
Y = torch.tensor([1.0, 0.0, 0.0, 1.0])
Z2 = torch.tensor([[1.0, -0.5], [0.2, 0.3], [-2.0, 1.0]])
Y2 = torch.tensor([0, 1, 1])


def test_bce_matches_torch_and_hand_values():
    assert torch.allclose(bce_loss(Z, Y), nn.BCEWithLogitsLoss()(Z, Y))
    assert torch.allclose(bce_loss(Z[:, None], Y), bce_loss(Z, Y))
    pw = torch.tensor(3.0)
    assert torch.allclose(bce_loss(Z, Y, pos_weight=3.0), nn.BCEWithLogitsLoss(pos_weight=pw)(Z, Y))
    # label smoothing 0.2: targets 0.9 / 0.1; hand computation
    eps = 0.2
    t = [0.9, 0.1, 0.1, 0.9]
    sig = [1 / (1 + math.exp(-z)) for z in Z.tolist()]
    want = (
        -sum(ti * math.log(s) + (1 - ti) * math.log(1 - s) for ti, s in zip(t, sig, strict=True))
        / 4
    )
    assert bce_loss(Z, Y, label_smoothing=eps).item() == pytest.approx(want, rel=1e-5)
    assert BCELoss(0.2)(Z, Y).item() == pytest.approx(want, rel=1e-5)


def test_ce_matches_torch():
    assert torch.allclose(ce_loss(Z2, Y2), F.cross_entropy(Z2, Y2))
    assert torch.allclose(CELoss(0.1)(Z2, Y2), F.cross_entropy(Z2, Y2, label_smoothing=0.1))


def test_kl_consistency_zero_iff_equal_symmetric_and_hand_value():
    assert kl_consistency(Z, Z).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_consistency(Z2, Z2).item() == pytest.approx(0.0, abs=1e-7)
    b = torch.tensor([1.0, 0.0, -0.5, 2.0])
    ab, ba = kl_consistency(Z, b), kl_consistency(b, Z)
    assert ab.item() > 0 and ab.item() == pytest.approx(ba.item(), rel=1e-6)

    def kl(p, q):
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    pa = [1 / (1 + math.exp(-v)) for v in Z.tolist()]
    pb = [1 / (1 + math.exp(-v)) for v in b.tolist()]
    want = sum(0.5 * (kl(p, q) + kl(q, p)) for p, q in zip(pa, pb, strict=True)) / 4
    assert ab.item() == pytest.approx(want, rel=1e-5)
    # categorical: against torch's kl_div
    c = Z2.flip(0)
    la, lc = F.log_softmax(Z2, 1), F.log_softmax(c, 1)
    ref = 0.5 * (
        F.kl_div(lc, la, log_target=True, reduction="batchmean")
        + F.kl_div(la, lc, log_target=True, reduction="batchmean")
    )
    assert torch.allclose(KLConsistency()(Z2, c), ref, atol=1e-6)


def test_kl_distillation():
    assert kl_distillation(Z2, Z2.clone()).item() == pytest.approx(0.0, abs=1e-7)
    t = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    T = 3.0
    ref = F.kl_div(F.log_softmax(Z2 / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T**2
    assert torch.allclose(kl_distillation(Z2, t, T), ref, atol=1e-6)
    assert torch.allclose(KLDistillation(T)(Z2, t), ref, atol=1e-6)
    # binary logits are Bernoulli: same as the 2-class pair (0, z)
    zb, tb = torch.tensor([0.3, -1.0]), torch.tensor([1.0, 2.0])
    two = lambda z: torch.stack([torch.zeros_like(z), z], 1)  # noqa: E731
    assert torch.allclose(kl_distillation(zb, tb), kl_distillation(two(zb), two(tb)), atol=1e-6)
    # the teacher gets no gradient
    s = Z2.clone().requires_grad_()
    tt = t.clone().requires_grad_()
    kl_distillation(s, tt).backward()
    assert s.grad is not None and tt.grad is None


def _supcon_reference(f, y, tau):
    z = F.normalize(f, dim=1)
    n, total, count = len(y), 0.0, 0
    for i in range(n):
        pos = [p for p in range(n) if p != i and y[p] == y[i]]
        if not pos:
            continue
        den = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / den) for p in pos) / len(pos)
        count += 1
    return total / count


def test_supcon_matches_reference_and_prefers_clustered_features():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 2])  # label 2 has no positive
    assert supcon_loss(f, y, 0.5).item() == pytest.approx(_supcon_reference(f, y, 0.5), rel=1e-5)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    noise = 0.05 * torch.randn(6, 2, generator=g)
    clustered = torch.stack([e0, e0, e0, e1, e1, e1]) + noise
    mixed = torch.stack([e0, e1, e0, e1, e0, e1]) + noise
    assert supcon_loss(clustered, labels).item() < supcon_loss(mixed, labels).item()
    # views: [B, V, D] equals flattening with repeated labels
    fv = torch.randn(3, 2, 4, generator=g)
    yv = torch.tensor([0, 1, 0])
    flat = supcon_loss(fv.reshape(6, 4), yv.repeat_interleave(2))
    assert torch.allclose(SupConLoss()(fv, yv), flat)
    # no positives at all: zero, and backward still works
    h = torch.randn(3, 4, requires_grad=True)
    out = supcon_loss(h, torch.tensor([0, 1, 2]))
    out.backward()
    assert out.item() == 0.0 and torch.all(h.grad == 0)


def test_float64_gradcheck():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    z2 = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    c2 = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    f = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    lab = torch.tensor([0, 1, 0, 1, 1])
    assert torch.autograd.gradcheck(lambda a: bce_loss(a, y, 0.1, 2.0), (z,))
    assert torch.autograd.gradcheck(lambda a: ce_loss(a, torch.tensor([0, 2, 1, 1])), (c,))
    assert torch.autograd.gradcheck(kl_consistency, (z, z2))
    assert torch.autograd.gradcheck(kl_consistency, (c, c2))
    assert torch.autograd.gradcheck(lambda a: kl_distillation(a, c2.detach(), 2.0), (c,))
    assert torch.autograd.gradcheck(lambda a: supcon_loss(a, lab, 0.2), (f,))


def test_shape_errors_are_value_errors():
    with pytest.raises(ValueError, match="logits"):
        bce_loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="targets"):
        bce_loss(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="C >= 2"):
        ce_loss(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        ce_loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="differ in shape"):
        kl_consistency(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(torch.zeros(4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="Tensor"):
        bce_loss([0.0], torch.zeros(1))


def test_combined_loss_sums_weighted_parts_and_backpropagates():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, generator=g, requires_grad=True)
    logits_b = torch.randn(6, generator=g, requires_grad=True)
    feats = torch.randn(6, 8, generator=g, requires_grad=True)
    teacher = torch.randn(6, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    loss = CombinedLoss({"bce": 1.0, "kl": 0.5, "supcon": 0.1, "distill": 0.2})
    total, parts = loss(logits, y, logits_b=logits_b, features=feats, teacher_logits=teacher)
    assert set(parts) == {"bce", "kl", "supcon", "distill"}
    assert torch.allclose(parts["bce"], bce_loss(logits, y.float()))
    assert torch.allclose(parts["kl"], kl_consistency(logits, logits_b))
    assert torch.allclose(parts["supcon"], supcon_loss(feats, y))
    assert torch.allclose(parts["distill"], kl_distillation(logits, teacher))
    want = parts["bce"] + 0.5 * parts["kl"] + 0.1 * parts["supcon"] + 0.2 * parts["distill"]
    assert torch.allclose(total, want)
    assert all(not p.requires_grad for p in parts.values())
    total.backward()
    for t in (logits, logits_b, feats):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    ce_total, ce_parts = CombinedLoss({"ce": 1.0})(torch.randn(6, 2, generator=g), y)
    assert set(ce_parts) == {"ce"} and torch.allclose(ce_total, ce_parts["ce"])


def test_combined_loss_missing_inputs_and_bad_config():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="'kl' needs logits_b"):
        CombinedLoss({"bce": 1, "kl": 0.5})(torch.zeros(2), y)
    with pytest.raises(ValueError, match="'supcon' needs features"):
        CombinedLoss({"bce": 1, "supcon": 0.1})(torch.zeros(2), y)
    with pytest.raises(ValueError, match="'distill' needs teacher_logits"):
        CombinedLoss({"bce": 1, "distill": 1})(torch.zeros(2), y)
    # a zero weight disables a term and its input requirement
    total, parts = CombinedLoss({"bce": 1, "kl": 0.0})(torch.zeros(2), y)
    assert set(parts) == {"bce"}
    with pytest.raises(ValueError, match="unknown loss terms"):
        CombinedLoss({"bce": 1, "focal": 1})
    with pytest.raises(ValueError, match="either"):
        CombinedLoss({"bce": 1, "ce": 1})


def test_combined_loss_runs_a_frozen_teacher_on_inputs():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    loss = CombinedLoss({"ce": 1.0, "distill": 1.0}, distill_temperature=2.0, teacher=teacher)
    loss.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(4, 3)
    student = torch.randn(4, 2, requires_grad=True)
    total, parts = loss(student, torch.tensor([0, 1, 1, 0]), inputs=x)
    with torch.no_grad():
        ref = kl_distillation(student, teacher(x), 2.0)
    assert torch.allclose(parts["distill"], ref)
    total.backward()
    assert student.grad is not None
    assert "distill" in repr(loss)
