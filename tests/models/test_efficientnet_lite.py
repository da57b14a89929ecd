"""facetrust's EfficientNet-Lite0 is timm's tf_efficientnet_lite0 without timm.

Same module names and shapes (checkpoints and ImageNet weights load unchanged), the same
initialisation, and the same logits in eval and train mode, including at
sizes where TensorFlow "SAME" padding is asymmetric. timm stays installed for its other
architectures, so the reference is built here.
"""

from __future__ import annotations

import pytest
import torch

from facetrust.models.efficientnet_lite import EfficientNetLite


@pytest.fixture(scope="module")
def timm_lite0():
    from facetrust._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import timm

    def build(**kw):
        return timm.create_model("tf_efficientnet_lite0", pretrained=False, **kw)

    return build


def test_same_state_dict_and_initialisation(timm_lite0):
    torch.manual_seed(0)
    ref = timm_lite0(num_classes=3).state_dict()
    ours = EfficientNetLite(num_classes=3).state_dict()
    assert list(ours) == list(ref)
    for k, v in ref.items():
        assert ours[k].shape == v.shape, k
        if "bn" in k or k.endswith(".bias"):  # BatchNorm and biases: constants
            assert torch.equal(ours[k], v), k
        elif v.numel() >= 500:  # random weights: the same distribution (TF initialisation)
            assert 0.85 < float(ours[k].std() / v.std()) < 1.15, k


@pytest.mark.parametrize("size", [(64, 64), (67, 75), (192, 192)])
def test_same_logits_eval_and_train(timm_lite0, size):
    torch.manual_seed(1)
    ref = timm_lite0(num_classes=2)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    ours = EfficientNetLite(num_classes=2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        ref.eval(), ours.eval()
        assert torch.allclose(ours(x), ref(x), atol=1e-6, rtol=0)
        assert torch.allclose(
            ours.forward_head(ours.forward_features(x), pre_logits=True),
            ref.forward_head(ref.forward_features(x), pre_logits=True),
            atol=1e-6,
            rtol=0,
        )
        ref.train(), ours.train()
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=0)


def test_stochastic_depth_and_dropout_follow_timm(timm_lite0):
    ref = timm_lite0(num_classes=1, drop_rate=0.2, drop_path_rate=0.2)
    ours = EfficientNetLite(num_classes=1, drop_rate=0.2, drop_path_rate=0.2)
    ref_p = [
        b.drop_path.drop_prob for s in ref.blocks for b in s if hasattr(b.drop_path, "drop_prob")
    ]
    ours_p = [b.drop_path.p for s in ours.blocks for b in s if hasattr(b.drop_path, "p")]
    assert ours_p == pytest.approx(ref_p) and len(ours_p) == 15
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 64, 64)
    ref.train(), ours.train()
    torch.manual_seed(5)
    a = ref(x)
    torch.manual_seed(5)
    b = ours(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_bad_drop_rate():
    with pytest.raises(ValueError, match="drop rates"):
        EfficientNetLite(drop_rate=1.5)
