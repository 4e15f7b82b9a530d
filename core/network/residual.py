"""Residual: y = x + f(x), f a stack of modules; itself a Module.

The gradient of a sum is the sum of the gradients: the identity's (the output gradient as
it is) plus the stack's input gradient. The stack must give back the shape it takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ShapeError
from core.network.sequential import Sequential

if TYPE_CHECKING:
    import torch


class Residual(Sequential):
    """x + modules(x): a skip connection around a chain of modules (ResNet, a transformer's blocks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if out.shape != x.shape:
            raise ShapeError(f"a residual block must keep its input's shape: {tuple(x.shape[1:])} "
                             f"in, {tuple(out.shape[1:])} out")
        # NOTE: a new tensor, never out.add_(x): the last module may keep its output for its
        # backward (tanh, sigmoid).
        return out + x

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        inner = super().backward(grad_output)  # the stack's parameters get their gradients
        if inner is None:  # nobody reads this block's input gradient
            return None
        return inner + grad_output  # the stack's input gradient plus the identity's

    def __repr__(self) -> str:
        return "Residual(" + ", ".join(type(m).__name__ for m in self.modules) + ")"
