"""Sequential: modules applied in order, gradients passed back in reverse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contextlib import nullcontext

from core.network.layout import (
    ANY_LAYOUT, BATCH_FIRST, BATCH_INNERMOST, CONVERT, INVERSE, layout_of, to_batch_first,
)
from core.network.protocols import (
    Module, Parameter, buffers, no_input_grad, param, set_training, zero_grad,
)

if TYPE_CHECKING:
    import torch


class Sequential:
    """A chain of modules; itself a Module."""

    def __init__(self, *modules: Module, input_shape: tuple[int, ...] | None = None,
                 conversions: list[str | None] | None = None, final_conversion: str | None = None):
        self.modules = list(modules)
        # Images run batch-innermost between the layers that take them so (the assembler's
        # plan, core/network/layout.py): conversions[i] is the layout module i's input is
        # converted to (None: as it comes), final_conversion the network output's. Built
        # by hand, without a plan, the modules pass their tensors on as they are.
        self.conversions = list(conversions) if conversions else [None] * len(self.modules)
        self.final_conversion = final_conversion
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
        for module, convert in zip(self.modules, self.conversions):
            if convert:
                x = CONVERT[convert](x)
            x = module.forward(x)
        if self.final_conversion:
            x = CONVERT[self.final_conversion](x)
        if self.input_shape is not None:
            self.output_shape = x.shape
            x = x.reshape(*rows, -1)  # (..., batch, outputs)
        return x

    def outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each module's output for the images (or rows) x, as `forward` computes them, every
        image output batch-first, as a user sees images (for summaries and memory estimates)."""
        found, current = [], BATCH_FIRST
        for module, convert in zip(self.modules, self.conversions):
            if convert:
                x, current = CONVERT[convert](x), convert
            x = module.forward(x)
            if layout_of(module) != ANY_LAYOUT:
                current = layout_of(module)
            image = x.dim() >= 4  # (..., batch, features) has at most 3, with a run dimension
            found.append(to_batch_first(x) if image and current == BATCH_INNERMOST else x)
        return found

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        if self.input_shape is not None:
            grad_output = grad_output.reshape(self.output_shape)
        if self.final_conversion:
            grad_output = CONVERT[INVERSE[self.final_conversion]](grad_output)
        if not self.needs_input_grad:
            return self._backward_parameters_only(grad_output)
        for module, convert in zip(reversed(self.modules), reversed(self.conversions)):
            grad_output = module.backward(grad_output)
            if convert:  # the conversion's adjoint: the inverse permutation
                grad_output = CONVERT[INVERSE[convert]](grad_output)
        if self.input_shape is not None:
            grad_output = grad_output.flatten(-len(self.input_shape))  # (..., batch, features)
        return grad_output

    def _backward_parameters_only(self, grad_output: torch.Tensor) -> None:
        """Parameter gradients only: the modules before the first with parameters need no
        backward at all, and that one no input gradient, if it takes `needs_input_grad`."""
        first = next((i for i, m in enumerate(self.modules) if m.parameters()), len(self.modules))
        modules, conversions = self.modules[first:], self.conversions[first:]
        with no_input_grad(modules[0]) if modules else nullcontext():
            for position in range(len(modules) - 1, -1, -1):
                grad_output = modules[position].backward(grad_output)
                if conversions[position] and position:  # nobody reads the first one's
                    grad_output = CONVERT[INVERSE[conversions[position]]](grad_output)

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
