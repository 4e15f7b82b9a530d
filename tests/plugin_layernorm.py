"""A third-party plugin written from the README alone: a layer normalization with a learned
gain and bias, run-batched (`supports_runs`), refusing a bad `eps` with a ValueError.

`LayerNormNoGain` is the same layer with the mistake the authoring kit must catch: its
backward forgets the gain, which goes unseen while the gain sits at its initial 1.
Registered as `my_layernorm` (and `my_layernorm_no_gain`) so it never meets a built-in.
"""

from __future__ import annotations

from core import Parameter, StateError, hookimpl
from core.lazy import torch


class LayerNorm:
    """y = (x - mean) / sqrt(var + eps) * gain + bias, over the features of each row."""

    supports_runs = True  # parameters (runs, features) with runs; input (runs, batch, features)

    def __init__(self, in_features: int, eps: float = 1e-5, dtype=None, runs: int | None = None):
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.out_features, self.eps = in_features, eps
        lead = () if runs is None else (runs,)
        self.gain = Parameter.of(torch.ones(*lead, in_features, dtype=dtype), "gain")
        self.bias = Parameter.of(torch.zeros(*lead, in_features, dtype=dtype), "bias")
        self.cache = None

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)  # (..., batch, 1)
        var = x.var(dim=-1, unbiased=False, keepdim=True)  # (..., batch, 1)
        rstd = (var + self.eps).rsqrt()  # (..., batch, 1)
        xhat = (x - mean) * rstd  # (..., batch, features)
        self.cache = xhat, rstd
        return xhat * self.gain.value.unsqueeze(-2) + self.bias.value.unsqueeze(-2)

    def grad_xhat(self, grad_output):
        return grad_output * self.gain.value.unsqueeze(-2)  # (..., batch, features)

    def backward(self, grad_output):
        if self.cache is None:
            raise StateError(f"{type(self).__name__}.backward called before forward")
        xhat, rstd = self.cache
        self.gain.grad += (grad_output * xhat).sum(dim=-2)  # (..., features)
        self.bias.grad += grad_output.sum(dim=-2)  # (..., features)
        g = self.grad_xhat(grad_output)
        return rstd * (g - g.mean(dim=-1, keepdim=True)
                       - xhat * (g * xhat).mean(dim=-1, keepdim=True))

    def parameters(self):
        return [self.gain, self.bias]


class LayerNormNoGain(LayerNorm):
    """The planted mistake: the input gradient leaves out the gain."""

    def grad_xhat(self, grad_output):
        return grad_output


@hookimpl
def register_layers(register):
    register("my_layernorm", LayerNorm)
    register("my_layernorm_no_gain", LayerNormNoGain)
