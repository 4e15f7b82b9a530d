"""Convolution and transposed convolution, as matrix products over unfold and fold.

An image batch is (batch, channels, height, width); with `runs=R` it is R independent
layers with a leading run dimension, (runs, batch, channels, height, width), and each
parameter gets one too. Weights are laid out as torch's: conv2d (out, in, kh, kw),
conv_transpose2d (in, out, kh, kw), so a torch layer's weights copy straight in.

The one idea: im2col turns every receptive field into a column, so convolution is
`W.view(out, -1) @ cols`; col2im is its adjoint (it adds each column back where it came
from), so the input gradient is `col2im(W.T @ grad)`. conv2d does both through one strided
view of the padded input (`receptive_fields`): a copy out of it is im2col, k*k additions
into it col2im (torch's CPU unfold/fold cost several times more on small images). The
transposed convolution is the same two steps the other way round, through unfold and fold.
"""

from __future__ import annotations

from core import Initializer, Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.shapes import check_positive, conv_out_size
from core.network.matmul import add_matmul_

# At most this many numbers of im2col columns per run at once (1 MiB in float32): a batch
# of 256 4x4 images of 16 channels has 3.4 MiB of columns for a 3x3 kernel, on top of
# everything the step keeps.
COLUMN_BUDGET = 2**18


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
    needs_input_grad = True  # Sequential sets it False on its first layer (core.network.protocols)
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
        self.padded: torch.Tensor | None = None  # the padded input, for the weight gradient
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
        # NOTE: the batch goes into the product's columns, (..., in*k*k, batch*L): one large
        # matrix product per run instead of one small one per sample, and the weight
        # gradient below is one product too, with no per-sample temporary. The columns are
        # copied straight out of a strided view of the (padded) input, in that layout.
        self.in_size, self.out_hw, self.batch_shape = (h, w), (oh, ow), batch_shape
        self.padded = self._pad(x)  # kept for backward: the columns are k*k times larger
        batch, share = batch_shape[-1], self._share(self.padded)
        if share >= batch:
            y = self._product(self.padded)
            y = y.contiguous() if self.stride == 1 else y  # dense again: what follows runs on long rows
            return y.transpose(-4, -3)  # (..., batch, out, oh, ow): a view, channel-major in memory
        # A large batch (evaluation) a share at a time: the columns of the whole would be
        # k*k times its input (a 30-run ensemble on digits' training set: over 500 MB).
        y = self.padded.new_empty((*batch_shape[:-1], self.out_channels, batch, oh, ow))
        for start in range(0, batch, share):
            y[..., start:start + share, :, :] = self._product(self.padded[..., start:start + share, :, :, :])
        return y.transpose(-4, -3)

    def _product(self, padded: torch.Tensor) -> torch.Tensor:
        """The convolution of a (share of the) batch, (..., out, batch, oh, ow) (a strided view)."""
        cols = self._columns(padded)  # (..., in*k*k, batch*L')
        y = torch.baddbmm(self.bias.value.unsqueeze(-1), self._matrix(), cols) if self.runs \
            else torch.addmm(self.bias.value.unsqueeze(-1), self._matrix(), cols)  # (..., out, batch*L')
        del cols  # before the caller's dense copy: the step's peak of memory
        return y.view(*y.shape[:-1], padded.shape[-4], self.out_hw[0], -1)[..., :self.out_hw[1]]

    def _share(self, padded: torch.Tensor) -> int:
        """How many images' columns at once: COLUMN_BUDGET numbers per run (at least one image)."""
        return max(1, COLUMN_BUDGET // (self._matrix().shape[-1] * self._columns_per_image(padded)))

    def _columns_per_image(self, padded: torch.Tensor) -> int:
        """L': output positions per image, wide rows (every column of the padded width) with stride 1."""
        oh, ow = self.out_hw
        return oh * (padded.shape[-1] if self.stride == 1 else ow)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """The padded input, with spare zero rows below in the wide layout (see `_fields`)."""
        if self.stride != 1:
            return pad(x, self.padding, 0)
        reach = self.dilation * (self.kernel_size - 1)  # how far a wide row reads past its end
        width = x.shape[-1] + 2 * self.padding
        return pad(x, self.padding, -(-reach // width), always_copy=True)

    def _fields(self, padded: torch.Tensor) -> torch.Tensor:
        """The receptive fields as a view (..., in, k, k, batch, L').

        With stride 1, "wide" output rows: L' = oh * padded width, a row's every column
        computed, the last (k - 1) * dilation of them wasted and dropped. Then each kernel
        offset's pixels are one contiguous run of the padded image (long copies, where the
        narrow rows of a 4x4 image make four-element ones); the spare rows below keep the
        last runs inside the tensor. Otherwise L' = oh * ow, through `receptive_fields`.
        """
        if self.stride != 1:
            return receptive_fields(padded, self.kernel_size, self.dilation, self.stride, self.out_hw)
        *lead, sb, sc, sh, sw = padded.stride()
        *lead_shape, batch, c, _, width = padded.shape
        k, d = self.kernel_size, self.dilation
        return padded.as_strided((*lead_shape, c, k, k, batch, self.out_hw[0] * width),
                                 (*lead, sc, d * sh, d * sw, sb, sw), padded.storage_offset())

    def _columns(self, padded: torch.Tensor) -> torch.Tensor:
        """im2col: every receptive field of the padded input a column, (..., in*k*k, batch*L')."""
        fields = self._fields(padded)
        lead = fields.shape[:1] if self.runs else ()
        return fields.reshape(*lead, self._matrix().shape[-1], -1)  # one copy

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        if self.padded is None:
            raise StateError("Conv2d.backward called before forward (each forward allows one backward)")
        padded, self.padded = self.padded, None  # dropped once used: memory (see plugins/activations.py)
        g = grad_output.transpose(-4, -3)  # (..., out, batch, oh, ow): free when channel-major
        if self.stride == 1:  # wide rows: the wasted columns get a zero gradient
            wide = g.new_zeros((*g.shape[:-1], padded.shape[-1]))
            wide[..., :g.shape[-1]] = g
            g = wide
        g = g.reshape(*g.shape[:-3], -1)  # (..., out, batch*L')
        self.bias.grad += g.sum(dim=-1)  # (..., out): one contiguous sum (the wasted columns are 0)
        # The weight gradient, from the columns computed again (cheaper in memory than
        # keeping them), a share of the batch at a time: they are k*k times the input.
        weight_grad = self.weight.grad.view(*g.shape[:-1], -1)  # (..., out, in*k*k)
        batch, per_image, share = padded.shape[-4], self._columns_per_image(padded), self._share(padded)
        for start in range(0, batch, share):
            cols = self._columns(padded[..., start:start + share, :, :, :])  # (..., in*k*k, share*L')
            add_matmul_(weight_grad, g[..., start * per_image:(start + share) * per_image], cols.mT)
        del cols
        if not self.needs_input_grad:  # the first layer: nobody reads its input gradient
            return None
        # col2im, the columns' adjoint: the columns' gradient W.T @ g, one kernel row of
        # offsets and a share of the batch at a time (memory: all of it is k*k times the
        # input), each offset's part added back where its columns came from.
        grad_padded = torch.zeros_like(padded, memory_format=torch.contiguous_format)
        rows = 2 if self.stride == 1 else 3  # the dimensions after the kernel offsets
        k, lead = self.kernel_size, self.weight.value.shape[:-4]  # (runs,) or ()
        # W as (..., k, k, in, out): a kernel row's matrices, (k*in, out), are contiguous
        per_offset = self.weight.value.movedim((-4, -3), (-1, -2)).contiguous()
        for start in range(0, batch, share):
            fields = self._fields(grad_padded[..., start:start + share, :, :, :])  # (..., in, k, k, share, ...)
            part = g[..., start * per_image:(start + share) * per_image]  # (..., out, share*L')
            for i in range(k):
                row_grad = per_offset[..., i, :, :, :].reshape(*lead, -1, self.out_channels) @ part
                row_grad = row_grad.view(*lead, k, self.in_channels, *fields.shape[-rows:])
                for j in range(k):
                    # NOTE: not `fields[at] += ...`: Python's item assignment after it would
                    # copy the sum onto itself once more. Offsets overlap: one at a time.
                    place = fields[(..., i, j) + (slice(None),) * rows]  # a view into grad_padded
                    place += row_grad[(..., j, slice(None)) + (slice(None),) * rows]
        p, (h, w) = self.padding, self.in_size
        return grad_padded[..., p:p + h, p:p + w]


def pad(x: torch.Tensor, p: int, below: int = 0, *, always_copy: bool = False) -> torch.Tensor:
    """x with p zeros on each side of its last two dimensions and `below` more rows under it,
    in a new contiguous tensor (x itself when there is nothing to add, unless always_copy)."""
    if not (p or below or always_copy):
        return x
    h, w = x.shape[-2:]
    out = x.new_zeros((*x.shape[:-2], h + 2 * p + below, w + 2 * p))
    out[..., p:p + h, p:p + w] = x
    return out


def receptive_fields(padded: torch.Tensor, k: int, d: int, s: int, out_hw) -> torch.Tensor:
    """A view (..., c, k, k, batch, oh, ow) of (..., batch, c, H, W): every kernel offset's pixels.

    Element [.., ch, i, j, b, y, x] is padded[.., b, ch, s*y + d*i, s*x + d*j]; nothing is
    copied. Writing through the view of a gradient adds each column back to its pixel.
    """
    *lead, sb, sc, sh, sw = padded.stride()
    *lead_shape, batch, c = padded.shape[:-2]
    return padded.as_strided(
        (*lead_shape, c, k, k, batch, *out_hw),
        (*lead, sc, d * sh, d * sw, sb, s * sh, s * sw),
        padded.storage_offset(),
    )


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
        # NOTE: folded without padding into the whole area the kernel reaches, then cropped:
        # fold itself refuses an output_padding of a stride or more (its size then implies
        # more blocks than there are), and the extra rows and columns only hold the bias.
        full = fold(cols.reshape(-1, *cols.shape[-2:]), self._reach(), self.kernel_size,
                    self.dilation, 0, self.stride)  # (n, out, H', W')
        y = self._crop(full).view(*batch_shape, self.out_channels, *self.out_hw)
        return y + self.bias.value.unsqueeze(-1).unsqueeze(-1).unsqueeze(-4)  # bias (..., 1, out, 1, 1)

    def _reach(self) -> tuple[int, int]:
        """(H', W'): every pixel the kernel reaches from the input, before padding is cropped."""
        k, s, d = self.kernel_size, self.stride, self.dilation
        return tuple((n - 1) * s + d * (k - 1) + 1 for n in self.in_hw)

    def _crop(self, full: torch.Tensor) -> torch.Tensor:
        """The output's window of the reached area: `padding` off the top left, and zeros
        below and right where output_padding goes past the reach (a copy then)."""
        p, (oh, ow) = self.padding, self.out_hw
        window = full[..., p:p + oh, p:p + ow]
        if tuple(window.shape[-2:]) == (oh, ow):
            return window
        out = full.new_zeros((*full.shape[:-2], oh, ow))
        out[..., :window.shape[-2], :window.shape[-1]] = window
        return out

    def _uncrop(self, grad_output: torch.Tensor) -> torch.Tensor:
        """_crop's adjoint: the output's gradient placed in the reached area, zeros elsewhere."""
        p, (oh, ow) = self.padding, self.out_hw
        full = grad_output.new_zeros((*grad_output.shape[:-2], *self._reach()))
        place = full[..., p:p + oh, p:p + ow]
        place.copy_(grad_output[..., :place.shape[-2], :place.shape[-1]])
        return full

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.input is None:
            raise StateError("ConvTranspose2d.backward called before forward (each forward allows one backward)")
        x, self.input = self.input, None  # dropped once used: memory (see plugins/activations.py)
        batch_shape = grad_output.shape[:-3]
        full = self._uncrop(grad_output.reshape(-1, self.out_channels, *self.out_hw))
        g = unfold(full, self.kernel_size, self.dilation, 0, self.stride)  # (n, out*k*k, L)
        g = g.view(*batch_shape, *g.shape[1:])  # (..., batch, out*k*k, L)
        per_sample = x @ g.mT  # (..., batch, in, out*k*k)
        self.weight.grad += per_sample.sum(dim=-3).view(self.weight.grad.shape)  # (..., in, out, k, k)
        self.bias.grad += grad_output.sum(dim=(-4, -2, -1))  # (..., out)
        grad_x = self._matrix().unsqueeze(-3) @ g  # (..., batch, in, L)
        return grad_x.view(*batch_shape, self.in_channels, *self.in_hw)


@hookimpl
def register_layers(register):
    register("conv2d", Conv2d)
    register("conv_transpose2d", ConvTranspose2d)
