"""The report's task: is a point of the unit square inside the disk of area one half?"""

from __future__ import annotations

import math

import torch

CENTER = (0.5, 0.5)
# Area pi r^2 = 1/2, so half the square is class 1. (The report's "1/sqrt(2)" lost the pi:
# that disk covers the whole square and would label every point 1.)
RADIUS = 1.0 / math.sqrt(2.0 * math.pi)


def disk_labels(x: torch.Tensor) -> torch.Tensor:
    """1.0 for points strictly inside the disk, else 0.0; shape (n, 1)."""
    center = x.new_tensor(CENTER)
    inside = ((x - center) ** 2).sum(dim=1, keepdim=True) < RADIUS**2  # (n, 1)
    return inside.to(x.dtype)


def disk_dataset(
    n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` points uniform in [0, 1]^2 and their labels: (n, 2) and (n, 1)."""
    x = torch.rand(n, 2, generator=generator, dtype=torch.float64).to(dtype)
    return x, disk_labels(x)
