"""Zero-mean Gaussian weight initializers.

NOTE: the report calls these figures "variances", but they are standard deviations:
default std 1, He std sqrt(2 / fan_in), Xavier std sqrt(2 / (fan_in + fan_out)).
"""

from __future__ import annotations

import math

from core import hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class _Gaussian:
    def std(self, fan_in: int, fan_out: int) -> float:
        raise NotImplementedError

    def __call__(
        self, weight: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator | None
    ) -> None:
        # Drawn on the CPU, then copied, so a seed gives the same weights on every device.
        noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
        weight.copy_(noise * self.std(fan_in, fan_out))


class DefaultGaussian(_Gaussian):
    """Gaussian, mean 0, std 1."""

    def std(self, fan_in: int, fan_out: int) -> float:
        return 1.0


class HeGaussian(_Gaussian):
    """Gaussian, mean 0, std sqrt(2 / fan_in) (He et al. 2015; suits ReLU)."""

    def std(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(2.0 / fan_in)


class XavierGaussian(_Gaussian):
    """Gaussian, mean 0, std sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010; suits tanh)."""

    def std(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(2.0 / (fan_in + fan_out))


@hookimpl
def register_initializers(register):
    register("default", DefaultGaussian)
    register("he", HeGaussian)
    register("xavier", XavierGaussian)
