"""Sequential: modules applied in order, gradients passed back in reverse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contextlib import nullcontext

from core.network.protocols import (
    Module, Parameter, buffers, no_input_grad, param, set_training, zero_grad,
)

if TYPE_CHECKING:
    import torch


class Sequential:
    """A chain of modules; itself a Module."""

    def __init__(self, *modules: Module, input_shape: tuple[int, ...] | None = None):
        self.modules = list(modules)
        self.training = True  # the mode last set by train(); modules start in training
        # With a sample shape of several dimensions (images, (1, 8, 8)), the network takes
        # and gives flat rows, as the data pipeline keeps them: each row becomes a sample of
        # this shape on the way in, and each output is flattened on the way out.
        self.input_shape = tuple(input_shape) if input_shape and len(input_shape) > 1 else None
        self.output_shape: torch.Size | None = None  # of the last forward, when flattened
        self.needs_input_grad = True  # False: backward returns None (core.network.protocols)

    def train(self, mode: bool = True) -> None:
        """Training (True) or evaluation (False) mode for every module that has modes."""
        self.training = mode
        for module in self.modules:
            set_training(module, mode)

    def eval(self) -> None:
        self.train(False)

    def buffers(self) -> dict[str, torch.Tensor]:
        """Every module's non-trainable state, named "{index}.{name}"."""
        return {f"{i}.{name}": t for i, m in enumerate(self.modules) for name, t in buffers(m).items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_shape is not None:
            rows = x.shape[:-1]  # (..., batch)
            x = x.reshape(*rows, *self.input_shape)  # (..., batch, *input_shape)
        for module in self.modules:
            x = module.forward(x)
        if self.input_shape is not None:
            self.output_shape = x.shape
            x = x.reshape(*rows, -1)  # (..., batch, outputs)
        return x

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        if self.input_shape is not None:
            grad_output = grad_output.reshape(self.output_shape)
        if not self.needs_input_grad:
            return self._backward_parameters_only(grad_output)
        for module in reversed(self.modules):
            grad_output = module.backward(grad_output)
        if self.input_shape is not None:
            grad_output = grad_output.flatten(-len(self.input_shape))  # (..., batch, features)
        return grad_output

    def _backward_parameters_only(self, grad_output: torch.Tensor) -> None:
        """Parameter gradients only: the modules before the first with parameters need no
        backward at all, and that one no input gradient, if it takes `needs_input_grad`."""
        first = next((i for i, m in enumerate(self.modules) if m.parameters()), len(self.modules))
        modules = self.modules[first:]
        with no_input_grad(modules[0]) if modules else nullcontext():
            for module in reversed(modules):
                grad_output = module.backward(grad_output)

    def parameters(self) -> list[Parameter]:
        return [p for module in self.modules for p in module.parameters()]

    def example_input(self, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype):
        """An input to check the network on: what its first module draws (an embedding's
        ids), or normal values."""
        draw = getattr(self.modules[0], "example_input", None) if self.modules else None
        if callable(draw):
            return draw(shape, generator, dtype)
        from core.lazy import torch

        return torch.randn(shape, generator=generator, dtype=dtype)

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
