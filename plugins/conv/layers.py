"""Convolution and transposed convolution layers: parameters, shapes, the algorithm chosen.

Weights are laid out as torch's: conv2d (out, in, kh, kw), conv_transpose2d (in, out, kh,
kw), so a torch layer's weights copy straight in. With `runs=R` a layer is R independent
layers with a leading run dimension on every parameter and on the images.

Inside a network images are batch-innermost, (..., channels, height, width, batch), and
the layer runs in that layout (`layout="chwn"`, which the assembler passes; see
core/network/layout.py). Called by hand it takes torch's (..., batch, channels, height,
width) by default and converts at its edges. The arithmetic lives in one module per
algorithm, chosen once when the layer is built (`algorithm`, shown by `--summary`):
  - winograd.py: F(4x4, 3x3), for a 3x3 kernel at stride 1 and dilation 1 with enough
    input channels;
  - im2col.py: one matrix product over im2col columns, for any kernel, stride, padding
    and dilation; and col2im for the transposed convolution.
"""

from __future__ import annotations

from core import Initializer, Parameter, ShapeError, StateError
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.layout import BATCH_FIRST, BATCH_INNERMOST, to_batch_first, to_batch_innermost
from core.network.shapes import check_positive, conv_out_size, pair
from plugins.conv import im2col, winograd

LAYOUTS = (BATCH_FIRST, BATCH_INNERMOST)


class _Convolution:
    """What both convolutions share: the checks, the weight and bias, the layouts at the edges."""

    supports_runs = True
    needs_input_grad = True  # Sequential sets it False on its first layer (core.network.protocols)
    takes_images = True  # first in a stack, it gets the data's rows as images (core.network.assemble)

    def setup(self, in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
              weight_shape, init, generator, dtype, device, runs, layout) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels)
        if layout not in LAYOUTS:
            raise ShapeError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair("kernel_size", kernel_size), pair("stride", stride)
        self.padding, self.dilation = pair("padding", padding, 0), pair("dilation", dilation)
        self.runs, self.layout = runs, layout
        lead = () if runs is None else (runs,)
        weight = torch.empty(*lead, *weight_shape, *self.kernel_size, dtype=dtype, device=device)
        area = self.kernel_size[0] * self.kernel_size[1]
        init(weight, in_channels * area, out_channels * area, generator)
        self.weight = Parameter.of(weight, "weight")
        self.bias = Parameter.of(torch.zeros(*lead, out_channels, dtype=dtype, device=device), "bias") \
            if bias else None
        self.cache = None

    def parameters(self) -> list[Parameter]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == BATCH_FIRST:
            self._check(x, -3)
            x = to_batch_innermost(x)
        self._check(x, -4)
        out_hw = self.out_size(*x.shape[-3:-1])
        bias = None if self.bias is None else self.bias.value
        y, self.cache = self.algorithm.forward(x, self.weight.value, bias, out_hw)
        return to_batch_first(y) if self.layout == BATCH_FIRST else y

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        if self.cache is None:
            raise StateError(f"{type(self).__name__}.backward called before forward "
                             f"(each forward allows one backward)")
        cache, self.cache = self.cache, None  # dropped once used: memory (see plugins/activations.py)
        if self.layout == BATCH_FIRST:
            grad_output = to_batch_innermost(grad_output)
        grad = self.algorithm.backward(grad_output, cache, self.weight.value, self.weight.grad,
                                       None if self.bias is None else self.bias.grad,
                                       self.needs_input_grad)
        if grad is None or self.layout == BATCH_INNERMOST:
            return grad
        return to_batch_first(grad)

    def _check(self, x: torch.Tensor, channel_dim: int) -> None:
        """A clear ShapeError unless x is an image batch of in_channels channels."""
        rank = 4 if self.runs is None else 5
        if x.dim() != rank or x.shape[channel_dim] != self.in_channels:
            if x.dim() < rank:
                got = f"per-sample shape {tuple(x.shape[rank - 3:])}" if x.dim() >= rank - 2 \
                    else f"shape {tuple(x.shape)}"
                raise ShapeError(f"{self.name} takes images of {self.in_channels} channels, "
                                 f"(channels, height, width) = ({self.in_channels}, h, w), got {got}: "
                                 f"this data has no images (put {self.name} after a layer that makes them)")
            c, h, w = (x.shape[-3:] if channel_dim == -3 else x.shape[-4:-1])
            raise ShapeError(f"{self.name} takes images of {self.in_channels} channels, "
                             f"(channels, height, width) = ({self.in_channels}, h, w), got "
                             f"per-sample shape {(c, h, w)}")


class Conv2d(_Convolution):
    """2-D convolution: weights (out, in, kh, kw) as torch's, bias zero (or none, bias=false).

    kernel_size, stride, padding and dilation are each an int or an (h, w) pair.
    """

    name = "conv2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        *,
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        runs: int | None = None,
        layout: str = BATCH_FIRST,
    ):
        self.setup(in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
                   (out_channels, in_channels), init, generator, dtype, device, runs, layout)
        # The algorithm, chosen once for these settings (cuDNN and oneDNN choose per shape too)
        if winograd.fits(self.kernel_size, self.stride, self.dilation, in_channels):
            self.algorithm = winograd.Winograd(self.padding)
        else:
            self.algorithm = im2col.Im2col(self.kernel_size, self.stride, self.padding, self.dilation)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        sizes = tuple(conv_out_size(n, k, s, p, d) for n, k, s, p, d in
                      zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation))
        if min(sizes) < 1:
            (kh, kw), (dh, dw), (ph, pw) = self.kernel_size, self.dilation, self.padding
            raise ShapeError(
                f"conv2d kernel {_text(self.kernel_size)} (dilation {_text(self.dilation)}) does "
                f"not fit a {h}x{w} input with padding {_text(self.padding)}: it needs at least "
                f"{_text((dh * (kh - 1) + 1 - 2 * ph, dw * (kw - 1) + 1 - 2 * pw))} pixels"
            )
        return sizes


class ConvTranspose2d(_Convolution):
    """2-D transposed convolution: weights (in, out, kh, kw) as torch's, bias zero (or none).

    kernel_size, stride, padding, output_padding and dilation are each an int or an (h, w) pair.
    """

    name = "conv_transpose2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        *,
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        runs: int | None = None,
        layout: str = BATCH_FIRST,
    ):
        self.setup(in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
                   (in_channels, out_channels), init, generator, dtype, device, runs, layout)
        self.output_padding = pair("output_padding", output_padding, 0)
        limit = tuple(max(s, d) for s, d in zip(self.stride, self.dilation))
        if any(op >= m for op, m in zip(self.output_padding, limit)):
            raise ShapeError(
                f"output_padding must be below max(stride, dilation) = {_text(limit)} on each "
                f"axis, got {output_padding!r}"
            )
        self.algorithm = im2col.TransposedIm2col(self.kernel_size, self.stride, self.padding,
                                                 self.dilation, self.output_padding)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        sizes = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op in
                      zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation,
                          self.output_padding))
        if min(sizes) < 1:
            raise ShapeError(
                f"conv_transpose2d with kernel {_text(self.kernel_size)}, stride "
                f"{_text(self.stride)}, padding {_text(self.padding)} gives an empty output from "
                f"a {h}x{w} input ({sizes[0]}x{sizes[1]}); lower the padding"
            )
        return sizes


def _text(size: tuple[int, int]) -> str:
    """(3, 3) -> '3', (2, 3) -> '2x3': sizes as a user writes them."""
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"
