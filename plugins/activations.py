"""Element-wise activations. Each caches exactly what its backward needs."""

from __future__ import annotations

import math

from core import Parameter, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class _Activation:
    """Shared plumbing: no parameters, a cache that backward refuses to use before forward."""

    cache: torch.Tensor | None = None
    supports_runs = True  # element-wise, so a leading run dimension just comes along
    any_layout = True  # and images in any layout (core/network/layout.py)

    def parameters(self) -> list[Parameter]:
        return []

    def cached(self) -> torch.Tensor:
        """The forward's cache, handed to backward once and then dropped: its memory comes
        back as soon as the gradient has passed, not at the next forward (as torch frees
        its graph after backward)."""
        if self.cache is None:
            raise StateError(f"{type(self).__name__}.backward called before forward "
                             f"(each forward allows one backward)")
        cache, self.cache = self.cache, None
        return cache

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class ReLU(_Activation):
    """max(x, 0); the gradient at exactly 0 is taken as 0, as in PyTorch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = x > 0  # the mask
        # NOTE: not x * mask, which is -inf * 0 = NaN at x = -inf; max(x, 0) is 0 there.
        return x.clamp_min(0)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        # NOTE: the mask as bytes: torch converts a bool operand several times slower than
        # uint8 (and where(mask, g, 0) is slower still); the product is the same.
        return grad_output * self.cached().view(torch.uint8)


class Tanh(_Activation):
    """Hyperbolic tangent, derivative 1 - tanh(x)^2 computed from the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = torch.tanh(x)  # the output
        return self.cache

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        y = self.cached()
        # grad_output * (1 - y * y), built in one new buffer (the same rounding): a batch of
        # 1000 needs a temporary fewer at the training step's peak of memory.
        return (y * y).neg_().add_(1).mul_(grad_output)


class Sigmoid(_Activation):
    """Logistic function 1 / (1 + exp(-x)), derivative s(1 - s) computed from the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NOTE: torch.sigmoid is stable for large |x| (no exp overflow), unlike 1/(1+exp(-x)).
        self.cache = torch.sigmoid(x)  # the output
        return self.cache

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        s = self.cached()
        return grad_output * s * (1 - s)


class LeakyReLU(_Activation):
    """x for x > 0, negative_slope * x otherwise; the gradient at exactly 0 is the slope, as in PyTorch."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = x > 0  # the mask
        return torch.where(self.cache, x, x * self.negative_slope)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        return torch.where(self.cached(), grad_output, grad_output * self.negative_slope)


class GELU(_Activation):
    """x * Phi(x), Phi the standard normal CDF (approximate="tanh": the tanh formula, as PyTorch's)."""

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = x  # the input: both derivatives are written in x
        if self.approximate == "tanh":
            return 0.5 * x * (1 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
        if torch.is_grad_enabled():  # autograd records this forward (the kit's oracle)
            return x * torch.erf(x * _INV_SQRT_2).add_(1).mul_(0.5)
        # NOTE: x Phi(x) in one new tensor: each new one of batch x hidden costs more than
        # the arithmetic here (its pages are fresh)
        return (x * _INV_SQRT_2).erf_().add_(1).mul_(0.5).mul_(x)

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py): x Phi(x), nothing kept."""
        if self.approximate == "tanh":
            return None  # forward
        inv_sqrt_2, half, addcmul = like.new_tensor(_INV_SQRT_2), like.new_tensor(0.5), torch.addcmul
        return lambda x: addcmul(x, x, (x * inv_sqrt_2).erf_()).mul_(half)  # (x + x erf(x / sqrt 2)) / 2

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        x = self.cached()
        if self.approximate == "tanh":
            t = torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)  # d(tanh's argument)/dx
            return grad_output * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner)
        # Phi(x) + x pdf(x), in two new tensors (each a batch x hidden pass of memory).
        # NOTE: exp(-x^2 / 2) as a power of 2: torch's exp takes a slow path where it
        # underflows (|x| > 13), 25x slower on CPU; exp2 does not.
        x_pdf = (x * x).mul_(-0.5 / math.log(2)).exp2_().mul_(x)  # x exp(-x^2 / 2)
        slope = (x * _INV_SQRT_2).erf_().mul_(0.5).add_(0.5)  # Phi(x)
        return slope.add_(x_pdf, alpha=1 / math.sqrt(2 * math.pi)).mul_(grad_output)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)


def _phi_cdf(x: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF, 0.5 (1 + erf(x / sqrt 2))."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


@hookimpl
def register_activations(register):
    register("relu", ReLU)
    register("tanh", Tanh)
    register("sigmoid", Sigmoid)
    register("leaky_relu", LeakyReLU)
    register("gelu", GELU)
