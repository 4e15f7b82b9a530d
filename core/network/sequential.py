"""Sequential: modules applied in order, gradients passed back in reverse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.network.protocols import Module, Parameter, param, zero_grad

if TYPE_CHECKING:
    import torch


class Sequential:
    """A chain of modules; itself a Module."""

    def __init__(self, *modules: Module):
        self.modules = list(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            x = module.forward(x)
        return x

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        for module in reversed(self.modules):
            grad_output = module.backward(grad_output)
        return grad_output

    def parameters(self) -> list[Parameter]:
        return [p for module in self.modules for p in module.parameters()]

    def param(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The report's API: (tensor, gradient) pairs of every parameter."""
        return param(self)

    def zero_grad(self) -> None:
        zero_grad(self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __len__(self) -> int:
        return len(self.modules)

    def __getitem__(self, index: int) -> Module:
        return self.modules[index]

    def __repr__(self) -> str:
        inner = ", ".join(type(m).__name__ for m in self.modules)
        return f"Sequential({inner})"
