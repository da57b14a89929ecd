"""The tfjs graph-model runner: a synthetic graph against a numpy reference, weights decoding,
errors, the PReLU repair and the shipped MobileFaceNet."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from facetrust.errors import ModelError
from facetrust.models.tfjs.graph import (
    load_tfjs_graph,
    read_weights,
    repair_prelu_fusion,
)
from facetrust.protect.encoders import MOBILEFACENET_DIR

# --- building tfjs graph models in the test --------------------------------------------------


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def _strs(*values: str) -> dict:
    return {"list": {"s": [_s(v)["s"] for v in values]}}


def _node(name: str, op: str, inputs=(), **attr) -> dict:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _conv_attrs(strides=(1, 1), padding="SAME", fused=(), num_args=0, explicit=()) -> dict:
    return {
        "strides": _ints(1, strides[0], strides[1], 1),
        "padding": _s(padding),
        "data_format": _s("NHWC"),
        "dilations": _ints(1, 1, 1, 1),
        "explicit_paddings": _ints(*explicit) if explicit else {"list": {}},
        "fused_ops": _strs(*fused) if fused else {"list": {}},
        "num_args": {"i": str(num_args)},
    }


def _quantize(value: np.ndarray, q: dict) -> np.ndarray:
    top = 255 if q["dtype"] == "uint8" else 65535
    return np.clip(np.round((value - q["min"]) / q["scale"]), 0, top)


def _write_model(tmp_path, nodes, weights, shards=1, quant=None):
    """Write model.json and ``shards`` weight files; ``quant``: name -> quantization dict."""
    quant = quant or {}
    specs, blobs = [], []
    for name, value in weights.items():
        spec = {"name": name, "shape": list(value.shape), "dtype": str(value.dtype)}
        q = quant.get(name)
        if q is None:
            blobs.append(value.astype(value.dtype.newbyteorder("<")).tobytes())
        elif q["dtype"] == "float16":
            blobs.append(value.astype("<f2").tobytes())
        else:
            blobs.append(
                _quantize(value, q).astype("u1" if q["dtype"] == "uint8" else "<u2").tobytes()
            )
        if q is not None:
            spec["quantization"] = q
        specs.append(spec)
    data = b"".join(blobs)
    cut = [len(data) * k // shards for k in range(shards + 1)]
    paths = []
    for k in range(shards):
        p = f"group1-shard{k + 1}of{shards}.bin"
        (tmp_path / p).write_bytes(data[cut[k] : cut[k + 1]])
        paths.append(p)
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": paths, "weights": specs}],
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    return path


def _const(name: str) -> dict:
    return _node(name, "Const", dtype={"type": "DT_FLOAT"})


# --- a numpy reference, written independently of the module ----------------------------------


def _np_conv(x, w, stride, pads, depthwise=False):
    """NHWC convolution; ``pads`` = (top, bottom, left, right); w: (kh, kw, C, O or M)."""
    x = np.pad(x, ((0, 0), pads[:2], pads[2:], (0, 0)))
    kh, kw = w.shape[:2]
    oh = (x.shape[1] - kh) // stride + 1
    ow = (x.shape[2] - kw) // stride + 1
    out = []
    for i in range(oh):
        row = []
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
            if depthwise:
                y = np.einsum("bhwc,hwcm->bcm", patch, w).reshape(len(x), -1)
            else:
                y = np.einsum("bhwc,hwco->bo", patch, w)
            row.append(y)
        out.append(np.stack(row, 1))
    return np.stack(out, 1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small graph: fused conv (bias + PReLU, SAME, stride 2), fused depthwise conv (bias +
    Relu6, multiplier 2), an explicitly padded conv, a residual Add, mean pooling, the L2
    normalisation tail; weights in two shards, one uint8- and one float16-quantised."""
    rng = np.random.default_rng(0)
    w = {
        "w1": rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (4,)).astype(np.float32),
        "a1": rng.uniform(0.1, 0.3, (4,)).astype(np.float32),
        "dw": rng.normal(0, 0.5, (3, 3, 4, 2)).astype(np.float32),
        "db": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "w3": rng.normal(0, 0.5, (3, 3, 8, 8)).astype(np.float32),
        "axes": np.array([1, 2], np.int32),
        "sum_axis": np.array(1, np.int32),
        "eps": np.array(1e-10, np.float32),
    }
    quant = {
        "w1": {"dtype": "uint8", "min": -1.5, "scale": 3.0 / 255},
        "dw": {"dtype": "float16", "original_dtype": "float32"},
    }
    nodes = [
        _node("x", "Placeholder", shape={"shape": {"dim": [{"size": s} for s in (-1, 9, 9, 3)]}}),
        *(_const(n) for n in w),
        _node(
            "conv1",
            "_FusedConv2D",
            ["x", "w1", "b1", "a1"],
            **_conv_attrs((2, 2), "SAME", ("BiasAdd", "Prelu"), 2),
        ),
        _node(
            "dwconv",
            "FusedDepthwiseConv2dNative",
            ["conv1", "dw", "db"],
            **_conv_attrs((1, 1), "SAME", ("BiasAdd", "Relu6"), 1),
        ),
        _node(
            "conv3",
            "Conv2D",
            ["dwconv", "w3"],
            **_conv_attrs((1, 1), "EXPLICIT", explicit=(0, 0, 1, 1, 1, 1, 0, 0)),
        ),
        _node("res", "Add", ["conv3", "dwconv"]),
        _node("abs", "Abs", ["res"]),
        _node("sub", "Sub", ["res", "abs"]),
        _node("pool", "Mean", ["sub", "axes"], keep_dims={"b": True}),
        _node("flat", "Squeeze", ["pool"], squeeze_dims=_ints(1, 2)),
        _node("sq", "Square", ["flat"]),
        _node("ss", "Sum", ["sq", "sum_axis"], keep_dims={"b": True}),
        _node("mx", "Maximum", ["ss", "eps"]),
        _node("rs", "Rsqrt", ["mx"]),
        _node("embeddings", "Mul", ["flat", "rs"]),
    ]
    nodes.insert(5, nodes.pop())  # the node list need not be in execution order
    path = _write_model(tmp_path_factory.mktemp("tfjs"), nodes, w, shards=2, quant=quant)
    return path, w, quant


def _reference(x, w, quant):
    q = quant["w1"]
    w1 = _quantize(w["w1"], q).astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
    dw = w["dw"].astype(np.float16).astype(np.float32)
    # SAME, 9 px, k 3, stride 2: out 5, total pad 2 -> (1, 1) (the odd case: next test)
    y = _np_conv(x, w1, 2, (1, 1, 1, 1)) + w["b1"]
    y = np.where(y < 0, y * w["a1"], y)
    d = np.clip(_np_conv(y, dw, 1, (1, 1, 1, 1), depthwise=True) + w["db"], 0, 6)
    r = _np_conv(d, w["w3"], 1, (1, 1, 1, 1)) + d
    s = (r - np.abs(r)).mean(axis=(1, 2))
    return s / np.sqrt(np.maximum((s**2).sum(1, keepdims=True), 1e-10))


def test_synthetic_graph_matches_numpy_reference(synthetic):
    path, w, quant = synthetic
    net = load_tfjs_graph(path, input_layout="NHWC")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 9, 9, 3)).astype(np.float32)
    got = net(torch.from_numpy(x)).detach().numpy()
    ref = _reference(x.astype(np.float64), w, quant)
    assert got.shape == (2, 8)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # NCHW input (the default layout) gives the same numbers
    y2 = load_tfjs_graph(path)(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(y2.detach().numpy(), got, atol=1e-6)


def test_same_padding_is_asymmetric_like_tensorflow(tmp_path):
    """8 px, kernel 3, stride 2: TF pads 0 before and 1 after (torch's padding=1 would not)."""
    w = {"k": np.random.default_rng(2).normal(size=(3, 3, 1, 1)).astype(np.float32)}
    nodes = [
        _node("x", "Placeholder"),
        _const("k"),
        _node("y", "Conv2D", ["x", "k"], **_conv_attrs((2, 2), "SAME")),
    ]
    net = load_tfjs_graph(_write_model(tmp_path, nodes, w), input_layout="NHWC")
    x = np.random.default_rng(3).normal(size=(1, 8, 8, 1)).astype(np.float32)
    ref = _np_conv(x, w["k"], 2, (0, 1, 0, 1))
    np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), ref, atol=1e-5)


def test_gradients_reach_the_input(synthetic):
    net = load_tfjs_graph(synthetic[0])
    x = torch.rand(1, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    net = net.double()
    assert torch.autograd.gradcheck(lambda t: net(t), (x,), eps=1e-6, atol=1e-4)


def test_read_weights_dequantizes_like_tfjs():
    q8 = np.array([0, 1, 255], np.uint8)
    q16 = np.array([0, 2, 65535], "<u2")
    f16 = np.array([0.5, -2.25], "<f2")
    i8 = np.array([3, 4], np.uint8)
    manifest = [
        {
            "paths": ["a", "b"],
            "weights": [
                {"name": "u8", "shape": [3], "dtype": "float32",
                 "quantization": {"dtype": "uint8", "min": -1.0, "scale": 0.5}},
                {"name": "u16", "shape": [3], "dtype": "float32",
                 "quantization": {"dtype": "uint16", "min": 0.0, "scale": 0.25}},
                {"name": "f16", "shape": [1, 2], "dtype": "float32",
                 "quantization": {"dtype": "float16", "original_dtype": "float32"}},
                {"name": "i", "shape": [2], "dtype": "int32",
                 "quantization": {"dtype": "uint8", "min": 0.2, "scale": 0.5}},
                {"name": "f", "shape": [], "dtype": "float32"},
            ],
        }
    ]  # fmt: skip
    data = q8.tobytes() + q16.tobytes() + f16.tobytes() + i8.tobytes()
    data += np.float32(7.5).tobytes()
    shards = {"a": data[:5], "b": data[5:]}
    out = read_weights(manifest, shards.__getitem__)
    np.testing.assert_allclose(out["u8"], [-1.0, -0.5, 126.5])
    np.testing.assert_allclose(out["u16"], [0.0, 0.5, 16383.75])
    np.testing.assert_allclose(out["f16"], [[0.5, -2.25]])
    assert out["i"].dtype == np.int32 and out["i"].tolist() == [2, 2]  # round(1.7), round(2.2)
    assert out["f"].shape == () and float(out["f"]) == 7.5
    with pytest.raises(ModelError, match="holds"):
        read_weights(manifest, lambda p: shards[p] + (b"\0" if p == "b" else b""))
    with pytest.raises(ModelError, match="needs bytes"):
        read_weights(manifest, lambda p: shards[p][:-1])


def test_unknown_op_is_named(tmp_path):
    nodes = [_node("x", "Placeholder"), _node("gelu/Erf", "Erf", ["x"])]
    with pytest.raises(ModelError, match=r"unsupported tfjs op 'Erf' \(node 'gelu/Erf'\)"):
        load_tfjs_graph(_write_model(tmp_path, nodes, {}))


def test_unknown_fused_activation_and_bad_num_args(tmp_path):
    w = {"k": np.ones((1, 1, 1, 1), np.float32), "b": np.zeros(1, np.float32)}
    for fused, num_args, match in [
        (("BiasAdd", "Gelu"), 1, "fused activation 'Gelu'"),
        (("BiasAdd", "Prelu"), 1, "need 2 extra argument"),
        (("FusedBatchNorm",), 4, "FusedBatchNorm"),
    ]:
        nodes = [
            _node("x", "Placeholder"),
            _const("k"),
            _const("b"),
            _node(
                "y", "_FusedConv2D", ["x", "k", "b"], **_conv_attrs(fused=fused, num_args=num_args)
            ),
        ]
        with pytest.raises(ModelError, match=match):
            load_tfjs_graph(_write_model(tmp_path, nodes, w))


_BIAS_RELU = ("BiasAdd", "Relu")


def test_repair_restores_a_fused_prelu(tmp_path):
    """The converter's broken pattern: Relu fused into the conv, PReLU reading its output."""
    w = {
        "k": np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2),
        "b": np.zeros(2, np.float32),
        "alpha_half": np.array([0.1, 0.2], np.float32),
    }
    nodes = [
        _node("x", "Placeholder"),
        *(_const(n) for n in w),
        _node("c", "_FusedConv2D", ["x", "k", "b"], **_conv_attrs(fused=_BIAS_RELU, num_args=1)),
        _node("c/Abs", "Abs", ["c"]),
        _node("c/sub", "Sub", ["c", "c/Abs"]),
        _node("c/mul", "Mul", ["c/sub", "alpha_half"]),
        _node("c/add", "Add", ["c", "c/mul"]),
    ]  # fmt: skip
    path = _write_model(tmp_path, nodes, w)
    x = torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]]]])  # (1, 1, 2, 2) NHWC
    broken = load_tfjs_graph(path, input_layout="NHWC")(x)
    assert torch.equal(broken, x.clamp(min=0))  # what tfjs computes: PReLU became ReLU
    fixed = load_tfjs_graph(path, input_layout="NHWC", repair_prelu=True)(x)
    expect = torch.where(x < 0, x * 2 * torch.tensor([0.1, 0.2]), x)
    torch.testing.assert_close(fixed, expect)
    model = json.loads(path.read_text())
    assert repair_prelu_fusion(model)[1] == 1
    assert repair_prelu_fusion(repair_prelu_fusion(model)[0])[1] == 0  # idempotent


# --- the shipped MobileFaceNet ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilefacenet():
    return load_tfjs_graph(MOBILEFACENET_DIR / "mobilefacenet.json", repair_prelu=True).eval()


def test_mobilefacenet_loads_and_returns_unit_embeddings(mobilefacenet):
    model = json.loads((MOBILEFACENET_DIR / "mobilefacenet.json").read_text())
    assert repair_prelu_fusion(model)[1] == 16  # the 16 depthwise PReLUs of MobileFaceNet
    assert mobilefacenet.input_shape == (-1, 112, 112, 3)
    with torch.no_grad():
        y = mobilefacenet(torch.rand(2, 3, 112, 112))
    assert y.shape == (2, 192)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(2))


def test_mobilefacenet_gradients_flow_to_the_input(mobilefacenet):
    x = torch.rand(1, 3, 112, 112, requires_grad=True)
    target = torch.randn(192)
    (mobilefacenet(x)[0] @ target).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_mobilefacenet_rejects_a_wrong_input_size(mobilefacenet):
    from facetrust.errors import InputError

    with pytest.raises(InputError, match="112"):
        mobilefacenet(torch.rand(1, 3, 100, 100))
