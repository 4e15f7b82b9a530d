"""Causal multi-head self-attention, forward and backward by hand (llm.c's attention, in torch ops).

    q, k, v = split(x Wqkv + bqkv)                     each (batch, heads, time, head_width)
    weights = softmax(q k^T / sqrt(head_width) + mask)  (batch, heads, time, time), mask -inf above the diagonal
    y = merge(dropout(weights) v) Wo + bo               (batch, time, width)

While a key/value cache is on (`start_cache`, for sampling), each call takes only the new
tokens, keeps their keys and values, and attends over every key kept so far: the prefix is
never recomputed.
"""

from __future__ import annotations

import math

from core import Initializer, Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class CausalSelfAttention:
    """Multi-head self-attention where each position sees itself and the positions before it."""

    def __init__(
        self,
        in_shape: tuple[int, ...],
        init: Initializer,
        heads: int = 1,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ):
        if len(in_shape) != 2:
            raise ShapeError(f"attention needs (time, width) inputs, after an embedding; got {tuple(in_shape)}")
        self.context, width = in_shape
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or width % heads:
            raise ValueError(f"heads must be an integer >= 1 that divides the width {width}, got {heads!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.width, self.heads, self.head_width = width, heads, width // heads
        self.scale = 1.0 / math.sqrt(self.head_width)
        self.dropout, self.generator, self.training = dropout, generator, True
        like = {"dtype": dtype, "device": device}
        qkv = torch.empty(width, 3 * width, **like)
        init(qkv, width, 3 * width, generator)  # (width, 3 width): x @ W gives q | k | v
        out = torch.empty(width, width, **like)
        init(out, width, width, generator)
        self.qkv_weight = Parameter.of(qkv, "qkv_weight")
        self.qkv_bias = Parameter.of(torch.zeros(3 * width, **like), "qkv_bias")
        self.out_weight = Parameter.of(out, "out_weight")
        self.out_bias = Parameter.of(torch.zeros(width, **like), "out_bias")
        self.cache: tuple | None = None  # what backward needs, from the last forward
        self.kv: torch.Tensor | None = None  # the key/value cache: (2, batch, heads, context, head_width)
        self.kept = 0  # how many positions the key/value cache holds
        self._mask: torch.Tensor | None = None

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def eval(self) -> None:
        self.train(False)

    def mask(self, time: int, like: torch.Tensor) -> torch.Tensor:
        """(context, context): 0 on and below the diagonal, -inf above (a key after the query)."""
        if self._mask is None or self._mask.dtype != like.dtype or self._mask.device != like.device:
            ones = torch.ones(self.context, self.context, dtype=torch.bool, device=like.device)
            self._mask = torch.zeros(self.context, self.context, dtype=like.dtype, device=like.device)
            self._mask.masked_fill_(ones.triu(1), float("-inf"))
        return self._mask

    def heads_of(self, t: torch.Tensor, batch: int, time: int) -> torch.Tensor:
        """(batch, time, width) -> (batch * heads, time, head_width)."""
        return t.view(batch, time, self.heads, self.head_width).transpose(1, 2).reshape(
            batch * self.heads, time, self.head_width)

    def merge(self, t: torch.Tensor, batch: int, time: int) -> torch.Tensor:
        """(batch * heads, time, head_width) -> (batch * time, width)."""
        return t.view(batch, self.heads, time, self.head_width).transpose(1, 2).reshape(
            batch * time, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.width:
            raise ShapeError(f"attention was built for (batch, time, {self.width}) inputs, got {tuple(x.shape)}")
        batch, time, width = x.shape
        if self.kv is not None:
            return self.forward_cached(x)
        if time > self.context:
            raise ShapeError(f"attention: {time} positions, but it was built for a context of {self.context}")
        rows = x.reshape(batch * time, width)  # (batch time, width)
        qkv = torch.addmm(self.qkv_bias.value, rows, self.qkv_weight.value)  # (batch time, 3 width)
        q, k, v = (self.heads_of(t, batch, time) for t in qkv.split(width, dim=1))  # (bh, time, hw)
        # NOTE: the scale and the causal mask ride on the product (baddbmm: mask + scale q k^T);
        # the softmax subtracts each row's max first, so no exp overflows, and every row keeps
        # its diagonal, so no row is all -inf.
        scores = torch.baddbmm(self.mask(time, x)[:time, :time], q, k.mT, alpha=self.scale)  # (bh, time, time)
        weights = softmax(scores)
        dropped = None
        if self.training and self.dropout > 0:
            keep = torch.rand(weights.shape, generator=self.generator, dtype=weights.dtype) >= self.dropout
            dropped = keep.to(weights.dtype).div_(1 - self.dropout).to(weights.device)
        used = weights if dropped is None else weights * dropped
        heads_out = torch.bmm(used, v)  # (bh, time, hw)
        merged = self.merge(heads_out, batch, time)  # (batch time, width)
        self.cache = (rows, q, k, v, weights, dropped, used, merged, batch, time)
        out = torch.addmm(self.out_bias.value, merged, self.out_weight.value)
        return out.view(batch, time, width)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            raise StateError("CausalSelfAttention.backward called before forward (each forward allows one backward)")
        rows, q, k, v, weights, dropped, used, merged, batch, time = self.cache
        self.cache = None  # dropped once used: memory (see plugins/activations.py)
        g = grad_output.reshape(batch * time, self.width)  # (batch time, width)
        self.out_weight.grad.addmm_(merged.T, g)  # (width, width)
        self.out_bias.grad += g.sum(0)
        g_heads = self.heads_of(g @ self.out_weight.value.T, batch, time)  # (bh, time, hw)
        g_v = torch.bmm(used.mT, g_heads)  # (bh, time, hw)
        g_weights = torch.bmm(g_heads, v.mT)  # (bh, time, time)
        if dropped is not None:
            g_weights.mul_(dropped)
        g_scores = softmax_backward(weights, g_weights).mul_(self.scale)  # (bh, time, time)
        g_q = torch.bmm(g_scores, k)  # (bh, time, hw)
        g_k = torch.bmm(g_scores.mT, q)
        g_qkv = torch.cat([self.merge(t, batch, time) for t in (g_q, g_k, g_v)], dim=1)  # (batch time, 3 width)
        self.qkv_weight.grad.addmm_(rows.T, g_qkv)  # (width, 3 width)
        self.qkv_bias.grad += g_qkv.sum(0)
        return (g_qkv @ self.qkv_weight.value.T).view(batch, time, self.width)

    # -- the key/value cache (sampling) ----------------------------------------------------

    def start_cache(self, batch: int) -> None:
        """Keep keys and values across calls, for up to `context` positions of `batch` sequences."""
        like = self.qkv_weight.value
        self.kv = like.new_zeros(2, batch * self.heads, self.context, self.head_width)
        self.kept = 0

    def stop_cache(self) -> None:
        self.kv, self.kept = None, 0

    def forward_cached(self, x: torch.Tensor) -> torch.Tensor:
        """The new tokens' outputs, attending over every position kept so far and themselves."""
        batch, time, width = x.shape
        start, end = self.kept, self.kept + time
        if end > self.context:
            raise ShapeError(f"attention: the key/value cache holds {self.context} positions, "
                             f"{end} asked for")
        qkv = torch.addmm(self.qkv_bias.value, x.reshape(batch * time, width), self.qkv_weight.value)
        q, k, v = (self.heads_of(t, batch, time) for t in qkv.split(width, dim=1))  # (bh, time, hw)
        self.kv[0, :, start:end] = k
        self.kv[1, :, start:end] = v
        self.kept = end
        keys, values = self.kv[0, :, :end], self.kv[1, :, :end]  # (bh, end, hw)
        mask = self.mask(end, x)[start:end, :end]  # query start + i sees keys 0 .. start + i
        weights = softmax(torch.baddbmm(mask, q, keys.mT, alpha=self.scale))  # (bh, time, end)
        merged = self.merge(torch.bmm(weights, values), batch, time)
        return torch.addmm(self.out_bias.value, merged, self.out_weight.value).view(batch, time, width)

    def parameters(self) -> list[Parameter]:
        return [self.qkv_weight, self.qkv_bias, self.out_weight, self.out_bias]

    __call__ = forward


def softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension.

    NOTE: each row's max is subtracted before exp, so every exp is of a number <= 0 (no
    overflow) and the largest is exp(0) = 1 (the sum is >= 1, never 0); -inf gives 0.
    """
    e = (scores - scores.amax(dim=-1, keepdim=True)).exp_()  # (..., rows, columns)
    return e.div(e.sum(dim=-1, keepdim=True))


def softmax_backward(weights: torch.Tensor, grad_weights: torch.Tensor) -> torch.Tensor:
    """d loss / d scores from the softmax's output `weights` and d loss / d weights:
    w * (g - sum(g * w)), the Jacobian diag(w) - w w^T applied per row (overwrites `grad_weights`)."""
    dot = (grad_weights * weights).sum(dim=-1, keepdim=True)  # (..., rows, 1)
    return grad_weights.sub_(dot).mul_(weights)


@hookimpl
def register_layers(register):
    register("attention", CausalSelfAttention)
