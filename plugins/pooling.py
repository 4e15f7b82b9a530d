"""Layers that move pixels without weights: max and average pooling, nearest upsampling, flatten.

Each runs in either image layout (core/network/layout.py): batch-first (..., batch,
channels, height, width), torch's and the default for a layer called by hand, or
batch-innermost (..., channels, height, width, batch), which the assembler passes inside
a network (`layout="chwn"`), where every window slice below is a copy of long runs (a row
of the output times the batch). The leading dimensions (a run dimension in an ensemble)
come along untouched, so each declares `supports_runs`. kernel_size, stride and padding
are each an int or an (h, w) pair.
"""

from __future__ import annotations

from core import Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.layout import BATCH_FIRST, BATCH_INNERMOST
from core.network.shapes import check_positive, conv_out_size, pair

LAYOUTS = (BATCH_FIRST, BATCH_INNERMOST)


class _NoParameters:
    supports_runs = True
    takes_images = True  # first in a stack, it gets the data's rows as images (core.network.assemble)

    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def set_layout(self, layout: str) -> None:
        if layout not in LAYOUTS:
            raise ShapeError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.layout = layout
        self.tail = 1 if layout == BATCH_INNERMOST else 0  # dimensions after the width

    def image_size(self, x: torch.Tensor) -> tuple[int, int, int]:
        """(channels, height, width) of an image batch, or a ShapeError naming the layer."""
        if x.dim() < 4:
            raise ShapeError(
                f"{self.name} takes images (channels, height, width), got per-sample shape "
                f"{tuple(x.shape[1:])}; it cannot follow flatten or a linear layer"
            )
        return tuple(x.shape[-3:]) if not self.tail else tuple(x.shape[-4:-1])

    def at(self, rows: slice, cols: slice) -> tuple:
        """The index of (rows, cols) of every image, in this layout."""
        return (..., rows, cols) + (slice(None),) * self.tail

    def spatial_shape(self, shape: tuple[int, ...], h: int, w: int) -> tuple[int, ...]:
        """An image batch's shape with (h, w) for its height and width."""
        if self.tail:
            return (*shape[:-3], h, w, shape[-1])
        return (*shape[:-2], h, w)


class _Pool(_NoParameters):
    """Shared by both pools: window position (i, j) of every output is one strided slice.

    Pooling is kh * kw element-wise ops over those slices (views of the padded input), and
    its backward kh * kw additions into the same slices of a zero gradient: no im2col copy
    of the input, which for a per-channel window costs more than the pooling itself.
    """

    name = ""
    fill = 0.0  # what padding holds

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, *, layout: str = BATCH_FIRST):
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else pair("stride", stride)
        self.padding = pair("padding", padding, 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ShapeError(
                f"{self.name} padding must be at most half the kernel on each axis, "
                f"kernel_size // 2 = {tuple(k // 2 for k in self.kernel_size)}, got {padding!r}"
            )
        self.set_layout(layout)
        self.in_shape: torch.Size | None = None

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """x with `padding` pixels of `fill` on each side (x itself without padding)."""
        _, h, w = self.image_size(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        self.in_shape = x.shape
        self.in_hw = (h, w)
        self.out_hw = (conv_out_size(h, kh, sh, ph, 1), conv_out_size(w, kw, sw, pw, 1))
        if min(self.out_hw) < 1:
            raise ShapeError(f"{self.name} window {kh}x{kw} does not fit a {h}x{w} input "
                             f"with padding {ph}x{pw}")
        if not (ph or pw):
            return x
        out = x.new_full(self.spatial_shape(x.shape, h + 2 * ph, w + 2 * pw), self.fill)
        out[self.at(slice(ph, ph + h), slice(pw, pw + w))] = x
        return out

    def windows(self, padded: torch.Tensor):
        """The kh * kw slices (views), one per window position, in row-major order."""
        (oh, ow), (sh, sw) = self.out_hw, self.stride
        for i in range(self.kernel_size[0]):
            for j in range(self.kernel_size[1]):
                yield padded[self.at(slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))]

    def unpadded_zeros(self, like: torch.Tensor) -> torch.Tensor:
        (h, w), (ph, pw) = self.in_hw, self.padding
        return like.new_zeros(self.spatial_shape(self.in_shape, h + 2 * ph, w + 2 * pw))

    def crop(self, padded: torch.Tensor) -> torch.Tensor:
        (h, w), (ph, pw) = self.in_hw, self.padding
        return padded[self.at(slice(ph, ph + h), slice(pw, pw + w))] if (ph or pw) else padded


class MaxPool2d(_Pool):
    """Max over each kernel_size window (stride defaults to the window); gradient to the
    first maximum, as torch's (padding never wins; a window with NaN sends it to its last NaN)."""

    name = "maxpool2d"
    fill = float("-inf")  # padding never wins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = self.padded(x)
        if self.kernel_size == self.stride == (2, 2):
            return self._pairs(padded)
        windows = list(self.windows(padded))  # kh*kw views, each like the output
        best = windows[0]
        for window in windows[1:]:
            best = torch.maximum(best, window)  # not out=: the kit checks this forward with autograd
        # Which window position won, as one byte (not torch's int64 indices): as torch's max
        # pooling, the first of equal maxima among the real pixels (padding never wins, even
        # a tie of -inf), so positions are written last to first; and in a window holding
        # NaN (the output NaN), its last NaN.
        self.index_dtype = torch.uint8 if len(windows) <= 256 else torch.int32
        self.first = torch.full_like(best, len(windows) - 1, dtype=self.index_dtype)
        real = self.real_pixels(best.device) if any(self.padding) else [True] * len(windows)
        for position in range(len(windows) - 2, -1, -1):
            self.first.masked_fill_((windows[position] == best) & real[position], position)
        if best.isnan().any():  # rare: one reduction of the output decides it
            for position, window in enumerate(windows):
                self.first.masked_fill_(window.isnan(), position)  # padding is never NaN
        return best

    def real_pixels(self, device) -> list[torch.Tensor]:
        """For each window position, (oh, ow) (with a trailing 1 batch-innermost): whether
        that pixel of each window is real, not padding."""
        (oh, ow), (kh, kw), (sh, sw), (ph, pw) = self.out_hw, self.kernel_size, self.stride, self.padding
        h, w = self.in_hw

        def inside(offset, count, step, pad, size):
            at = torch.arange(count, device=device) * step + offset  # padded coordinates
            return (at >= pad) & (at < pad + size)

        shape = (oh, ow) + (1,) * self.tail
        return [(inside(i, oh, sh, ph, h).view(oh, 1) & inside(j, ow, sw, pw, w)).view(shape)
                for i in range(kh) for j in range(kw)]

    def _pairs(self, padded: torch.Tensor) -> torch.Tensor:
        """The usual 2x2 window, stride 2, in two pairwise steps: the larger of each pair of
        columns, then of each pair of those rows (half the work of four window views)."""
        oh, ow = self.out_hw
        padded = padded[self.at(slice(0, 2 * oh), slice(0, 2 * ow))]
        left, right = padded[self.at(slice(None), slice(0, None, 2))], padded[self.at(slice(None), slice(1, None, 2))]
        columns = torch.maximum(left, right)  # (..., 2*oh, ow, ...)
        top, bottom = columns[self.at(slice(0, None, 2), slice(None))], columns[self.at(slice(1, None, 2), slice(None))]
        best = torch.maximum(top, bottom)
        # Ties go to the left column and the top row: the first maximum. A NaN wins over
        # anything before it (torch's rule: the window's last NaN), checked only when the
        # output holds one. Padding (the first column and row with padding 1) never wins.
        right_won, bottom_won = right > left, bottom > top
        if best.isnan().any():
            right_won |= right.isnan()
            bottom_won |= bottom.isnan()
        ph, pw = self.padding
        if pw:
            right_won[self.at(slice(None), 0)] = True  # the left of the first pair is padding
        if ph:
            bottom_won[self.at(0, slice(None))] = True  # the top of the first pair of rows is padding
        # Kept as bytes for backward (a bool operand converts slowly): which column won in
        # each pair of columns, which row in each pair of rows
        self.pair_masks = right_won.view(torch.uint8), bottom_won.view(torch.uint8)
        return best

    def _pairs_backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        """_pairs' adjoint: the output's gradient split between the rows, then each row's
        between its columns; every pixel of the pairs written once (g * won, g - that)."""
        right_won, bottom_won = self.pair_masks
        self.pair_masks = None  # dropped once used: memory
        (oh, ow), (h, w), (ph, pw) = self.out_hw, self.in_hw, self.padding
        height, width = h + 2 * ph, w + 2 * pw
        shape = self.spatial_shape(self.in_shape, height, width)
        # a last odd row or column belongs to no window: zeros then
        grad = grad_output.new_zeros(shape) if (2 * oh, 2 * ow) != (height, width) else grad_output.new_empty(shape)
        bottom = grad_output * bottom_won  # like the output
        top = grad_output - bottom
        for row, part in ((0, top), (1, bottom)):
            won = right_won[self.at(slice(row, None, 2), slice(None))]
            right = grad[self.at(slice(row, 2 * oh, 2), slice(1, 2 * ow, 2))]
            torch.mul(part, won, out=right)
            torch.sub(part, right, out=grad[self.at(slice(row, 2 * oh, 2), slice(0, 2 * ow, 2))])
        return grad

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("MaxPool2d.backward called before forward (each forward allows one backward)")
        if self.kernel_size == self.stride == (2, 2):
            grad = self.crop(self._pairs_backward(grad_output))
            self.in_shape = None
            return grad
        first, self.first = self.first, None  # dropped once used: memory (see plugins/activations.py)
        grad = self.unpadded_zeros(grad_output)  # like the padded input
        # Each output's gradient goes to its window's winner: window position p's slice of
        # the gradient gets it where p won. Windows that never overlap (stride >= kernel)
        # write each slice once; overlapping ones add.
        overlap = any(k > s for k, s in zip(self.kernel_size, self.stride))
        for position, place in enumerate(self.windows(grad)):
            won = (first == position).view(torch.uint8)  # NOTE: bytes: a bool operand converts slowly
            if overlap:
                place += grad_output * won
            else:
                torch.mul(grad_output, won, out=place)
        grad = self.crop(grad)
        self.in_shape = None
        return grad


class AvgPool2d(_Pool):
    """Mean over each kernel_size window (stride defaults to the window); padding counts as 0."""

    name = "avgpool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows = self.windows(self.padded(x))
        total = next(windows).clone()  # like the output
        for window in windows:
            total += window
        return total.div_(self.kernel_size[0] * self.kernel_size[1])

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("AvgPool2d.backward called before forward (each forward allows one backward)")
        grad = self.unpadded_zeros(grad_output)
        share = grad_output / (self.kernel_size[0] * self.kernel_size[1])
        for window in self.windows(grad):
            window += share
        grad = self.crop(grad)
        self.in_shape = None  # one backward per forward, as every layer (README, "The contracts")
        return grad


class Upsample(_NoParameters):
    """Nearest-neighbour upsampling by an integer scale_factor: each pixel becomes a block."""

    name = "upsample"

    def __init__(self, scale_factor: int = 2, *, layout: str = BATCH_FIRST):
        check_positive(scale_factor=scale_factor)
        self.scale_factor = scale_factor
        self.set_layout(layout)
        self.in_hw: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = self.image_size(x)
        self.in_hw, s = (h, w), self.scale_factor
        lead, tail = x.shape[:x.dim() - 2 - self.tail], x.shape[x.dim() - self.tail:]
        blocks = x.reshape(*lead, h, 1, w, 1, *tail).expand(*lead, h, s, w, s, *tail)  # a view
        return blocks.reshape(self.spatial_shape(x.shape, h * s, w * s))

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_hw is None:
            raise StateError("Upsample.backward called before forward (each forward allows one backward)")
        (h, w), s = self.in_hw, self.scale_factor
        self.in_hw = None  # one backward per forward, as every layer
        g = grad_output
        lead, tail = g.shape[:g.dim() - 2 - self.tail], g.shape[g.dim() - self.tail:]
        blocks = g.reshape(*lead, h, s, w, s, *tail)
        return blocks.sum(dim=(-3 - self.tail, -1 - self.tail))  # like the input


class Flatten(_NoParameters):
    """Every dimension after the batch into one: (batch, c, h, w) -> (batch, c*h*w).

    Batch-innermost, (..., c, h, w, batch) -> (..., batch, c*h*w) is a transposed view: a
    linear layer after it multiplies by it as it is (BLAS reads either orientation)."""

    name = "flatten"

    def __init__(self, runs: int | None = None, *, layout: str = BATCH_FIRST):
        self.start = 1 if runs is None else 2  # the batch is dimension 0, or 1 after the runs
        self.set_layout(layout)
        self.in_shape: torch.Size | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.in_shape = x.shape
        if self.tail and x.dim() >= 4:  # (..., c, h, w, batch) -> (..., batch, c*h*w)
            return x.reshape(*x.shape[:-4], -1, x.shape[-1]).mT
        return x.flatten(self.start)  # a view when x is contiguous

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise StateError("Flatten.backward called before forward (each forward allows one backward)")
        shape, self.in_shape = self.in_shape, None  # one backward per forward, as every layer
        if self.tail and len(shape) >= 4:
            return grad_output.mT.reshape(shape)  # a copy: the batch goes back innermost
        return grad_output.reshape(shape)


@hookimpl
def register_layers(register):
    register("maxpool2d", MaxPool2d)
    register("avgpool2d", AvgPool2d)
    register("upsample", Upsample)
    register("flatten", Flatten)
