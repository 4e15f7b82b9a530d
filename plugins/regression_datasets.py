"""Regression sets to see a network fit: a curve over one input, a surface over two.

Like the 2-D classification sets (plugins/datasets.py) they draw every point from the run's
seeded `generator`, inputs first and then the noise, so a seed gives the same points on every
machine, and `noise` is the standard deviation of Gaussian noise added to the target. The
playground draws the curve or the surface the network fits over the points.
"""

from __future__ import annotations

import math

from core import Dataset, DataError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


def _check(name: str, n: int, noise: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise DataError(f"dataset {name!r}: n must be an integer >= 2, got {n!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (
            math.isfinite(noise) and noise >= 0):
        raise DataError(f"dataset {name!r}: noise must be a finite number >= 0, got {noise!r}")


def _uniform(generator: torch.Generator, n: int, features: int, half: float) -> torch.Tensor:
    """(n, features) uniform on [-half, half] in each input."""
    return (torch.rand(n, features, generator=generator, dtype=torch.float64) * 2 - 1) * half


def sine(generator: torch.Generator, n: int = 500, noise: float = 0.1) -> Dataset:
    """A curve over one input: y = sin(2x) + x/3, x uniform on [-3, 3], plus noise."""
    _check("sine", n, noise)
    x = _uniform(generator, n, 1, 3.0)  # (n, 1)
    y = torch.sin(2 * x) + x / 3  # (n, 1)
    y = y + noise * torch.randn(y.shape, generator=generator, dtype=torch.float64)
    return Dataset("sine", "regression", x, y, ("x",), (1,), target_names=("y",),
                   description=f"y = sin(2x) + x/3 on [-3, 3], noise {noise:g}")


def hills(generator: torch.Generator, n: int = 1000, noise: float = 0.1) -> Dataset:
    """A surface over two inputs: a hill and a valley, y = exp(-|p - a|^2) - exp(-|p - b|^2)
    with a = (-1, 1) and b = (1, -1), p uniform on [-3, 3]^2, plus noise."""
    _check("hills", n, noise)
    p = _uniform(generator, n, 2, 3.0)  # (n, 2)
    hill = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    valley = -hill
    y = ((-(p - hill).pow(2).sum(1)).exp() - (-(p - valley).pow(2).sum(1)).exp()).view(-1, 1)
    y = y + noise * torch.randn(y.shape, generator=generator, dtype=torch.float64)  # (n, 1)
    return Dataset("hills", "regression", p, y, ("x", "y"), (2,), target_names=("height",),
                   description=f"a hill at (-1, 1) and a valley at (1, -1), noise {noise:g}")


@hookimpl
def register_datasets(register):
    # A regression's loss is the squared error; the rest as the disk's run.
    for factory in (sine, hills):
        register(factory.__name__, factory, defaults={"loss": "mse"})
