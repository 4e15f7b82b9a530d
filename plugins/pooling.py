"""Layers that move pixels without weights: max and average pooling, nearest upsampling, flatten.

Images are (..., batch, channels, height, width); the leading dimensions (a run dimension
in an ensemble) come along untouched, so each declares `supports_runs`.
"""

from __future__ import annotations

from core import Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast

from plugins.conv import check_positive, conv_out_size, fold, unfold


class _NoParameters:
    supports_runs = True

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
    """Shared by both pools: each window becomes a column of unfold, channel by channel."""

    name = ""

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

    def windows(self, x: torch.Tensor, fill: float) -> torch.Tensor:
        """Every window of every channel as a column: (n * c, k * k, L); padding is `fill`."""
        c, h, w = image_size(self.name, x)
        k, s, p = self.kernel_size, self.stride, self.padding
        self.out_hw = (conv_out_size(h, k, s, p, 1), conv_out_size(w, k, s, p, 1))
        if min(self.out_hw) < 1:
            raise ShapeError(
                f"{self.name} window {k} does not fit a {h}x{w} input with padding {p}"
            )
        self.in_shape = x.shape
        planes = x.reshape(-1, 1, h, w)  # (n * c, 1, h, w)
        if p and fill != 0.0:  # unfold pads with zeros; max pooling must pad with -inf
            padded = planes.new_full((planes.shape[0], 1, h + 2 * p, w + 2 * p), fill)
            padded[..., p:p + h, p:p + w] = planes
            return unfold(padded, k, 1, 0, s)
        return unfold(planes, k, 1, p, s)

    def unwindows(self, cols: torch.Tensor) -> torch.Tensor:
        """unfold's adjoint: columns (n * c, k * k, L) back to the input's shape, overlaps summed."""
        h, w = self.in_shape[-2:]
        return fold(cols, (h, w), self.kernel_size, 1, self.padding, self.stride).view(self.in_shape)

    def pooled(self, values: torch.Tensor) -> torch.Tensor:
        return values.view(*self.in_shape[:-2], *self.out_hw)  # (..., c, oh, ow)


class MaxPool2d(_Pool):
    """Max over each kernel_size window (stride defaults to the window); gradient to the max."""

    name = "maxpool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, self.argmax = self.windows(x, float("-inf")).max(dim=1, keepdim=True)  # (n*c, 1, L)
        return self.pooled(values)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("MaxPool2d.backward called before forward")
        g = grad_output.reshape(self.argmax.shape)  # (n*c, 1, L)
        area = self.kernel_size * self.kernel_size
        cols = g.new_zeros(g.shape[0], area, g.shape[2]).scatter_(1, self.argmax, g)  # (n*c, k*k, L)
        return self.unwindows(cols)


class AvgPool2d(_Pool):
    """Mean over each kernel_size window (stride defaults to the window); padding counts as 0."""

    name = "avgpool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.windows(x, 0.0).mean(dim=1))

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("AvgPool2d.backward called before forward")
        area = self.kernel_size * self.kernel_size
        g = grad_output.reshape(-1, 1, grad_output.shape[-2] * grad_output.shape[-1]) / area
        return self.unwindows(g.expand(-1, area, -1))  # (n*c, k*k, L) -> input shape


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
            raise StateError("Upsample.backward called before forward")
        (h, w), s = self.in_hw, self.scale_factor
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
            raise StateError("Flatten.backward called before forward")
        return grad_output.reshape(self.in_shape)


@hookimpl
def register_layers(register):
    register("maxpool2d", MaxPool2d)
    register("avgpool2d", AvgPool2d)
    register("upsample", Upsample)
    register("flatten", Flatten)
