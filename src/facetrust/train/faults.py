"""Fault injection for robustness research: break training on purpose, in known ways.

Configure once (``FaultConfig``), let the training loop call the hooks (the ``Trainer`` does so
through :class:`~facetrust.train.callbacks.FaultCallback`, set from the config's ``faults:``)::

    faults = FaultInjector(FaultConfig(label_noise=0.2, zero_grad_every_n=5))
    loss_fn = faults.loss_fn(loss_fn)
    for step, (x, y) in enumerate(loader, 1):
        x, y = faults.corrupt_batch(x, y, step)
        loss = loss_fn(model(x), y); loss.backward()
        faults.after_backward(model, step)
        optimizer.step(); optimizer.zero_grad()
        faults.on_step_end(model, step)
    faults.on_epoch_end(model, epoch)

Modes (all off by default; all off = every hook is the identity):

- ``label_noise=p``: each label is flipped (``y -> 1 - y``; binary labels, 0/1 or soft) with
  probability ``p``, independently.
- ``input_noise=s``: Gaussian noise of standard deviation ``s`` is added to the inputs (in
  whatever scale the inputs have, normalised or not).
- ``shuffle_labels``: labels are permuted at random within each batch (the label counts stay,
  the link between image and label is broken).
- ``wrong_loss``: the loss is computed against flipped targets, ``default(logits, 1 - y)``;
  for BCE its gradient with respect to every logit has the opposite sign of the correct one,
  so training pushes each face towards the wrong class.
- ``zero_grad_every_n=n``: on steps ``n, 2n, 3n, ...`` (``step > 0``) every parameter's
  gradient is zeroed after ``backward``; optimizers with momentum or weight decay still move.
- ``random_weight_reset=p``: with probability ``p`` per event, one layer chosen at random
  among those with ``reset_parameters()`` and parameters of their own is re-initialised. The
  event is each epoch end (``reset_on="epoch"``, default) or each step end
  (``reset_on="step"``); the other hook does nothing.

Randomness comes from ``seed`` and the step (or epoch) number only (the global torch RNG is
neither used nor advanced), so a run is reproducible and a hook gives the same result when
called again for the same step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["FaultConfig", "FaultInjector", "resettable_layers"]

_KINDS = {"label": 1, "input": 2, "shuffle": 3, "reset": 4}


@dataclass(frozen=True)
class FaultConfig:
    """Which faults to inject; see the module docstring. Validated on creation."""

    label_noise: float = 0.0
    input_noise: float = 0.0
    shuffle_labels: bool = False
    wrong_loss: bool = False
    zero_grad_every_n: int = 0
    random_weight_reset: float = 0.0
    reset_on: Literal["epoch", "step"] = "epoch"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got {self.label_noise}")
        if self.input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}")
        if int(self.zero_grad_every_n) != self.zero_grad_every_n or self.zero_grad_every_n < 0:
            raise ValueError(f"zero_grad_every_n must be an int >= 0: {self.zero_grad_every_n}")
        if not 0.0 <= self.random_weight_reset <= 1.0:
            raise ValueError(
                f"random_weight_reset must be in [0, 1], got {self.random_weight_reset}"
            )
        if self.reset_on not in ("epoch", "step"):
            raise ValueError(f"reset_on must be 'epoch' or 'step', got {self.reset_on!r}")


def resettable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the modules with ``reset_parameters()`` and parameters of their own."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if callable(getattr(m, "reset_parameters", None))
        and any(True for _ in m.parameters(recurse=False))
    ]


class FaultInjector:
    """Applies the faults of a ``FaultConfig``; the training loop calls its hooks."""

    def __init__(self, cfg: FaultConfig | None = None) -> None:
        self.cfg = cfg or FaultConfig()

    @property
    def active(self) -> list[str]:
        """Names of the enabled modes."""
        c = self.cfg
        on = {
            "label_noise": c.label_noise > 0,
            "input_noise": c.input_noise > 0,
            "shuffle_labels": c.shuffle_labels,
            "wrong_loss": c.wrong_loss,
            "zero_grad_every_n": c.zero_grad_every_n > 0,
            "random_weight_reset": c.random_weight_reset > 0,
        }
        return [k for k, v in on.items() if v]

    def __repr__(self) -> str:
        cfg = asdict(self.cfg)
        shown = [f"{k}={cfg[k]!r}" for k in self.active]
        if self.cfg.random_weight_reset > 0:
            shown.append(f"reset_on={self.cfg.reset_on!r}")
        if shown:
            shown.append(f"seed={self.cfg.seed}")
        return f"FaultInjector({', '.join(shown) or 'off'})"

    def _generator(self, kind: str, n: int) -> torch.Generator:
        seq = np.random.SeedSequence([self.cfg.seed, _KINDS[kind], int(n)])
        return torch.Generator().manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> 1))

    # ------------------------------------------------------------------ batch

    def corrupt_batch(self, x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Apply ``input_noise``, ``label_noise`` and ``shuffle_labels`` (in that order).

        Returns new tensors (the inputs are not modified); unchanged ones are returned as is.
        Labels must be binary (0/1, or soft in [0, 1]) for ``label_noise``.
        """
        c = self.cfg
        if c.input_noise > 0:
            g = self._generator("input", step)
            noise = torch.randn(x.shape, generator=g, dtype=torch.float32)
            x = x + (noise * c.input_noise).to(device=x.device, dtype=x.dtype)
        if c.label_noise > 0 or c.shuffle_labels:
            if y.ndim == 0:
                raise ValueError(f"labels must have a batch dimension, got shape {list(y.shape)}")
            n = y.shape[0]
        if c.label_noise > 0:
            if y.numel() and (bool((y < 0).any()) or bool((y > 1).any())):
                raise ValueError("label_noise flips binary labels; got values outside [0, 1]")
            g = self._generator("label", step)
            flip = (torch.rand(n, generator=g) < c.label_noise).to(y.device)
            flip = flip.view(n, *([1] * (y.ndim - 1)))
            y = torch.where(flip, 1 - y, y)
        if c.shuffle_labels and n > 1:
            g = self._generator("shuffle", step)
            y = y[torch.randperm(n, generator=g).to(y.device)]
        return x, y

    # ------------------------------------------------------------------ loss

    def loss_fn(self, default: Callable[..., Any]) -> Callable[..., Any]:
        """``default`` itself, or with ``wrong_loss`` a loss against flipped targets:
        ``wrong(logits, targets, *args, **kw) = default(logits, 1 - targets, *args, **kw)``."""
        if not self.cfg.wrong_loss:
            return default

        def wrong_loss(logits: Tensor, targets: Tensor, *args: Any, **kwargs: Any) -> Any:
            return default(logits, 1 - targets, *args, **kwargs)

        wrong_loss.__doc__ = f"{getattr(default, '__name__', default)!s} with flipped targets"
        return wrong_loss

    # ------------------------------------------------------------------ hooks

    def after_backward(self, model: nn.Module, step: int) -> bool:
        """With ``zero_grad_every_n = n``: zero every gradient when ``step > 0`` and
        ``step % n == 0``; True when it did."""
        n = self.cfg.zero_grad_every_n
        if n <= 0 or step <= 0 or step % n:
            return False
        for p in model.parameters():
            if p.grad is not None:
                p.grad.detach_()
                p.grad.zero_()
        return True

    def _maybe_reset(self, model: nn.Module, n: int) -> list[str]:
        p = self.cfg.random_weight_reset
        if p <= 0:
            return []
        g = self._generator("reset", n)
        if float(torch.rand(1, generator=g)) >= p:
            return []
        layers = resettable_layers(model)
        if not layers:
            return []
        name, layer = layers[int(torch.randint(len(layers), (1,), generator=g))]
        init_seed = int(torch.randint(2**62, (1,), generator=g))
        with torch.random.fork_rng(), torch.no_grad():  # reproducible; global RNG untouched
            torch.manual_seed(init_seed)
            layer.reset_parameters()
        return [name or type(layer).__name__]

    def on_step_end(self, model: nn.Module, step: int) -> list[str]:
        """``random_weight_reset`` with ``reset_on="step"``: names of the layers reset."""
        return self._maybe_reset(model, step) if self.cfg.reset_on == "step" else []

    def on_epoch_end(self, model: nn.Module, epoch: int) -> list[str]:
        """``random_weight_reset`` with ``reset_on="epoch"``: names of the layers reset."""
        return self._maybe_reset(model, epoch) if self.cfg.reset_on == "epoch" else []
