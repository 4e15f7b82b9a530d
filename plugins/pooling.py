"""Layers that move pixels without weights: max and average pooling, nearest upsampling, flatten.

Images are (..., batch, channels, height, width); the leading dimensions (a run dimension
in an ensemble) come along untouched, so each declares `supports_runs`.
"""

from __future__ import annotations

import functools

from core import Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.shapes import check_positive, conv_out_size


class _NoParameters:
    supports_runs = True
    takes_images = True  # first in a stack, it gets the data's rows as images (core.network.assemble)

    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def image_size(layer: str, x: torch.Tensor) -> tuple[int, int, int]:
    """(channels, height, width) of an image batch, or a ShapeError naming the layer."""
    if x.dim() < 4:
        raise ShapeError(
            f"{layer} takes images (channels, height, width), got per-sample shape "
            f"{tuple(x.shape[1:])}; it cannot follow flatten or a linear layer"
        )
    return tuple(x.shape[-3:])


class _Pool(_NoParameters):
    """Shared by both pools: window position (i, j) of every output is one strided slice.

    Pooling is k * k element-wise ops over those slices (views of the padded input), and
    its backward k * k additions into the same slices of a zero gradient: no im2col copy
    of the input, which for a per-channel window costs more than the pooling itself.
    """

    name = ""
    fill = 0.0  # what padding holds

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        stride = kernel_size if stride is None else stride
        check_positive(kernel_size=kernel_size, stride=stride)
        if not isinstance(padding, int) or not 0 <= padding <= kernel_size // 2:
            raise ShapeError(
                f"{self.name} padding must be an integer in [0, kernel_size // 2] = "
                f"[0, {kernel_size // 2}], got {padding!r}"
            )
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.in_shape: torch.Size | None = None

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """x with `padding` pixels of `fill` on each side (x itself without padding)."""
        c, h, w = image_size(self.name, x)
        k, s, p = self.kernel_size, self.stride, self.padding
        self.in_shape = x.shape
        self.out_hw = (conv_out_size(h, k, s, p, 1), conv_out_size(w, k, s, p, 1))
        if min(self.out_hw) < 1:
            raise ShapeError(f"{self.name} window {k} does not fit a {h}x{w} input with padding {p}")
        if not p:
            return x
        out = x.new_full((*x.shape[:-2], h + 2 * p, w + 2 * p), self.fill)
        out[..., p:p + h, p:p + w] = x
        return out

    def windows(self, padded: torch.Tensor):
        """The k * k slices (views), one per window position, each (..., c, oh, ow)."""
        (oh, ow), s = self.out_hw, self.stride
        for i in range(self.kernel_size):
            for j in range(self.kernel_size):
                yield padded[..., i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]

    def unpadded_zeros(self, like: torch.Tensor) -> torch.Tensor:
        h, w = self.in_shape[-2:]
        p = self.padding
        return like.new_zeros((*self.in_shape[:-2], h + 2 * p, w + 2 * p))

    def crop(self, padded: torch.Tensor) -> torch.Tensor:
        h, w = self.in_shape[-2:]
        p = self.padding
        return padded[..., p:p + h, p:p + w] if p else padded


class MaxPool2d(_Pool):
    """Max over each kernel_size window (stride defaults to the window); gradient to the first max."""

    name = "maxpool2d"
    fill = float("-inf")  # padding never wins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = self.padded(x)
        if self.kernel_size == self.stride == 2:
            return self._pairs(padded)
        windows = list(self.windows(padded))  # k*k views, each (..., c, oh, ow)
        best = windows[0]
        for window in windows[1:]:
            best = torch.maximum(best, window)  # not out=: the kit checks this forward with autograd
        # Which window position won, as one byte (not torch's int64 indices): as torch's max
        # pooling, the first of equal maxima among the real pixels (padding never wins, even
        # a tie of -inf), so positions are written last to first; and in a window holding
        # NaN (the output NaN), its last NaN.
        self.index_dtype = torch.uint8 if len(windows) <= 256 else torch.int32
        self.first = torch.full_like(best, len(windows) - 1, dtype=self.index_dtype)
        real = self.real_pixels(best.device) if self.padding else [True] * len(windows)
        for position in range(len(windows) - 2, -1, -1):
            self.first.masked_fill_((windows[position] == best) & real[position], position)
        if best.isnan().any():  # rare: one reduction of the output decides it
            for position, window in enumerate(windows):
                self.first.masked_fill_(window.isnan(), position)  # padding is never NaN
        return best

    def real_pixels(self, device) -> list[torch.Tensor]:
        """For each window position, (oh, ow): whether that pixel of each window is real, not padding."""
        (oh, ow), k, s, p = self.out_hw, self.kernel_size, self.stride, self.padding
        h, w = self.in_shape[-2:]

        def inside(offset, count, size):
            at = torch.arange(count, device=device) * s + offset  # padded coordinates
            return (at >= p) & (at < p + size)

        return [inside(i, oh, h).view(oh, 1) & inside(j, ow, w) for i in range(k) for j in range(k)]

    def _pairs(self, padded: torch.Tensor) -> torch.Tensor:
        """The usual 2x2 window, stride 2, in two pairwise steps: the larger of each pair of
        columns, then of each pair of those rows (half the work of four window views)."""
        oh, ow = self.out_hw
        padded = padded[..., :2 * oh, :2 * ow]
        left, right = padded[..., 0::2], padded[..., 1::2]  # (..., c, 2*oh, ow)
        columns = torch.maximum(left, right)
        top, bottom = columns[..., 0::2, :], columns[..., 1::2, :]  # (..., c, oh, ow)
        best = torch.maximum(top, bottom)
        # Ties go to the left column and the top row: the first maximum. A NaN wins over
        # anything before it (torch's rule: the window's last NaN), checked only when the
        # output holds one. Padding (the first column and row with padding 1) never wins.
        right_won, bottom_won = right > left, bottom > top
        if best.isnan().any():
            right_won |= right.isnan()
            bottom_won |= bottom.isnan()
        if self.padding:
            right_won[..., 0] = True  # the left of the first pair is padding
            bottom_won[..., 0, :] = True  # the top of the first pair of rows is padding
        right_won, bottom_won = right_won.view(torch.uint8), bottom_won.view(torch.uint8)
        # The winner's position 2 * row + column, as one byte: the top row's column, or
        # 2 + the bottom row's (written as top + bottom_won * (bottom - top + 2), whose
        # byte arithmetic wraps around to the same numbers).
        top_column, bottom_column = right_won[..., 0::2, :], right_won[..., 1::2, :]
        self.first = top_column + bottom_won * (bottom_column - top_column + 2)
        return best

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("MaxPool2d.backward called before forward (each forward allows one backward)")
        grad = self.unpadded_zeros(grad_output)  # (..., c, h + 2p, w + 2p)
        first, self.first = self.first, None  # dropped once used: memory (see plugins/activations.py)
        # Each output's gradient goes to its window's winner: the winner's place in the
        # flat padded gradient is its plane's start + its window's corner + its offset in
        # the window (made here, for this backward only, rather than kept from forward).
        (oh, ow), k, s = self.out_hw, self.kernel_size, self.stride
        height, width = grad.shape[-2:]
        device = grad_output.device
        arange = functools.partial(torch.arange, device=device)
        plane = arange(grad.numel() // (height * width)).view(*grad.shape[:-2], 1, 1) * (height * width)
        corner = arange(oh).view(oh, 1) * (s * width) + arange(ow) * s  # (oh, ow)
        offset = torch.tensor([i * width + j for i in range(k) for j in range(k)], device=device)
        index = ((plane + corner) + offset[first.long()]).reshape(-1)  # (... * c * oh * ow,)
        values = grad_output.reshape(-1)
        if k <= s:  # windows never overlap: every place is written at most once
            grad.view(-1).scatter_(0, index, values)
        else:
            grad.view(-1).index_add_(0, index, values)
        grad = self.crop(grad)
        self.in_shape = None
        return grad


class AvgPool2d(_Pool):
    """Mean over each kernel_size window (stride defaults to the window); padding counts as 0."""

    name = "avgpool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows = self.windows(self.padded(x))
        total = next(windows).clone()  # (..., c, oh, ow)
        for window in windows:
            total += window
        return total.div_(self.kernel_size * self.kernel_size)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("AvgPool2d.backward called before forward (each forward allows one backward)")
        grad = self.unpadded_zeros(grad_output)
        share = grad_output / (self.kernel_size * self.kernel_size)
        for window in self.windows(grad):
            window += share
        grad = self.crop(grad)
        self.in_shape = None  # one backward per forward, as every layer (README, "The contracts")
        return grad


class Upsample(_NoParameters):
    """Nearest-neighbour upsampling by an integer scale_factor: each pixel becomes a block."""

    def __init__(self, scale_factor: int = 2):
        check_positive(scale_factor=scale_factor)
        self.scale_factor = scale_factor
        self.in_hw: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = image_size("upsample", x)
        self.in_hw, s = (h, w), self.scale_factor
        blocks = x.unsqueeze(-1).unsqueeze(-3).expand(*x.shape[:-2], h, s, w, s)  # a view
        return blocks.reshape(*x.shape[:-2], h * s, w * s)  # (..., c, h*s, w*s)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_hw is None:
            raise StateError("Upsample.backward called before forward (each forward allows one backward)")
        (h, w), s = self.in_hw, self.scale_factor
        self.in_hw = None  # one backward per forward, as every layer
        blocks = grad_output.reshape(*grad_output.shape[:-2], h, s, w, s)
        return blocks.sum(dim=(-3, -1))  # (..., c, h, w)


class Flatten(_NoParameters):
    """Every dimension after the batch into one: (batch, c, h, w) -> (batch, c*h*w)."""

    def __init__(self, runs: int | None = None):
        self.start = 1 if runs is None else 2  # the batch is dimension 0, or 1 after the runs
        self.in_shape: torch.Size | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.in_shape = x.shape
        return x.flatten(self.start)  # a view when x is contiguous

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("Flatten.backward called before forward (each forward allows one backward)")
        shape, self.in_shape = self.in_shape, None  # one backward per forward, as every layer
        return grad_output.reshape(shape)


@hookimpl
def register_layers(register):
    register("maxpool2d", MaxPool2d)
    register("avgpool2d", AvgPool2d)
    register("upsample", Upsample)
    register("flatten", Flatten)
