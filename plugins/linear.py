"""The fully connected layer."""

from __future__ import annotations

from core import Initializer, Parameter, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class Linear:
    """Fully connected layer y = x W + b, weights from the chosen initializer, bias zero."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,  # None: torch's default dtype (float32)
    ):
        self.in_features, self.out_features = in_features, out_features
        weight = torch.empty(in_features, out_features, dtype=dtype)  # (in, out): x @ W
        init(weight, in_features, out_features, generator)
        self.weight = Parameter.of(weight, "weight")
        self.bias = Parameter.of(torch.zeros(out_features, dtype=dtype), "bias")
        self.input: torch.Tensor | None = None  # cached by forward for the weight gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input = x  # (batch, in)
        return x @ self.weight.value + self.bias.value  # (batch, out)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.input is None:
            raise StateError("Linear.backward called before forward")
        self.weight.grad += self.input.mT @ grad_output  # (in, out)
        self.bias.grad += grad_output.sum(dim=-2)  # (out,)
        return grad_output @ self.weight.value.mT  # (batch, in)

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    __call__ = forward


@hookimpl
def register_layers(register):
    register("linear", Linear)
