"""An L1/L2 penalty on the weights, added to the loss's gradient before each step.

    penalty(W) = l1 * sum |w| + l2 * sum w^2      (over every penalised weight)
    d penalty / d w = l1 * sign(w) + 2 * l2 * w

as Keras's `regularizers.L1L2(l1, l2)` defines it. The penalised weights are the weight
matrices and kernels: parameters named "weight" with two or more dimensions per run
(linear, conv), not biases nor a normalization's per-feature scale, as scikit-learn's
`alpha` leaves the intercepts alone. (A layernorm over a whole image has a scale of
several dimensions: it counts as a weight here.) It is a term of the objective, so every optimizer
sees it through the gradient (unlike adamw's decoupled decay, which the optimizer applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.network.protocols import Module, Parameter


@dataclass(frozen=True)
class Penalty:
    l1: float = 0.0  # weight of sum |w|
    l2: float = 0.0  # weight of sum w^2

    def __bool__(self) -> bool:
        return bool(self.l1 or self.l2)

    def value(self, weights: Sequence[torch.Tensor], lead: int = 0) -> torch.Tensor:
        """() or (runs,): the penalty of `weights`, each (*lead, ...), summed per run."""
        total = 0.0
        for w in weights:
            flat = w.flatten(lead)  # (..., numel)
            if self.l1:
                total = total + self.l1 * flat.abs().sum(dim=-1)
            if self.l2:
                total = total + self.l2 * flat.pow(2).sum(dim=-1)
        return torch.as_tensor(total, dtype=torch.float64)

    def add_grad(self, parameters: Sequence[Parameter]) -> None:
        """Add d penalty / d w into each parameter's gradient, in place."""
        if not parameters:
            return
        values = [p.value for p in parameters]
        grads = [p.grad for p in parameters]
        if self.l2:  # 2 l2 w
            torch._foreach_add_(grads, values, alpha=2 * self.l2)
        if self.l1:  # l1 sign(w): 0 at w = 0, as autograd's subgradient of |w|
            torch._foreach_add_(grads, torch._foreach_sign(values), alpha=self.l1)


def penalised(model: Module, lead: int = 0) -> list[Parameter]:
    """The weight matrices and kernels of `model` (with `lead` run dimensions before each)."""
    return [p for p in model.parameters() if p.name == "weight" and p.value.dim() - lead >= 2]
