"""Convolution and transposed convolution, as matrix products over unfold and fold.

An image batch is (batch, channels, height, width); with `runs=R` it is R independent
layers with a leading run dimension, (runs, batch, channels, height, width), and each
parameter gets one too. Weights are laid out as torch's: conv2d (out, in, kh, kw),
conv_transpose2d (in, out, kh, kw), so a torch layer's weights copy straight in.

The one idea: `unfold` turns every receptive field into a column, so convolution is
`W.view(out, -1) @ unfold(x)`; `fold` is unfold's adjoint (it adds each column back where
it came from), so the input gradient is `fold(W.T @ grad)`. The transposed convolution is
the same two steps the other way round.
"""

from __future__ import annotations

from core import Initializer, Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.shapes import check_positive, conv_out_size


# NOTE: unfold/fold are the one torch.nn piece the from-scratch rule allows: they only move
# numbers (im2col/col2im); every product and every gradient below is written out here.
def unfold(x, kernel, dilation, padding, stride):
    """im2col: (n, c, h, w) -> (n, c * kernel * kernel, blocks)."""
    return torch.nn.functional.unfold(x, kernel, dilation, padding, stride)


def fold(cols, size, kernel, dilation, padding, stride):
    """col2im, unfold's adjoint: (n, c * kernel * kernel, blocks) -> (n, c, *size), summing overlaps."""
    return torch.nn.functional.fold(cols, size, kernel, dilation, padding, stride)


def check_image(layer: str, x: torch.Tensor, channels: int, runs: int | None) -> None:
    """A clear ShapeError unless x is (batch, channels, h, w), or (runs, batch, ...) with runs."""
    rank = 4 if runs is None else 5
    if x.dim() != rank or x.shape[-3] != channels:
        per_sample = tuple(x.shape[rank - 3:]) if x.dim() >= rank - 2 else tuple(x.shape)
        raise ShapeError(
            f"{layer} takes images of {channels} channels, (channels, height, width) = "
            f"({channels}, h, w), got per-sample shape {per_sample}"
        )


class _Convolution:
    """What both convolutions share: the checks, the weight and bias, the run dimension."""

    supports_runs = True
    takes_images = True  # first in a stack, it gets the data's rows as images (core.network.assemble)

    def setup(self, in_channels, out_channels, kernel_size, stride, padding, dilation, weight_shape,
              init, generator, dtype, device, runs) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels,
                       kernel_size=kernel_size, stride=stride, dilation=dilation)
        if not isinstance(padding, int) or padding < 0:
            raise ShapeError(f"padding must be an integer >= 0, got {padding!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.dilation, self.runs = stride, padding, dilation, runs
        lead = () if runs is None else (runs,)
        weight = torch.empty(*lead, *weight_shape, kernel_size, kernel_size, dtype=dtype, device=device)
        area = kernel_size * kernel_size
        init(weight, in_channels * area, out_channels * area, generator)
        self.weight = Parameter.of(weight, "weight")
        self.bias = Parameter.of(torch.zeros(*lead, out_channels, dtype=dtype, device=device), "bias")

    def _matrix(self) -> torch.Tensor:
        """The weight as a matrix: (..., out, in*k*k) for conv2d, (..., in, out*k*k) transposed."""
        return self.weight.value.flatten(-3)  # a view

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class Conv2d(_Convolution):
    """2-D convolution (square kernel): weights (out, in, kh, kw) as torch's, bias zero."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        *,
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        runs: int | None = None,
    ):
        self.setup(in_channels, out_channels, kernel_size, stride, padding, dilation,
                   (out_channels, in_channels), init, generator, dtype, device, runs)
        self.cols: torch.Tensor | None = None  # the unfolded input, for the weight gradient
        self.in_size: tuple[int, int] = (0, 0)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        oh, ow = conv_out_size(h, k, s, p, d), conv_out_size(w, k, s, p, d)
        if oh < 1 or ow < 1:
            raise ShapeError(
                f"conv2d kernel {k} (dilation {d}) does not fit a {h}x{w} input with padding {p}: "
                f"it needs at least {d * (k - 1) + 1 - 2 * p} pixels a side"
            )
        return oh, ow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image("conv2d", x, self.in_channels, self.runs)
        batch_shape, (h, w) = x.shape[:-3], x.shape[-2:]  # (batch,) or (runs, batch)
        oh, ow = self.out_size(h, w)
        cols = unfold(x.reshape(-1, self.in_channels, h, w),
                      self.kernel_size, self.dilation, self.padding, self.stride)  # (n, in*k*k, L)
        # NOTE: the batch goes into the product's columns, (..., in*k*k, batch*L): one large
        # matrix product per run instead of one small one per sample, and the weight
        # gradient below is one product too, with no per-sample temporary.
        self.cols = batch_major_to_columns(cols, batch_shape)  # (..., in*k*k, batch*L)
        self.in_size, self.batch_shape = (h, w), batch_shape
        y = torch.baddbmm(self.bias.value.unsqueeze(-1), self._matrix(), self.cols) if self.runs \
            else torch.addmm(self.bias.value.unsqueeze(-1), self._matrix(), self.cols)  # (..., out, batch*L)
        y = y.view(*batch_shape[:-1], self.out_channels, batch_shape[-1], oh, ow)
        return y.transpose(-4, -3)  # (..., batch, out, oh, ow): a view, channel-major in memory

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.cols is None:
            raise StateError("Conv2d.backward called before forward")
        g = grad_output.transpose(-4, -3)  # (..., out, batch, oh, ow): free when channel-major
        g = g.reshape(*g.shape[:-3], -1)  # (..., out, batch*L)
        if self.runs:
            self.weight.grad.view(*g.shape[:-1], -1).baddbmm_(g, self.cols.mT)  # (..., out, in*k*k)
        else:
            self.weight.grad.view(g.shape[0], -1).addmm_(g, self.cols.mT)
        self.bias.grad += g.sum(dim=-1)  # (..., out)
        grad_cols = self._matrix().mT @ g  # (..., in*k*k, batch*L)
        grad_x = fold(columns_to_batch_major(grad_cols, self.batch_shape), self.in_size,
                      self.kernel_size, self.dilation, self.padding, self.stride)  # (n, in, h, w)
        return grad_x.view(*self.batch_shape, self.in_channels, *self.in_size)


def batch_major_to_columns(cols: torch.Tensor, batch_shape: torch.Size) -> torch.Tensor:
    """unfold's (n, rows, L), n = (runs *) batch, as one matrix per run: (..., rows, batch*L)."""
    rows, blocks = cols.shape[-2:]
    by_run = cols.view(*batch_shape, rows, blocks).transpose(-3, -2)  # (..., rows, batch, L)
    return by_run.reshape(*batch_shape[:-1], rows, batch_shape[-1] * blocks)  # one copy


def columns_to_batch_major(cols: torch.Tensor, batch_shape: torch.Size) -> torch.Tensor:
    """The inverse: (..., rows, batch*L) back to fold's (n, rows, L)."""
    rows = cols.shape[-2]
    by_run = cols.view(*batch_shape[:-1], rows, batch_shape[-1], -1).transpose(-3, -2)
    return by_run.reshape(-1, rows, by_run.shape[-1])  # (n, rows, L), one copy


class ConvTranspose2d(_Convolution):
    """2-D transposed convolution (square kernel): weights (in, out, kh, kw) as torch's, bias zero."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        dilation: int = 1,
        *,
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        runs: int | None = None,
    ):
        if not isinstance(output_padding, int) or not 0 <= output_padding < max(stride, dilation):
            raise ShapeError(
                f"output_padding must be an integer in [0, max(stride, dilation)) = "
                f"[0, {max(stride, dilation)}), got {output_padding!r}"
            )
        self.output_padding = output_padding
        self.setup(in_channels, out_channels, kernel_size, stride, padding, dilation,
                   (in_channels, out_channels), init, generator, dtype, device, runs)
        self.input: torch.Tensor | None = None  # (..., batch, in, h*w), for the weight gradient
        self.in_hw: tuple[int, int] = (0, 0)
        self.out_hw: tuple[int, int] = (0, 0)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        sizes = tuple((n - 1) * s - 2 * p + d * (k - 1) + self.output_padding + 1 for n in (h, w))
        if min(sizes) < 1:
            raise ShapeError(
                f"conv_transpose2d with kernel {k}, stride {s}, padding {p} gives an empty "
                f"output from a {h}x{w} input ({sizes[0]}x{sizes[1]}); lower the padding"
            )
        return sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image("conv_transpose2d", x, self.in_channels, self.runs)
        batch_shape, (h, w) = x.shape[:-3], x.shape[-2:]
        self.in_hw, self.out_hw = (h, w), self.out_size(h, w)
        self.input = x.reshape(*batch_shape, self.in_channels, h * w)  # (..., batch, in, L)
        cols = self._matrix().mT.unsqueeze(-3) @ self.input  # (..., batch, out*k*k, L)
        y = fold(cols.reshape(-1, *cols.shape[-2:]), self.out_hw, self.kernel_size,
                 self.dilation, self.padding, self.stride)  # (n, out, oh, ow)
        y = y.view(*batch_shape, self.out_channels, *self.out_hw)
        return y + self.bias.value.unsqueeze(-1).unsqueeze(-1).unsqueeze(-4)  # bias (..., 1, out, 1, 1)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.input is None:
            raise StateError("ConvTranspose2d.backward called before forward")
        batch_shape = grad_output.shape[:-3]
        g = unfold(grad_output.reshape(-1, self.out_channels, *self.out_hw), self.kernel_size,
                   self.dilation, self.padding, self.stride)  # (n, out*k*k, L)
        g = g.view(*batch_shape, *g.shape[1:])  # (..., batch, out*k*k, L)
        per_sample = self.input @ g.mT  # (..., batch, in, out*k*k)
        self.weight.grad += per_sample.sum(dim=-3).view(self.weight.grad.shape)  # (..., in, out, k, k)
        self.bias.grad += grad_output.sum(dim=(-4, -2, -1))  # (..., out)
        grad_x = self._matrix().unsqueeze(-3) @ g  # (..., batch, in, L)
        return grad_x.view(*batch_shape, self.in_channels, *self.in_hw)



@hookimpl
def register_layers(register):
    register("conv2d", Conv2d)
    register("conv_transpose2d", ConvTranspose2d)
