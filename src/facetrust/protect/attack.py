"""PGD under an L-infinity budget, in [0, 1] pixel space, over an ensemble of encoders with EoT.

The attack pushes the embeddings of the cloaked face away from those of the original face:

    minimise  L(delta) = mean_e  E_{t ~ EoT} [ cos( e(t(x + m * delta)), e(x_ref) ) ]
    subject to  |delta|_inf <= eps,  x + m * delta in [0, 1]

where ``m`` is the feathered face mask (so the change is zero wherever ``m`` is zero and never
larger than ``eps``), ``e`` runs over the ensemble and ``t`` over
:class:`~facetrust.protect.eot.EoT` draws. Each step draws ``eot_samples`` fresh transforms,
evaluates them as one batch and so averages their gradients; the gradient is normalised by its
mean absolute value and accumulated with momentum (MI-FGSM, Dong et al. 2018, which transfers
better to unseen models), and ``delta`` moves by ``alpha_t * sign(g)``.

Targeted variant (``target_weight`` > 0, Fawkes-style): given a bank of other identities'
embeddings (``identities``, one ``(K, D)`` tensor per encoder, e.g. synthetic faces:
:func:`~facetrust.protect.encoders.identity_bank`), the bank identity least like the original
is chosen once per face and the loss becomes
``mean_e E_t [ cos(e(t(adv)), e(x_ref)) - target_weight * cos(e(t(adv)), goal_e) ]``: away from
the person and towards one other face, a direction shared by recognizers that the attack
never saw more often than "anywhere else".

Step-size schedule (cosine): ``alpha_t = a_min + (a_max - a_min) * (1 + cos(pi t / (T - 1))) / 2``
with ``a_max = 4 eps / T`` and ``a_min = 0.5 eps / T`` by default, i.e. large exploratory steps
first and fine ones at the end, with a total path of about ``2.25 eps`` (Madry et al. use a
constant ``2.5 eps / T``). The start is random, uniform in ``[-eps/2, eps/2]``.

With ``norm="l2"`` the budget is an L2 radius ``R`` on ``m * delta`` (given per call, e.g. from a
PSNR target: see :class:`~facetrust.protect.Protector`), with ``eps`` kept as an L-infinity cap:
the start is zero, each step moves ``delta`` by ``alpha_t`` along the L2-normalised momentum of
the masked gradient, ``alpha_t`` falls from ``0.3 R`` to ``0.05 R`` (cosine), and ``delta`` is
clipped to ``eps`` and ``[0, 1]`` and then scaled back into the ball. Unlike sign steps, which
spend the whole L-infinity box on every pixel, this puts the change where the encoders'
gradients are large, so the same PSNR buys more distance.

With ``norm="budget"`` the budget is perceptual (:mod:`~facetrust.protect.budget`): PGD optimises
a free tensor ``z``, the cloak is ``shape(z)`` (a :class:`~facetrust.protect.budget.CloakShape`:
JND-weighted, grey-level dominant, low frequencies removed), and after each step a
:class:`~facetrust.protect.budget.BudgetProjector` scales ``z`` back so that the face-region
SSIM and PSNR of ``x + mask * shape(z)`` keep their targets. Steps are L2-normalised momentum in
``z``, of length ``0.3 R`` falling to ``0.05 R`` (cosine), where ``R`` is the length of ``z``
that spends the whole budget along the first gradient.

Encoders are switched to eval mode with frozen weights during the attack and their previous
train/eval modes and ``requires_grad`` flags are restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facetrust.errors import InputError
from facetrust.protect.eot import EoT, EoTConfig, gaussian_blur

__all__ = ["PGD", "PGDConfig", "PGDResult", "frozen_eval", "l2_step_sizes", "step_sizes"]


@dataclass(frozen=True)
class PGDConfig:
    """PGD settings. ``eps`` and step sizes are in [0, 1] pixel units (8/255 = 8 levels)."""

    eps: float = 8 / 255
    steps: int = 40
    eot_samples: int = 1
    step_max: float | None = None  # default 4 eps / steps
    step_min: float | None = None  # default 0.5 eps / steps
    momentum: float = 1.0
    grad_sigma: float = 0.0  # Gaussian smoothing of the gradient, pixels (TI-FGSM); 0 = off
    random_start: bool = True
    # "linf": sign steps in the eps box; "l2": steps in an L2 ball (radius per call); "budget":
    # steps in a perceptual budget (shape and projector per call)
    norm: str = "linf"
    # weight of the pull towards another identity's embedding (0: only away from the original;
    # needs an identity bank, see PGD)
    target_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.eps <= 64 / 255:
            raise InputError(f"eps must be in (0, 64/255], got {self.eps:.4g}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise InputError(f"steps must be a non-negative integer, got {self.steps!r}")
        if self.steps > 10_000:
            raise InputError(f"steps must be at most 10000, got {self.steps}")
        if not isinstance(self.eot_samples, int) or not 1 <= self.eot_samples <= 64:
            raise InputError(f"eot_samples must be an integer in [1, 64], got {self.eot_samples}")
        if not 0.0 <= self.grad_sigma <= 8.0:
            raise InputError(f"grad_sigma must be in [0, 8] pixels, got {self.grad_sigma}")
        if not 0.0 <= self.momentum <= 1.0:
            raise InputError(f"momentum must be in [0, 1], got {self.momentum}")
        if not 0.0 <= self.target_weight <= 4.0:
            raise InputError(f"target_weight must be in [0, 4], got {self.target_weight}")
        if self.norm not in ("linf", "l2", "budget"):
            raise InputError(f"norm must be 'linf', 'l2' or 'budget', got {self.norm!r}")
        for name in ("step_max", "step_min"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v <= self.eps:
                raise InputError(f"{name} must be in (0, eps], got {v}")

    def to_dict(self) -> dict:
        return asdict(self)


def _cosine(hi: float, lo: float, steps: int) -> list[float]:
    """``steps`` values falling from ``hi`` to ``lo`` along half a cosine (``[hi]`` for one)."""
    if steps == 1:
        return [hi]
    return [lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * t / (steps - 1))) for t in range(steps)]


def step_sizes(config: PGDConfig) -> list[float]:
    """The cosine step-size schedule, one value per step."""
    t_total = config.steps
    if t_total == 0:
        return []
    eps = config.eps
    a_max = config.step_max if config.step_max is not None else min(eps, 4 * eps / t_total)
    a_min = config.step_min if config.step_min is not None else 0.5 * eps / t_total
    return _cosine(a_max, min(a_min, a_max), t_total)


def l2_step_sizes(config: PGDConfig, radius: float) -> list[float]:
    """The L2 attack's step lengths: cosine from ``0.3 radius`` down to ``0.05 radius``."""
    return _cosine(0.3 * radius, 0.05 * radius, config.steps) if config.steps else []


@contextlib.contextmanager
def frozen_eval(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode and frozen weights inside; each module's modes and flags restored on exit."""
    saved_modes = [[(m, m.training) for m in mod.modules()] for mod in modules]
    saved_grads = [[(p, p.requires_grad) for p in mod.parameters()] for mod in modules]
    try:
        for mod in modules:
            mod.eval()
            for p in mod.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for modes in saved_modes:
            for m, training in modes:
                m.training = training
        for grads in saved_grads:
            for p, flag in grads:
                p.requires_grad_(flag)


@dataclass
class PGDResult:
    """``delta``: ``(1, 3, S, S)`` with ``|delta| <= eps`` (apply as ``x + mask * delta``);
    ``similarity``: mean cosine similarity per step (what PGD minimised)."""

    delta: torch.Tensor
    similarity: list[float] = field(default_factory=list)


class PGD:
    """Configured once, called on face crops.

    Args:
        encoders: the surrogate ensemble (each maps [0, 1] pixels to ``(B, D)``).
        config: budget and schedule.
        eot: the transform distribution (``EoTConfig.none()`` for plain PGD).
    """

    def __init__(
        self,
        encoders: Sequence[nn.Module],
        config: PGDConfig | None = None,
        eot: EoT | EoTConfig | None = None,
        identities: Sequence[torch.Tensor | None] | None = None,
    ) -> None:
        if not encoders:
            raise InputError("PGD needs at least one encoder")
        self.encoders = list(encoders)
        self.config = config or PGDConfig()
        self.eot = eot if isinstance(eot, EoT) else EoT(eot)
        bank = list(identities) if identities is not None else [None] * len(self.encoders)
        if len(bank) != len(self.encoders):
            raise InputError(
                f"identities needs one entry per encoder ({len(self.encoders)}), got {len(bank)}"
            )
        sizes = {int(b.shape[0]) for b in bank if b is not None}
        if len(sizes) > 1 or any(b is not None and b.ndim != 2 for b in bank):
            raise InputError("identity banks must be (K, D) tensors with one K for every encoder")
        if self.config.target_weight > 0 and not sizes:
            raise InputError("target_weight > 0 needs an identity bank for at least one encoder")
        self.identities = [None if b is None else F.normalize(b.float(), dim=-1) for b in bank]

    def __repr__(self) -> str:
        names = [getattr(e, "name", type(e).__name__) for e in self.encoders]
        return f"PGD(encoders={names}, config={self.config}, eot={self.eot.config})"

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised embeddings of ``x`` in every encoder."""
        with frozen_eval(self.encoders):
            return [F.normalize(e(x), dim=-1) for e in self.encoders]

    def choose_identity(self, refs: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """The bank identity least like the original (lowest cosine to ``refs``, averaged over the
        encoders that have a bank), as one ``(1, D)`` goal per encoder (``None`` without a bank);
        all ``None`` when ``target_weight`` is 0."""
        if self.config.target_weight == 0:
            return [None] * len(self.encoders)
        pairs = [(b, r) for b, r in zip(self.identities, refs, strict=True) if b is not None]
        sims = torch.stack([b.to(r) @ r[0] for b, r in pairs]).mean(0)
        k = int(sims.argmin())
        banks = zip(self.identities, refs, strict=True)
        return [None if b is None else b[k : k + 1].to(r) for b, r in banks]

    def __call__(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        reference: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
        radius: float | None = None,
        shape: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        projector: Any = None,
    ) -> PGDResult:
        """Attack one crop.

        Args:
            x: ``(1, 3, S, S)`` start image in [0, 1] (e.g. the warped face crop).
            mask: ``(1, 1, S, S)`` feathered mask in [0, 1].
            reference: ``(1, 3, S, S)`` image whose embeddings the cloak moves away from
                (the original crop); ``x`` when omitted.
            generator: CPU ``torch.Generator`` for the random start and the EoT draws.
            callback: called as ``callback(step, steps)`` after each step (progress).
            radius: the L2 budget of ``mask * delta`` (pixels in [0, 1]); needed, and only
                used, when ``config.norm == "l2"``.
            shape, projector: with ``config.norm == "budget"``, the cloak's shape
                (``shape(z, jnd)``, e.g. :class:`~facetrust.protect.budget.CloakShape`, whose
                ``weights(reference)`` gives ``jnd``) and the
                :class:`~facetrust.protect.budget.BudgetProjector` that scales it onto the
                budget.
        """
        if x.ndim != 4 or x.shape[:2] != (1, 3):
            raise InputError(f"PGD needs x of shape (1, 3, S, S), got {tuple(x.shape)}")
        if mask.shape != (1, 1, *x.shape[-2:]):
            raise InputError(f"mask must be (1, 1, H, W) like x, got {tuple(mask.shape)}")
        cfg = self.config
        if cfg.norm == "l2" and (radius is None or not math.isfinite(radius) or radius < 0):
            raise InputError(f"an L2 attack needs a finite radius >= 0, got {radius!r}")
        if cfg.norm == "budget" and (shape is None or projector is None):
            raise InputError("a budget attack needs a cloak shape and a budget projector")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        x = x.detach().float()
        mask = mask.detach().float().clamp(0, 1)
        ref = (x if reference is None else reference).detach().float()
        targets = self.embed(ref)
        goals = self.choose_identity(targets)
        if cfg.norm == "budget":
            return self._budget_attack(x, mask, targets, goals, g, callback, shape, projector, ref)
        if cfg.random_start and cfg.norm == "linf":
            delta = (torch.rand(x.shape, generator=g) - 0.5).to(x.device) * cfg.eps
        else:
            delta = torch.zeros_like(x)
        momentum = torch.zeros_like(x)
        history: list[float] = []
        with frozen_eval(self.encoders):
            schedule = step_sizes(cfg) if cfg.norm == "linf" else l2_step_sizes(cfg, radius)
            for i, alpha in enumerate(schedule):
                delta.requires_grad_(True)
                adv = (x + mask * delta).clamp(0, 1)
                sim = self._loss(adv, targets, goals, g)
                (grad,) = torch.autograd.grad(sim, delta)
                history.append(float(sim.detach()))
                with torch.no_grad():
                    if cfg.grad_sigma > 0:
                        grad = gaussian_blur(grad, cfg.grad_sigma)
                    if cfg.norm == "linf":
                        grad = grad / grad.abs().mean().clamp_min(1e-12)
                        momentum = cfg.momentum * momentum + grad
                        step = momentum.sign()
                    else:
                        grad = grad * mask
                        grad = grad / grad.norm().clamp_min(1e-12)
                        momentum = cfg.momentum * momentum + grad
                        step = momentum / momentum.norm().clamp_min(1e-12)
                    delta = (delta - alpha * step).clamp(-cfg.eps, cfg.eps)
                    # keep x + delta inside [0, 1] where the mask is full
                    delta = (x + delta).clamp(0, 1) - x
                    if cfg.norm == "l2":  # scaling towards 0 keeps the box and [0, 1]
                        n = float((mask * delta).norm())
                        if n > radius:
                            delta = delta * (radius / n)
                if callback is not None:
                    callback(i + 1, len(schedule))
        return PGDResult(delta.detach(), history)

    def _loss(
        self,
        adv: torch.Tensor,
        targets: list[torch.Tensor],
        goals: list[torch.Tensor | None],
        g: torch.Generator,
    ) -> torch.Tensor:
        """Mean over encoders and EoT draws of ``cos(e(t(adv)), original)``, minus
        ``target_weight * cos(e(t(adv)), goal)`` where the encoder has a goal identity."""
        draws = self.eot.sample_many(self.config.eot_samples, g)
        batch = torch.cat([self.eot.apply(adv, t) for t in draws])
        w = self.config.target_weight
        terms = []
        for e, t, goal in zip(self.encoders, targets, goals, strict=True):
            emb = e(batch)
            term = F.cosine_similarity(emb, t, dim=-1).mean()
            if goal is not None and w > 0:
                term = term - w * F.cosine_similarity(emb, goal, dim=-1).mean()
            terms.append(term)
        return torch.stack(terms).mean()

    def _budget_attack(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        targets: list[torch.Tensor],
        goals: list[torch.Tensor | None],
        g: torch.Generator,
        callback: Callable[[int, int], None] | None,
        shape: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        projector: Any,
        reference: torch.Tensor,
    ) -> PGDResult:
        """PGD in the perceptual budget (``norm="budget"``; see the module docstring)."""
        cfg = self.config
        jnd = shape.weights(reference) if hasattr(shape, "weights") else torch.ones_like(mask)

        def cloak(z: torch.Tensor) -> torch.Tensor:
            d = shape(z, jnd).clamp(-cfg.eps, cfg.eps)
            return (x + d).clamp(0, 1) - x

        z = torch.zeros_like(x)
        momentum = torch.zeros_like(x)
        history: list[float] = []
        radius = None
        schedule: list[float] = []
        with frozen_eval(self.encoders):
            for i in range(cfg.steps):
                z.requires_grad_(True)
                adv = (x + mask * cloak(z)).clamp(0, 1)
                sim = self._loss(adv, targets, goals, g)
                (grad,) = torch.autograd.grad(sim, z)
                history.append(float(sim.detach()))
                with torch.no_grad():
                    z = z.detach()
                    grad = grad / grad.norm().clamp_min(1e-12)
                    if radius is None:  # the length of z that spends the budget along -grad
                        radius = projector.scale(mask * shape(-grad, jnd))
                        schedule = l2_step_sizes(cfg, radius)
                    momentum = cfg.momentum * momentum + grad
                    step = momentum / momentum.norm().clamp_min(1e-12)
                    z = z - schedule[i] * step
                    s = projector.scale(mask * cloak(z))
                    if s < 1.0:
                        z = z * s
                if callback is not None:
                    callback(i + 1, cfg.steps)
        with torch.no_grad():
            return PGDResult(cloak(z).detach(), history)
