"""Training losses: each a function plus a thin ``nn.Module``, with shape checks at entry.

Binary heads give one logit per face (``[B]`` or ``[B, 1]``, fake = positive); two-logit heads
give ``[B, C]``. Every loss returns a scalar (mean over the batch). Shape and dtype mistakes
raise ``ValueError`` naming the argument and the shapes.

- ``bce_loss``: binary cross-entropy with logits, optional label smoothing and ``pos_weight``.
- ``ce_loss``: cross-entropy for ``[B, C]`` logits and ``[B]`` class indices.
- ``kl_consistency``: symmetric KL between the predictions for two augmented views.
- ``kl_distillation``: ``KL(teacher || student)`` at a temperature, times ``T**2``.
- ``supcon_loss``: supervised contrastive loss (Khosla et al., NeurIPS 2020, "L_out").
- ``CombinedLoss``: a weighted sum of the above, returning the parts too.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BCELoss",
    "CELoss",
    "CombinedLoss",
    "KLConsistency",
    "KLDistillation",
    "SupConLoss",
    "bce_loss",
    "ce_loss",
    "kl_consistency",
    "kl_distillation",
    "supcon_loss",
]


# ----------------------------------------------------------------------------- checks


def _tensor(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _binary_logits(name: str, logits: object) -> Tensor:
    """``[B]`` or ``[B, 1]`` floating logits as ``[B]``."""
    x = _tensor(name, logits)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}")
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} must be [B] or [B, 1], got {list(x.shape)}")
    return x


def _class_logits(name: str, logits: object) -> Tensor:
    x = _tensor(name, logits)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}")
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must be [B, C] with C >= 2, got {list(x.shape)}")
    return x


def _log_probs(name: str, logits: object) -> Tensor:
    """Log-probabilities ``[B, C]``: a binary logit ``z`` is the 2-class pair ``(0, z)``."""
    x = _tensor(name, logits)
    if x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1):
        z = _binary_logits(name, x)
        return torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)
    return F.log_softmax(_class_logits(name, x), dim=1)


def _same_shape(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} {list(a.shape)} and {b_name} {list(b.shape)} differ in shape")


# ----------------------------------------------------------------------------- functions


def bce_loss(
    logits: Tensor,
    targets: Tensor,
    label_smoothing: float = 0.0,
    pos_weight: float | Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy with logits, mean over the batch.

    Args:
        logits: ``[B]`` or ``[B, 1]``.
        targets: ``[B]`` (or ``[B, 1]``) in [0, 1]; cast to the logits' dtype.
        label_smoothing: ``eps`` in [0, 1): targets become ``t * (1 - eps) + eps / 2``.
        pos_weight: weight of the positive (fake) term, as in ``BCEWithLogitsLoss``.
    """
    z = _binary_logits("logits", logits)
    t = _tensor("targets", targets)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != z.shape:
        raise ValueError(f"targets must be [B] = {list(z.shape)}, got {list(targets.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    t = t.to(z.dtype)
    if label_smoothing:
        t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    pw = None
    if pos_weight is not None:
        pw = torch.as_tensor(pos_weight, dtype=z.dtype, device=z.device)
    return F.binary_cross_entropy_with_logits(z, t, pos_weight=pw)


def ce_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy for ``[B, C]`` logits and ``[B]`` integer class targets, batch mean."""
    x = _class_logits("logits", logits)
    t = _tensor("targets", targets)
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"targets must be [B] = [{x.shape[0]}], got {list(t.shape)}")
    if t.is_floating_point():
        raise ValueError(f"targets must be class indices (integer), got {t.dtype}")
    return F.cross_entropy(x, t.long(), label_smoothing=label_smoothing)


def kl_consistency(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Symmetric KL between the predictions for two views, batch mean.

    ``0.5 * (KL(p_a || p_b) + KL(p_b || p_a))`` with Bernoulli distributions for ``[B]`` /
    ``[B, 1]`` logits and categorical ones for ``[B, C]``. Both views get gradients (neither
    is detached). 0 exactly when the views agree.
    """
    _tensor("logits_a", logits_a)
    _tensor("logits_b", logits_b)
    _same_shape("logits_a", logits_a, "logits_b", logits_b)
    la, lb = _log_probs("logits_a", logits_a), _log_probs("logits_b", logits_b)
    # KL(a||b) + KL(b||a) = sum (p_a - p_b) (log p_a - log p_b)
    return 0.5 * ((la.exp() - lb.exp()) * (la - lb)).sum(dim=1).mean()


def kl_distillation(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0
) -> Tensor:
    """Knowledge distillation (Hinton et al. 2015): ``KL(teacher_T || student_T) * T**2``.

    Both softened by ``temperature``; the teacher is detached. Binary ``[B]`` logits are
    treated as Bernoulli distributions, ``[B, C]`` as categorical. Batch mean.
    """
    _tensor("student_logits", student_logits)
    _tensor("teacher_logits", teacher_logits)
    _same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ls = _log_probs("student_logits", student_logits / temperature)
    lt = _log_probs("teacher_logits", teacher_logits.detach() / temperature)
    return (lt.exp() * (lt - ls)).sum(dim=1).mean() * temperature**2


def supcon_loss(features: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, the ``L_out`` form).

    For each anchor ``i`` with positives ``P(i)`` (other samples with its label):
    ``-1/|P(i)| * sum_p log(exp(z_i.z_p / T) / sum_{a != i} exp(z_i.z_a / T))``, averaged
    over the anchors that have a positive (0 if none has). Features are L2-normalised here.

    Args:
        features: ``[B, D]``, or ``[B, V, D]`` for ``V`` views of each sample (each view is an
            anchor; views of one sample are positives of each other).
        labels: ``[B]`` integer (or integral float) labels.
    """
    f = _tensor("features", features)
    y = _tensor("labels", labels)
    if not f.is_floating_point():
        raise ValueError(f"features must be floating point, got {f.dtype}")
    if f.ndim == 3:
        b, v, d = f.shape
        f = f.reshape(b * v, d)
        if y.ndim != 1 or y.shape[0] != b:
            raise ValueError(f"labels must be [B] = [{b}], got {list(y.shape)}")
        y = y.repeat_interleave(v)
    elif f.ndim != 2:
        raise ValueError(f"features must be [B, D] or [B, V, D], got {list(f.shape)}")
    elif y.ndim != 1 or y.shape[0] != f.shape[0]:
        raise ValueError(f"labels must be [B] = [{f.shape[0]}], got {list(y.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = f.shape[0]
    z = F.normalize(f, dim=1)
    sim = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=f.device)
    sim = sim.masked_fill(eye, float("-inf"))  # the anchor is not in its own denominator
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    if not bool(has.any()):
        return f.sum() * 0.0  # keeps the graph
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(dim=1)[has] / n_pos[has]
    return per_anchor.mean()


# ----------------------------------------------------------------------------- modules


class BCELoss(nn.Module):
    """``bce_loss`` as a module."""

    def __init__(self, label_smoothing: float = 0.0, pos_weight: float | None = None) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return bce_loss(logits, targets, self.label_smoothing, self.pos_weight)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, pos_weight={self.pos_weight}"


class CELoss(nn.Module):
    """``ce_loss`` as a module."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return ce_loss(logits, targets, self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


class KLConsistency(nn.Module):
    """``kl_consistency`` as a module."""

    def forward(self, logits_a: Tensor, logits_b: Tensor) -> Tensor:
        return kl_consistency(logits_a, logits_b)


class KLDistillation(nn.Module):
    """``kl_distillation`` as a module."""

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return kl_distillation(student_logits, teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class SupConLoss(nn.Module):
    """``supcon_loss`` as a module."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        return supcon_loss(features, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


TERMS = ("bce", "ce", "kl", "distill", "supcon")


class CombinedLoss(nn.Module):
    """A weighted sum of losses; ``forward`` returns ``(total, parts)``.

    Terms (keys of ``weights``; a weight of 0 disables a term):

    - ``bce``: ``bce_loss(logits, targets)`` (binary logits, float targets);
    - ``ce``: ``ce_loss(logits, targets)`` (``[B, C]`` logits, integer targets);
    - ``kl``: ``kl_consistency(logits, logits_b)``; needs ``logits_b`` (a second view);
    - ``distill``: ``kl_distillation(logits, teacher_logits, distill_temperature)``; needs
      ``teacher_logits``, or a ``teacher`` module and ``inputs``;
    - ``supcon``: ``supcon_loss(features, targets, supcon_temperature)``; needs ``features``.

    The classification terms use the first view's ``logits`` only. ``parts`` holds each
    enabled term's unweighted value, detached. A weighted term whose input is missing raises
    ``ValueError``.

    Args:
        weights: e.g. ``{"bce": 1, "kl": 0.5, "supcon": 0.1}``.
        teacher: an optional frozen model for ``distill``: it is set to eval mode, its
            parameters stop requiring grad, and it stays in eval mode under ``.train()``.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        *,
        label_smoothing: float = 0.0,
        pos_weight: float | None = None,
        distill_temperature: float = 2.0,
        supcon_temperature: float = 0.1,
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown loss terms {unknown}: use {', '.join(TERMS)}")
        if any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {dict(weights)}")
        self.weights = {k: float(w) for k, w in weights.items() if float(w) > 0}
        if not self.weights:
            raise ValueError("at least one loss term needs a weight > 0")
        if "bce" in self.weights and "ce" in self.weights:
            raise ValueError("use either 'bce' (one logit) or 'ce' (C logits), not both")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if distill_temperature <= 0 or supcon_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        self.label_smoothing = label_smoothing
        self.pos_weight = pos_weight
        self.distill_temperature = distill_temperature
        self.supcon_temperature = supcon_temperature
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)

    def train(self, mode: bool = True) -> CombinedLoss:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        *,
        logits_b: Tensor | None = None,
        features: Tensor | None = None,
        teacher_logits: Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted total and the unweighted parts.

        Args:
            logits: the model's logits for the batch (first view).
            targets: ``[B]`` labels (1 = fake); cast to float for ``bce``, long for ``ce``
                and ``supcon``.
            logits_b: logits for a second augmented view (``kl``).
            features: ``[B, D]`` (or ``[B, V, D]``) embeddings (``supcon``).
            teacher_logits: the teacher's logits (``distill``).
            inputs: the batch, to run ``teacher`` on when ``teacher_logits`` is not given.
        """
        parts: dict[str, Tensor] = {}
        w = self.weights
        if "bce" in w:
            parts["bce"] = bce_loss(
                logits, _tensor("targets", targets).float(), self.label_smoothing, self.pos_weight
            )
        if "ce" in w:
            parts["ce"] = ce_loss(logits, _tensor("targets", targets).long(), self.label_smoothing)
        if "kl" in w:
            if logits_b is None:
                raise ValueError("loss term 'kl' needs logits_b (logits of a second view)")
            parts["kl"] = kl_consistency(logits, logits_b)
        if "distill" in w:
            if teacher_logits is None:
                if self.teacher is None or inputs is None:
                    raise ValueError(
                        "loss term 'distill' needs teacher_logits, or a teacher and inputs"
                    )
                with torch.no_grad():
                    teacher_logits = self.teacher(inputs)
            parts["distill"] = kl_distillation(logits, teacher_logits, self.distill_temperature)
        if "supcon" in w:
            if features is None:
                raise ValueError("loss term 'supcon' needs features (embeddings [B, D])")
            parts["supcon"] = supcon_loss(
                features, _tensor("targets", targets).long(), self.supcon_temperature
            )
        total = sum(w[k] * v for k, v in parts.items())
        assert isinstance(total, Tensor)
        return total, {k: v.detach() for k, v in parts.items()}

    def extra_repr(self) -> str:
        return (
            f"weights={self.weights}, label_smoothing={self.label_smoothing}, "
            f"distill_temperature={self.distill_temperature}, "
            f"supcon_temperature={self.supcon_temperature}"
        )
