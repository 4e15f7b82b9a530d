"""Causal multi-head self-attention, forward and backward by hand (llm.c's attention, in torch ops).

    q, k, v = split(x Wqkv + bqkv)                     each (batch, heads, time, head_width)
    weights = softmax(q k^T / sqrt(head_width) + mask)  (batch, heads, time, time), mask -inf above the diagonal
    d scores = weights * (d weights - rowsum(d weights * weights))   the softmax backward
    y = merge(dropout(weights) v) Wo + bo               (batch, time, width)

While a key/value cache is on (`start_cache`, for sampling), each call takes only the new
tokens, keeps their keys and values, and attends over every key kept so far: the prefix is
never recomputed.
"""

from __future__ import annotations

import math

from core import Initializer, Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast

LOG2_E = 1 / math.log(2)  # exp(x) = 2 ** (x log2(e))


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

    def split_heads(self, qkv: torch.Tensor, batch: int, time: int) -> torch.Tensor:
        """(batch time, 3 width) -> (3, batch heads, time, head_width): q, k and v by head, one copy."""
        return qkv.view(batch, time, 3, self.heads, self.head_width).permute(2, 0, 3, 1, 4).reshape(
            3, batch * self.heads, time, self.head_width)

    def merge_heads(self, t: torch.Tensor, batch: int, time: int, parts: int = 1) -> torch.Tensor:
        """split_heads's inverse: (parts, batch heads, time, head_width) -> (batch time, parts width)."""
        return t.view(parts, batch, self.heads, time, self.head_width).permute(1, 3, 0, 2, 4).reshape(
            batch * time, parts * self.width)

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
        q, k, v = self.split_heads(qkv, batch, time)  # each (bh, time, hw)
        exps, top, total = self.exponentials(q, k, time)  # (bh, time, time), (bh, time, 1) twice
        dropped = None
        if self.training and self.dropout > 0:
            keep = torch.rand(exps.shape, generator=self.generator, dtype=exps.dtype) >= self.dropout
            dropped = keep.to(exps.dtype).div_(1 - self.dropout).to(exps.device)
            exps = exps * dropped
        # NOTE: the softmax's division waits until after the product with v: a row of
        # head_width numbers to divide instead of a row of time
        heads = torch.bmm(exps, v) / total  # (bh, time, hw)
        lse = top + torch.log2(total)  # each row's log-sum-exp, base 2: for backward
        merged = self.merge_heads(heads, batch, time)  # (batch time, width)
        # NOTE: the (time, time) weights are not kept: backward computes them again from q, k
        # and each row's log-sum-exp (as flash attention does), the largest saving of memory.
        self.cache = (rows, q, k, v, lse, dropped, merged, batch, time)
        out = torch.addmm(self.out_bias.value, merged, self.out_weight.value)
        return out.view(batch, time, width)

    def scores(self, q: torch.Tensor, k: torch.Tensor, time: int) -> torch.Tensor:
        """(bh, time, time): q k^T / sqrt(hw) + the causal mask, times log2(e).

        NOTE: the scale and the mask ride on the product (baddbmm: mask + scale q k^T). The
        softmax's exponentials are base 2, the scores scaled by log2(e) to match (the same
        softmax): torch's exp takes a slow path on the -inf of the mask, exp2 does not (4-7x
        faster here). Every row keeps its diagonal, so no row is all -inf.
        """
        return torch.baddbmm(self.mask(time, q)[:time, :time], q, k.mT, alpha=self.scale * LOG2_E)

    def exponentials(self, q: torch.Tensor, k: torch.Tensor, time: int):
        """The softmax before its division: exp2(scores - row max), the row max, the row sum.

        NOTE: the max is subtracted first, so nothing overflows and each row's sum is >= 1.
        In place unless autograd records this forward (the kit's oracle), which needs what
        it saved untouched.
        """
        scores = self.scores(q, k, time)
        top = scores.amax(dim=-1, keepdim=True)  # (bh, time, 1)
        exps = (scores - top).exp2() if torch.is_grad_enabled() else scores.sub_(top).exp2_()
        return exps, top, exps.sum(dim=-1, keepdim=True)

    def weights(self, q: torch.Tensor, k: torch.Tensor, time: int, lse: torch.Tensor | None = None):
        """softmax(q k^T / sqrt(hw) + causal mask) by row, and each row's log-sum-exp (base 2).
        With `lse` (from forward): exp2(scores - lse), the weights forward had, in one pass."""
        if lse is None:
            exps, top, total = self.exponentials(q, k, time)
            return exps / total, top + torch.log2(total)
        scores = self.scores(q, k, time)
        return (scores - lse).exp2() if torch.is_grad_enabled() else scores.sub_(lse).exp2_(), lse

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            raise StateError("CausalSelfAttention.backward called before forward (each forward allows one backward)")
        rows, q, k, v, lse, dropped, merged, batch, time = self.cache
        self.cache = None  # dropped once used: memory (see plugins/activations.py)
        g = grad_output.reshape(batch * time, self.width)  # (batch time, width)
        self.out_weight.grad.addmm_(merged.T, g)  # (width, width)
        self.out_bias.grad += g.sum(0)
        g_merged = g @ self.out_weight.value.T  # (batch time, width)
        # sum_j g_w[i, j] w[i, j] = g_out[i] . out[i] (out = w v): a row's dot in the softmax
        # backward, from the outputs instead of the (time, time) weights
        dot = (g_merged * merged).view(batch, time, self.heads, self.head_width).sum(-1)  # (batch, time, heads)
        dot = dot.transpose(1, 2).reshape(batch * self.heads, time, 1)  # (bh, time, 1)
        g_heads = g_merged.view(batch, time, self.heads, self.head_width).transpose(1, 2).reshape(
            batch * self.heads, time, self.head_width)  # (bh, time, hw)
        weights, _ = self.weights(q, k, time, lse)  # (bh, time, time), as forward had them
        used = weights if dropped is None else weights * dropped
        grads = q.new_empty(3, *q.shape)  # d q, d k, d v: (3, bh, time, hw)
        torch.bmm(used.mT, g_heads, out=grads[2])
        g_scores = torch.bmm(g_heads, v.mT)  # (bh, time, time): d weights
        if dropped is not None:
            g_scores.mul_(dropped)
        g_scores.sub_(dot).mul_(weights)  # the softmax backward: w * (g - dot)
        del weights, used
        torch.bmm(g_scores, k, out=grads[0])
        torch.bmm(g_scores.mT, q, out=grads[1])
        grads[:2].mul_(self.scale)  # the scale on the product
        g_qkv = self.merge_heads(grads, batch, time, parts=3)  # (batch time, 3 width)
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
        """forward while the cache is on: (batch, time, width), as `decoding` computes it."""
        batch, time, width = x.shape
        return self.decoding(batch, x)(x.reshape(batch * time, width)).view(batch, time, width)

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py): the new tokens' outputs, attending
        over every position kept so far and themselves; (batch time, width) rows, nothing kept."""
        heads, head_width, width, context = self.heads, self.head_width, self.width, self.context
        qkv_weight, qkv_bias = self.qkv_weight.value, self.qkv_bias.value
        out_weight, out_bias = self.out_weight.value, self.out_bias.value
        alpha, no_mask = self.scale * LOG2_E, like.new_tensor(0.0)
        addmm, baddbmm, bmm = torch.addmm, torch.baddbmm, torch.bmm

        def decode(rows: torch.Tensor) -> torch.Tensor:
            time = rows.shape[0] // batch
            start, end = self.kept, self.kept + time
            if end > context:
                raise ShapeError(f"attention: the key/value cache holds {context} positions, {end} asked for")
            qkv = addmm(qkv_bias, rows, qkv_weight)  # (batch time, 3 width)
            if batch * time == 1:  # one row: q | k | v by head is already its layout
                qkv = qkv.view(3, heads, 1, head_width)
            else:
                qkv = self.split_heads(qkv, batch, time)  # (3, bh, time, hw)
            # NOTE: narrow, not [:, :, a:b]: one call instead of one per dimension (a token's
            # whole attention is a few dozen calls, so each counts)
            kv = self.kv
            kv.narrow(2, start, time).copy_(qkv.narrow(0, 1, 2))
            self.kept = end
            keys, values = kv.narrow(2, 0, end)  # each (bh, end, hw)
            # query start + i sees keys 0 .. start + i; a single new token sees every key
            mask = no_mask if time == 1 else self.mask(end, rows)[start:end, :end]
            scores = baddbmm(mask, qkv[0], keys.mT, alpha=alpha)  # (bh, time, end)
            exps = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp2_()  # as in exponentials()
            out = bmm(exps, values).div_(exps.sum(dim=-1, keepdim=True))  # (bh, time, hw)
            # one position's heads, (batch heads, 1, hw), are already its (batch, width) row
            merged = out.view(batch, width) if time == 1 else self.merge_heads(out, batch, time)
            return addmm(out_bias, merged, out_weight)  # (batch time, width)
        return decode

    def parameters(self) -> list[Parameter]:
        return [self.qkv_weight, self.qkv_bias, self.out_weight, self.out_bias]

    __call__ = forward


@hookimpl
def register_layers(register):
    register("attention", CausalSelfAttention)
