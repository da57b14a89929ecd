"""A small numpy interpreter for the CLIP INT8 ONNX graph, to check the torch rebuild.

onnxruntime is not a facetrust dependency, so :mod:`facetrust.models.clip` cannot be compared
with the runtime the file was made for. This interpreter executes the graph node by node with
numpy (the 26 operator types it contains), in one of two modes:

- ``int8``: faithful ONNX semantics, including ``DynamicQuantizeLinear`` (uint8, per tensor,
  round half to even) and exact integer ``MatMulInteger``: what onnxruntime computes, up to
  float32 rounding order;
- ``float``: ``DynamicQuantizeLinear`` passes values through unchanged (scale 1, zero point 0),
  so every ``MatMulInteger`` multiplies float activations by the dequantised weights: the same
  function the torch rebuild implements, derived here from the graph rather than from
  hand-written layers. Agreement in this mode checks the rebuild's structure (layer order,
  attention layout, quick-GELU, layer norms, projection) and its weight mapping.

Run ``python tests/models/onnx_ref.py`` for a report on a few inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["run_graph"]

_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64, 2: np.uint8}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def run_graph(x: np.ndarray, mode: str = "int8", path: Path | None = None, model=None) -> dict:
    """Execute the CLIP ONNX graph on ``x`` ``(B, 3, 224, 224)`` float32; returns all outputs."""
    import onnx
    from onnx import numpy_helper

    from facetrust.models.clip import clip_onnx_path

    if mode not in ("int8", "float"):
        raise ValueError("mode must be 'int8' or 'float'")
    model = model if model is not None else onnx.load(str(path or clip_onnx_path()))
    g = model.graph
    env: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    env[g.input[0].name] = np.asarray(x, np.float32)
    for node in g.node:
        a = _attrs(node)
        ins = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            out = [numpy_helper.to_array(a["value"])]
        elif op == "Shape":
            out = [np.array(ins[0].shape, np.int64)]
        elif op == "Cast":
            out = [ins[0].astype(_DTYPES[a["to"]])]
        elif op == "Gather":
            out = [np.take(ins[0], ins[1], axis=a.get("axis", 0))]
        elif op == "Unsqueeze":
            out = [np.expand_dims(ins[0], tuple(int(v) for v in ins[1]))]
        elif op == "Concat":
            out = [np.concatenate([np.atleast_1d(v) for v in ins], axis=a["axis"])]
        elif op == "Slice":
            data, starts, ends = ins[0], ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 else np.arange(len(starts))
            steps = ins[4] if len(ins) > 4 else np.ones(len(starts), np.int64)
            sl = [slice(None)] * data.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
                sl[int(ax)] = slice(int(s), int(min(e, np.iinfo(np.int64).max)), int(st))
            out = [data[tuple(sl)]]
        elif op == "Reshape":
            shape = [int(d) for d in ins[1]]
            shape = [ins[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
            out = [ins[0].reshape(shape)]
        elif op == "ConstantOfShape":
            v = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            out = [np.full(tuple(int(d) for d in ins[0]), v.reshape(-1)[0], dtype=v.dtype)]
        elif op == "Transpose":
            out = [np.transpose(ins[0], a["perm"])]
        elif op == "Expand":
            shape = np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1]))
            out = [np.broadcast_to(ins[0], shape).copy()]
        elif op == "Equal":
            out = [np.equal(ins[0], ins[1])]
        elif op == "Where":
            out = [np.where(ins[0], ins[1], ins[2])]
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(op)
            if op == "Div":
                f = np.divide if ins[0].dtype.kind == "f" else np.floor_divide
            if op == "Pow":
                f = np.power
            out = [f(ins[0], ins[1]).astype(ins[0].dtype)]
        elif op == "Sqrt":
            out = [np.sqrt(ins[0])]
        elif op == "Sigmoid":
            out = [(1.0 / (1.0 + np.exp(-ins[0]))).astype(ins[0].dtype)]
        elif op == "Softmax":
            z = ins[0] - ins[0].max(axis=a.get("axis", -1), keepdims=True)
            e = np.exp(z)
            out = [(e / e.sum(axis=a.get("axis", -1), keepdims=True)).astype(ins[0].dtype)]
        elif op == "ReduceMean":
            out = [ins[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))]
        elif op == "MatMul":
            out = [np.matmul(ins[0], ins[1])]
        elif op == "Conv":
            w = ins[1]
            k = tuple(a["kernel_shape"])
            if tuple(a.get("strides", (1, 1))) != k or any(a.get("pads", (0, 0, 0, 0))):
                raise NotImplementedError("only patchifying convolutions are supported")
            b, c, hh, ww = ins[0].shape
            p = ins[0].reshape(b, c, hh // k[0], k[0], ww // k[1], k[1])
            y = np.einsum("bcyhxw,ochw->boyx", p, w, optimize=True)
            out = [y + ins[2].reshape(1, -1, 1, 1) if len(ins) > 2 and ins[2] is not None else y]
        elif op == "DynamicQuantizeLinear":
            v = ins[0].astype(np.float32)
            if mode == "float":
                out = [v, np.float32(1.0), np.uint8(0)]
            else:
                lo, hi = min(0.0, float(v.min())), max(0.0, float(v.max()))
                scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
                zp = np.uint8(np.clip(np.rint(-lo / scale), 0, 255))
                q = np.clip(np.rint(v / scale) + zp, 0, 255).astype(np.uint8)
                out = [q, scale, zp]
        elif op == "MatMulInteger":
            a0 = ins[0].astype(np.float64) - np.float64(ins[2] if ins[2] is not None else 0)
            bzp = ins[3] if len(ins) > 3 and ins[3] is not None else 0
            b0 = ins[1].astype(np.float64) - np.asarray(bzp, np.float64)
            y = np.matmul(a0, b0)
            out = [y if mode == "float" else y.astype(np.int32)]
        else:
            raise NotImplementedError(f"ONNX op {op} is not supported by this interpreter")
        for name, val in zip(node.output, out, strict=False):
            env[name] = np.asarray(val)
    return {o.name: env[o.name] for o in g.output}


def main() -> None:  # pragma: no cover - a verification report, run by hand
    import onnx
    import torch

    from facetrust.models.clip import CLIP_MEAN, CLIP_STD, clip_onnx_path, load_clip_vit_b16

    model = onnx.load(str(clip_onnx_path()))
    tower = load_clip_vit_b16()
    rng = np.random.default_rng(0)
    mean = np.array(CLIP_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(CLIP_STD, np.float32).reshape(1, 3, 1, 1)
    inputs = {
        "zeros": np.zeros((1, 3, 224, 224), np.float32),
        "uniform": ((rng.random((1, 3, 224, 224), np.float32) - mean) / std).astype(np.float32),
    }
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
        img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear").numpy()
        inputs["astronaut"] = ((img - mean) / std).astype(np.float32)
    except ImportError:
        pass

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        u, v = u.ravel().astype(np.float64), v.ravel().astype(np.float64)
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    for name, x in inputs.items():
        with torch.no_grad():
            t = tower(torch.from_numpy(x)).numpy()
        ref_f = run_graph(x, "float", model=model)["image_embeds"]
        ref_q = run_graph(x, "int8", model=model)["image_embeds"]
        print(
            f"{name:10s} torch vs graph(float): max|diff| {np.abs(t - ref_f).max():.2e} "
            f"(|emb| {np.abs(ref_f).max():.2f}), cos {cos(t, ref_f):.6f}; "
            f"torch vs graph(int8): cos {cos(t, ref_q):.4f}"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
