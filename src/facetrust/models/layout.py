"""Memory layout of networks on the CPU: channels-last (NHWC).

oneDNN's CPU convolutions are faster on channels-last tensors than on the default NCHW ones:
on this project's 2-core CPU the EfficientNet-Lite0 of facetrust-fast scores a face ~10 %
faster (the same logit to float32 rounding) and a training step of 128 crops takes about half
the time (``benchmarks/cnn_layout_speed.py``). Every CNN that facetrust scores or trains on the
CPU is put in this layout, with its inputs; elsewhere (CUDA, MPS) nothing changes.
"""

from __future__ import annotations

from typing import TypeVar

import torch

__all__ = ["channels_last"]

T = TypeVar("T", torch.nn.Module, torch.Tensor)


def channels_last(x: T, device: str | torch.device) -> T:
    """``x`` (a module, or a batch of images) in channels-last layout when ``device`` is the
    CPU; unchanged elsewhere, and for tensors that are not 4-D (anything else is returned as
    it is). A module is converted in place (its 4-D weights), as ``Module.to`` does."""
    if torch.device(device).type != "cpu":
        return x
    if isinstance(x, torch.Tensor):
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
    if isinstance(x, torch.nn.Module):
        return x.to(memory_format=torch.channels_last)
    return x
