"""Memory layout of networks on the CPU: channels-last (NHWC).

oneDNN's CPU convolutions are faster on channels-last tensors than on the default NCHW ones. A
collated training batch is NCHW, so the trainer puts the CNN and each batch in this layout: a
training step of 128 crops of EfficientNet-Lite0 takes half the time in float32, and under a
third of it with bfloat16 autocast on a CPU that computes it natively (``optim.amp``;
``benchmarks/cnn_layout_speed.py``). Scoring needs no conversion: the scoring core's batch is
its uint8 NHWC crops permuted (``facetrust.models.preprocess.to_tensor``), channels-last in
memory already. Elsewhere (CUDA, MPS) nothing changes.
"""

from __future__ import annotations

from typing import TypeVar

import torch

__all__ = ["channels_last"]

T = TypeVar("T", torch.nn.Module, torch.Tensor)


def channels_last(x: T, device: str | torch.device) -> T:
    """``x`` (a module, or a batch of images) in channels-last layout when ``device`` is the
    CPU; unchanged elsewhere, and for tensors that are not 4-D. A module is converted in place
    (its 4-D weights), as ``Module.to`` does; anything else is a ``TypeError``."""
    if not isinstance(x, (torch.Tensor, torch.nn.Module)):
        raise TypeError(f"channels_last takes a torch module or tensor, not {type(x).__name__}")
    if torch.device(device).type != "cpu":
        return x
    if isinstance(x, torch.Tensor):
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
    return x.to(memory_format=torch.channels_last)
