"""The fully connected layer."""

from __future__ import annotations

from core import Initializer, Parameter, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.matmul import add_matmul_, bias_plus_matmul


class Linear:
    """Fully connected layer y = x W + b, weights from the chosen initializer, bias zero."""

    # With `runs=R` it is R independent layers, trained together: weight (R, in, out),
    # bias (R, out), input (R, batch, in). The same lines compute both, as batched matmuls.
    supports_runs = True
    needs_input_grad = True  # Sequential sets it False on its first layer (core.network.protocols)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,  # None: torch's default dtype (float32)
        device: torch.device | str = "cpu",
        runs: int | None = None,
    ):
        if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 1:
            raise ValueError(f"out_features must be an integer >= 1, got {out_features!r}")
        self.in_features, self.out_features = in_features, out_features
        lead = () if runs is None else (runs,)
        weight = torch.empty(*lead, in_features, out_features, dtype=dtype, device=device)
        init(weight, in_features, out_features, generator)  # (..., in, out): x @ W
        self.weight = Parameter.of(weight, "weight")
        self.bias = Parameter.of(torch.zeros(*lead, out_features, dtype=dtype, device=device), "bias")
        self.input: torch.Tensor | None = None  # cached by forward for the weight gradient
        self.shape: torch.Size | None = None  # the input's own shape (a sequence's, before its rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A sequence, (..., batch, time, in), goes through as (..., batch time, in) rows; an
        # image, with more dimensions, is refused below (flatten it first).
        runs = self.weight.value.dim() - 2  # 0, or 1 with a run dimension
        rows = x if x.dim() != runs + 3 else x.reshape(*x.shape[:runs], -1, self.in_features)
        self.input, self.shape = rows, x.shape  # (..., rows, in)
        out = bias_plus_matmul(self.bias.value, rows, self.weight.value)  # (..., rows, out)
        return out if rows is x else out.view(*x.shape[:-1], self.out_features)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        if self.input is None:
            raise StateError("Linear.backward called before forward (each forward allows one backward)")
        x, self.input = self.input, None  # dropped once used: memory (see plugins/activations.py)
        if grad_output.dim() != x.dim():  # a sequence: as the rows forward made of it
            grad_output = grad_output.reshape(*x.shape[:-1], self.out_features)
        # NOTE: the matmul adds into the gradient itself (addmm_/baddbmm_ is `+= a @ b`),
        # so no (in, out) temporary is made at each step.
        add_matmul_(self.weight.grad, x.mT, grad_output)  # (..., in, out)
        self.bias.grad += grad_output.sum(dim=-2)  # (..., out)
        if not self.needs_input_grad:  # the first layer: nobody reads its input gradient
            return None
        return (grad_output @ self.weight.value.mT).view(self.shape)  # (..., batch, in)

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py): (rows, in) -> (rows, out), nothing kept."""
        if self.weight.value.dim() != 2:
            return None  # an ensemble's: forward
        weight, bias, addmm = self.weight.value, self.bias.value, torch.addmm
        return lambda x: addmm(bias, x, weight)

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    __call__ = forward


@hookimpl
def register_layers(register):
    register("linear", Linear)
