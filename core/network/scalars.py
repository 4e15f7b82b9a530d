"""0-dim tensors holding a number, made once per (value, dtype, device) and then reused.

NOTE: an elementwise op with a Python number (x.mul_(0.5)) turns the number into a
tensor of x's dtype at every call: about 1.5 us on CPU, more than the op itself on one
token's row. Sampling a token at a time (core/network/sampling.py) runs a few dozen such
ops per token, so its layers write x.mul_(scalar(0.5, x)) instead. Read-only: never
write into a tensor this returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_made: dict = {}


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """`value` as a 0-dim tensor of `like`'s dtype and device (shared: read it, never write it)."""
    key = (value, like.dtype, like.device)
    made = _made.get(key)
    if made is None:
        made = _made[key] = like.new_tensor(value)
    return made
