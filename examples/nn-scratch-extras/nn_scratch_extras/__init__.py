"""nn-scratch-extras: a PReLU layer (learned negative slope per feature), swish, and a
checkerboard dataset.

The hooks below are all nn-scratch needs; the entry point in pyproject.toml points here.
torch comes through core.lazy, so `nn-cli list` reads this module without importing torch.
"""

from __future__ import annotations

from core import Dataset, DataError, Parameter, StateError, hookimpl
from core.lazy import torch


class PReLU:
    """max(x, 0) + alpha * min(x, 0), with a learned alpha per feature (He et al. 2015)."""

    def __init__(self, in_features: int, alpha: float = 0.25, dtype: torch.dtype | None = None):
        self.out_features = in_features  # element-wise: as many features out as in
        self.alpha = Parameter.of(torch.full((in_features,), float(alpha), dtype=dtype), "alpha")
        self.input: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input = x  # (batch, features)
        return x.clamp(min=0) + self.alpha.value * x.clamp(max=0)  # (batch, features)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.input is None:
            raise StateError("PReLU.backward called before forward")
        x = self.input
        self.alpha.grad += (grad_output * x.clamp(max=0)).sum(dim=0)  # (features,)
        slope = torch.where(x > 0, torch.ones_like(x), self.alpha.value.expand_as(x))
        return grad_output * slope  # (batch, features)

    def parameters(self) -> list[Parameter]:
        return [self.alpha]


class Swish:
    """x * sigmoid(beta * x) (Ramachandran et al. 2017); beta = 1 is SiLU."""

    def __init__(self, beta: float = 1.0):
        self.beta = beta
        self.input: torch.Tensor | None = None
        self.gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input, self.gate = x, torch.sigmoid(self.beta * x)  # (batch, features) each
        return x * self.gate

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.input is None or self.gate is None:
            raise StateError("Swish.backward called before forward")
        s, x = self.gate, self.input
        return grad_output * (s + self.beta * x * s * (1 - s))  # d/dx x s(bx)

    def parameters(self) -> list[Parameter]:
        return []


def checkerboard(generator: torch.Generator, n: int = 1000, squares: int = 4,
                 noise: float = 0.0) -> Dataset:
    """Uniform points of the unit square coloured like a `squares` x `squares` checkerboard."""
    if not (isinstance(squares, int) and squares >= 2 and isinstance(n, int) and n >= 2):
        raise DataError(f"checkerboard: n and squares must be integers >= 2, got {n!r}, {squares!r}")
    x = torch.rand(n, 2, generator=generator, dtype=torch.float64)  # (n, 2): every draw seeded
    cell = (x * squares).floor().long()  # (n, 2): which square each point falls in
    y = (cell.sum(dim=1) % 2).long()  # (n,): the square's colour
    x = x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return Dataset("checkerboard", "binary", x, y, ("x", "y"), (2,), ("white", "black"))


@hookimpl
def register_datasets(register):
    # Options `nn-cli train --data checkerboard` uses when not typed: a wider net, more epochs.
    register("checkerboard", checkerboard, defaults={"hidden": (64, 64), "epochs": 300, "act": "relu"})


@hookimpl
def register_layers(register):
    register("prelu", PReLU)


@hookimpl
def register_activations(register):
    register("swish", Swish)
