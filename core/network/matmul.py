"""Matrix products that layers share: fused bias-plus-product and in-place accumulation.

Any layer with weights multiplies matrices the same two ways: a forward `bias + a @ b`
and a backward `grad += a @ b` into a parameter's own gradient. Both work on one matrix
(2-D) or a stack of them (3-D: an ensemble's leading run dimension), as one BLAS call.
"""

from __future__ import annotations

from core.lazy import torch  # imported on first use: `nn-cli --help` starts without torch


def bias_plus_matmul(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + a @ b as one fused op (addmm/baddbmm), for one matrix or a stack of them.

    `bias` is (out,) or (runs, out), added to every row of the product (..., rows, out).
    """
    if a.dim() == 2:
        return torch.addmm(bias, a, b)  # bias (out,) broadcasts over the rows
    return torch.baddbmm(bias.unsqueeze(-2), a, b)  # bias (runs, 1, out)


def add_matmul_(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """out += a @ b in place (addmm_/baddbmm_), for one matrix (2-D) or a stack of them (3-D):
    a gradient accumulates with no product-sized temporary."""
    if out.dim() == 2:
        out.addmm_(a, b)
    else:
        out.baddbmm_(a, b)
