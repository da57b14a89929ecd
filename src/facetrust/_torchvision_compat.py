"""Make ``torchvision`` (and so ``timm``) importable next to a CPU-only torch.

The torchvision 0.28.0 wheel on PyPI is built against CUDA torch; its C++ ops library does not
load with the CPU build of torch 2.13.0 that facetrust pins. torchvision's Python parts still
work, but importing it fails because it registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms``, which only the C++ library defines. When that library is missing we define
those two schemas with a plain-torch CPU kernel, so the import succeeds. facetrust itself does not
use torchvision's C++ ops (it has its own NMS in numpy).
"""

from __future__ import annotations

import torch

_LIB: torch.library.Library | None = None


def _nms_cpu(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.argsort(scores, descending=True)
    x1, y1, x2, y2 = dets.unbind(1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool)
    keep: list[int] = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        inter = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0) * (
            torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)
        ).clamp(min=0)
        suppressed |= inter / (area[i] + area - inter).clamp(min=1e-12) > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def _torchvision_ops_loaded() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def ensure_torchvision() -> None:
    """Import torchvision, defining the two missing op schemas first when needed. Idempotent."""
    global _LIB
    if _LIB is None and not _torchvision_ops_loaded():
        try:
            import torchvision.extension as ext  # loads the C++ library when it can
        except Exception:  # pragma: no cover - depends on the installed build
            ext = None
        if not (ext is not None and ext._has_ops()):
            _LIB = torch.library.Library("torchvision", "DEF")
            _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIB.impl("nms", _nms_cpu, "CPU")
    import torchvision  # noqa: F401
