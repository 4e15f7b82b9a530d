"""Shape arithmetic that image layers and the assembler share (no torch needed).

A sample's shape is a tuple: (features,) for rows, (channels, height, width) for images.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import ShapeError


def sample_shape(in_shape: int | Sequence[int]) -> tuple[int, ...]:
    """One sample's shape as a tuple: an int is a width, (in_features,)."""
    return (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)


def describe_shape(shape: Sequence[int]) -> str:
    """(1, 8, 8) -> '1x8x8'."""
    return "x".join(str(n) for n in shape)


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one spatial axis of a convolution or pool (torch's formula, floor)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_positive(**sizes: int) -> None:
    """A ShapeError naming the first argument that is not an integer >= 1."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ShapeError(f"{name} must be an integer >= 1, got {value!r}")
