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


def pair(name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An image size per axis as (height, width): an int for both, an (h, w) pair, or the
    text 'HxW' a `--layers` value gives (`k=2x3`); a ShapeError naming the argument otherwise."""
    if isinstance(value, str) and "x" in value:
        try:
            value = tuple(int(part) for part in value.split("x"))
        except ValueError:
            pass
    items = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(items, (tuple, list)) and len(items) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items)):
        raise ShapeError(f"{name} must be an integer >= {minimum} or a pair of them, "
                         f"(height, width) or HxW, got {value!r}")
    return tuple(items)
