"""Class-activation maps of the "fake" logit at one or several layers of a CNN.

``MultiLayerCAM(model, layers, method)`` hooks the named layers for the duration of one call
(hooks are removed on exit, also on error), runs one forward and one backward pass of the
"fake" logit (output column 0) and returns, per sample, the mean of the per-layer maps, each
upsampled (bicubic) to the crop side and scaled by its own maximum. Deep layers say *which* part
of the face the decision used but are coarse (6 x 6 for EfficientNet-Lite0 at 192 px); earlier
layers are finer (12 x 12, 24 x 24) and localise better; the mean keeps both.

Methods (per layer, ``A``: activations ``[C, h, w]``, ``g``: d logit / d A):

- ``gradcam`` (Selvaraju et al. 2017): ``relu(sum_c mean(g_c) A_c)``;
- ``gradcam++`` (Chattopadhyay et al. 2018): the channel weights are positive gradients
  weighted by the closed-form ``alpha`` of the paper;
- ``layercam`` (Jiang et al. 2021): ``relu(sum_c relu(g_c) * A_c)``, element-wise, which
  keeps the spatial detail of early layers where a channel mean of the gradient cancels out.

Maps are the same as pytorch-grad-cam's for one layer (a test checks it); computing them here
avoids importing that package (seconds of scikit-learn and matplotlib imports per run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["CAM_METHODS", "MultiLayerCAM", "finer_layers", "layer_maps"]

CamMethod = Literal["gradcam", "gradcam++", "layercam"]
#: Supported methods.
CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam")


def layer_maps(activations: torch.Tensor, grads: torch.Tensor, method: str) -> torch.Tensor:
    """One layer's maps ``[N, h, w]`` (>= 0) from its activations and gradients ``[N, C, h, w]``."""
    if activations.shape != grads.shape or activations.ndim != 4:
        raise ValueError(
            f"activations and gradients must be [N, C, h, w] of one shape, got "
            f"{tuple(activations.shape)} and {tuple(grads.shape)}"
        )
    a, g = activations, grads
    if method == "gradcam":
        weights = g.mean(dim=(2, 3), keepdim=True)
        cam = (weights * a).sum(dim=1)
    elif method == "gradcam++":
        g2, g3 = g.pow(2), g.pow(3)
        sum_a = a.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)  # eq. 19; the eps of pytorch-grad-cam
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        weights = (torch.relu(g) * alpha).sum(dim=(2, 3), keepdim=True)
        cam = (weights * a).sum(dim=1)
    elif method == "layercam":
        cam = (torch.relu(g) * a).sum(dim=1)
    else:
        raise ValueError(f"unknown CAM method {method!r}; use one of {CAM_METHODS}")
    return torch.relu(cam)


def _resize(maps: np.ndarray, side: int) -> np.ndarray:
    """``[N, h, w]`` -> ``[N, side, side]``: bicubic, then a Gaussian of half a cell (no
    bilinear creases, no one-cell speckle), >= 0."""
    import cv2

    if maps.shape[1:] == (side, side):
        return maps
    sigma = 0.5 * side / max(maps.shape[1:])
    out = []
    for m in maps:
        up = cv2.resize(m, (side, side), interpolation=cv2.INTER_CUBIC)
        if sigma >= 1.0:
            up = cv2.GaussianBlur(up, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        out.append(up)
    return np.maximum(np.stack(out), 0.0)


def _unit_max(maps: np.ndarray) -> np.ndarray:
    """Scale each map by its maximum (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


class MultiLayerCAM:
    """Class-activation maps of output column ``target`` at ``layers`` of ``model``.

    Args:
        model: a CNN returning ``[N, num_classes]`` logits; used in its current mode.
        layers: dotted names of layers with ``[N, C, h, w]`` outputs (``model.get_submodule``).
        method: ``"gradcam"``, ``"gradcam++"`` or ``"layercam"``, for every layer, or one per
            layer.
        target: the output column explained (0: the "fake" logit).

    ``cam(x, side)`` takes a preprocessed batch ``[N, 3, H, W]`` and returns
    ``(maps [N, side, side] float32 in [0, 1], logits [N])``.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        method: str | Sequence[str] = "gradcam",
        target: int = 0,
    ) -> None:
        if not layers:
            raise ValueError("name at least one layer")
        methods = (method,) * len(layers) if isinstance(method, str) else tuple(method)
        if len(methods) != len(layers):
            raise ValueError(f"{len(methods)} methods for {len(layers)} layers")
        for m in methods:
            if m not in CAM_METHODS:
                raise ValueError(f"unknown CAM method {m!r}; use one of {CAM_METHODS}")
        self.model = model
        self.layers = tuple(layers)
        self.modules = [model.get_submodule(name) for name in self.layers]
        self.methods = methods
        self.target = int(target)

    def __repr__(self) -> str:
        return f"MultiLayerCAM(layers={self.layers}, methods={self.methods})"

    def per_layer(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Raw maps per layer (``[N, h_i, w_i]``, before resizing and scaling) and the logits."""
        acts: dict[int, torch.Tensor] = {}

        def keep(i: int):
            def hook(_module, _inputs, output):
                if not isinstance(output, torch.Tensor) or output.ndim != 4:
                    raise ValueError(
                        f"layer {self.layers[i]!r} gives no [N, C, h, w] tensor to explain"
                    )
                acts[i] = output

            return hook

        handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(self.modules)]
        try:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)  # activations need a graph; weights do not
                logits = self.model(x)[:, self.target]
                missing = [self.layers[i] for i in range(len(self.modules)) if i not in acts]
                if missing:
                    raise ValueError(f"layer(s) {missing} did not run in the forward pass")
                order = list(range(len(self.modules)))
                grads = torch.autograd.grad(logits.sum(), [acts[i] for i in order])
        finally:
            for h in handles:
                h.remove()
        maps = [
            layer_maps(acts[i].detach().float(), g.detach().float(), self.methods[i])
            for i, g in zip(order, grads, strict=True)
        ]
        return maps, logits.detach()

    def __call__(self, x: torch.Tensor, side: int) -> tuple[np.ndarray, np.ndarray]:
        raw, logits = self.per_layer(x)
        total = np.zeros((x.shape[0], side, side), np.float32)
        for m in raw:
            m = np.nan_to_num(m.cpu().numpy().astype(np.float32), nan=0.0, posinf=0.0)
            total += _unit_max(_resize(m, side))
        total = _unit_max(total / len(raw))
        return np.clip(total, 0.0, 1.0).astype(np.float32), logits.float().cpu().numpy()


def finer_layers(model: nn.Module, cam_layer: str, input_size: int, extra: int = 2) -> list[str]:
    """``cam_layer`` plus up to ``extra`` earlier layers at successively finer resolutions.

    One forward pass of a small zero batch (at most 64 px: the layer structure, not the
    resolution, matters) records every module's output; for each resolution finer than
    ``cam_layer``'s (nearest first, at most a quarter of the input's) it keeps the outermost
    module (shortest dotted name) that finishes last at that resolution: for timm EfficientNets
    the stage ``blocks.N`` ending there. Returned coarse to fine; at most ``extra`` are added.
    """
    if extra <= 0:
        return [cam_layer]
    probe = min(int(input_size), 64)
    seen: list[tuple[str, int, int]] = []  # (name, depth, side) in completion order
    handles = []

    def record(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                seen.append((name, name.count("."), int(output.shape[-1])))

        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(record(name)))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        kw = {} if param is None else {"device": param.device, "dtype": param.dtype}
        with torch.no_grad():
            model(torch.zeros(1, 3, probe, probe, **kw))
    except ValueError:  # a model that reads one input size only (a ViT): its cam layer alone
        return [cam_layer]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    sides = {name: side for name, _, side in seen}
    if cam_layer not in sides:
        return [cam_layer]
    base = sides[cam_layer]
    finer = sorted({side for _, _, side in seen if side > base})
    # stop before the stem: a layer at more than a quarter of the input is edges, not evidence
    finer = [s for s in finer if s <= probe // 4][:extra]
    out = [cam_layer]
    for side in finer:
        at = [(depth, -pos, name) for pos, (name, depth, s) in enumerate(seen) if s == side]
        out.append(min(at)[2])
    return out
