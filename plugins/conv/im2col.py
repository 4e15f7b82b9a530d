"""Convolution as one matrix product over im2col columns, images batch-innermost.

Images here are (..., channels, height, width, batch) (core/network/layout.py); weights
(..., out, in, kh, kw) as torch's. im2col makes every receptive field a column:

    cols[(c, i, j), (y, x, n)] = padded[c, s_h*y + d_h*i, s_w*x + d_w*j, n]

so the convolution is `W.view(out, in*kh*kw) @ cols`, already in the output's own layout
(out, oh, ow, batch): no transpose after it. With the batch innermost, each (c, i, j) row
of the columns is one strided copy whose contiguous runs are an output row times the batch
(stride 1) or the batch (a larger stride): long runs, where (batch, c, h, w) copies 4-number
runs out of a 4x4 image. col2im, the columns' adjoint, adds each (i, j) block of a gradient
back where it came from: kh*kw additions through the same strided view.

The transposed convolution is the same two steps the other way round: its forward is
col2im of `W.T @ x`, its backward im2col of the output's gradient.
"""

from __future__ import annotations

from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.matmul import add_matmul_

# At most this many numbers of im2col columns per run at once (1 MiB in float32); a larger
# batch (evaluation, an ensemble on a whole training set) goes a share of it at a time.
COLUMN_BUDGET = 2**18


def fields(padded: torch.Tensor, kernel, dilation, stride, out_hw) -> torch.Tensor:
    """A view (..., c, kh, kw, oh, ow, batch) of padded (..., c, H, W, batch): every kernel
    offset's pixels. Nothing is copied; writing through the view of a gradient adds each
    column back to its pixel (one (i, j) block at a time: blocks overlap)."""
    *lead, sc, sh, sw, sn = padded.stride()
    *lead_shape, c, _, _, batch = padded.shape
    (kh, kw), (dh, dw), (s_h, s_w) = kernel, dilation, stride
    return padded.as_strided((*lead_shape, c, kh, kw, *out_hw, batch),
                             (*lead, sc, dh * sh, dw * sw, s_h * sh, s_w * sw, sn),
                             padded.storage_offset())


def columns(padded: torch.Tensor, kernel, dilation, stride, out_hw) -> torch.Tensor:
    """im2col: (..., c*kh*kw, oh*ow*batch), one copy out of the strided view."""
    view = fields(padded, kernel, dilation, stride, out_hw)
    return view.reshape(*view.shape[:-6], -1, out_hw[0] * out_hw[1] * view.shape[-1])


def add_columns_back(grad_padded: torch.Tensor, cols: torch.Tensor, kernel, dilation, stride, out_hw) -> None:
    """col2im: grad_padded (..., c, H, W, batch) += each column of cols (..., c*kh*kw, oh*ow*batch)
    at the pixel it came from."""
    view = fields(grad_padded, kernel, dilation, stride, out_hw)  # (..., c, kh, kw, oh, ow, batch)
    blocks = cols.view(view.shape)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            # NOTE: not `view[at] += ...`: Python's item assignment after it would copy the
            # sum onto itself once more. Offsets overlap: one (i, j) at a time.
            place = view[..., i, j, :, :, :]
            place += blocks[..., i, j, :, :, :]


def pad(x: torch.Tensor, padding) -> torch.Tensor:
    """x (..., c, h, w, batch) with padding[0] zero rows and padding[1] zero columns on each
    side (x itself without padding)."""
    ph, pw = padding
    if not (ph or pw):
        return x
    h, w = x.shape[-3:-1]
    out = x.new_zeros((*x.shape[:-3], h + 2 * ph, w + 2 * pw, x.shape[-1]))
    out[..., ph:ph + h, pw:pw + w, :] = x
    return out


def crop(padded: torch.Tensor, padding, size) -> torch.Tensor:
    """pad's adjoint: the (h, w) = size window of padded, past `padding` (a view)."""
    (ph, pw), (h, w) = padding, size
    return padded[..., ph:ph + h, pw:pw + w, :]


def share_of(batch: int, numbers_per_image: int) -> int:
    """How many images' columns at once: COLUMN_BUDGET numbers (at least one image)."""
    return min(batch, max(1, COLUMN_BUDGET // numbers_per_image))


class Im2col:
    """conv2d's forward and backward by im2col, for any kernel, stride, padding and dilation."""

    name = "im2col"

    def __init__(self, kernel, stride, padding, dilation):
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation

    def forward(self, x, weight, bias, out_hw):
        """y (..., out, oh, ow, batch) and what backward needs, for x (..., in, h, w, batch)."""
        padded = pad(x, self.padding)  # kept for backward: the columns are kh*kw times larger
        matrix = weight.flatten(-3)  # (..., out, in*kh*kw), a view
        batch = x.shape[-1]
        share = share_of(batch, matrix.shape[-1] * out_hw[0] * out_hw[1])
        if share == batch:
            y = self._product(padded, matrix, bias, out_hw)
        else:  # a large batch a share at a time: the whole's columns would be kh*kw times its input
            y = x.new_empty((*matrix.shape[:-1], *out_hw, batch))
            for start in range(0, batch, share):
                y[..., start:start + share] = self._product(padded[..., start:start + share], matrix, bias, out_hw)
        return y, (padded, x.shape[-3:-1], out_hw)

    def _product(self, padded, matrix, bias, out_hw):
        cols = columns(padded, self.kernel, self.dilation, self.stride, out_hw)  # (..., in*kh*kw, L*n)
        if bias is None:
            y = matrix @ cols
        elif matrix.dim() == 2:
            y = torch.addmm(bias.unsqueeze(-1), matrix, cols)  # (out, L*n)
        else:
            y = torch.baddbmm(bias.unsqueeze(-1), matrix, cols)  # (runs, out, L*n)
        return y.view(*y.shape[:-1], *out_hw, padded.shape[-1])  # (..., out, oh, ow, n)

    def backward(self, grad_output, cache, weight, weight_grad, bias_grad, needs_input_grad):
        """Adds the parameter gradients; returns the input's (None unless needs_input_grad)."""
        padded, in_hw, out_hw = cache
        g = grad_output.contiguous()  # (..., out, oh, ow, batch)
        out_channels, batch = g.shape[-4], g.shape[-1]
        if bias_grad is not None:
            bias_grad += g.view(*g.shape[:-3], -1).sum(dim=-1)  # (..., out)
        matrix = weight.flatten(-3)  # (..., out, in*kh*kw)
        share = share_of(batch, matrix.shape[-1] * out_hw[0] * out_hw[1])
        grad_matrix = weight_grad.view(matrix.shape)
        grad_padded = torch.zeros_like(padded, memory_format=torch.contiguous_format) if needs_input_grad else None
        for start in range(0, batch, share):
            part = g if share == batch else g[..., start:start + share].contiguous()
            part = part.view(*g.shape[:-4], out_channels, -1)  # (..., out, L*share)
            image = padded if share == batch else padded[..., start:start + share]
            # The weight gradient from the columns computed again (cheaper in memory than
            # keeping them): g @ cols.T, the product's adjoint in its second factor.
            cols = columns(image, self.kernel, self.dilation, self.stride, out_hw)
            add_matmul_(grad_matrix, part, cols.mT)  # (..., out, in*kh*kw)
            del cols
            if grad_padded is not None:
                target = grad_padded if share == batch else grad_padded[..., start:start + share]
                add_columns_back(target, matrix.mT @ part, self.kernel, self.dilation, self.stride, out_hw)
        return None if grad_padded is None else crop(grad_padded, self.padding, in_hw)


class TransposedIm2col:
    """conv_transpose2d's forward (col2im of W.T @ x) and backward (im2col of the gradient)."""

    name = "col2im"

    def __init__(self, kernel, stride, padding, dilation, output_padding):
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.output_padding = output_padding

    def reach(self, in_hw) -> tuple[int, int]:
        """(H', W'): every pixel the kernel reaches from the input, before padding is cropped."""
        return tuple((n - 1) * s + d * (k - 1) + 1
                     for n, s, d, k in zip(in_hw, self.stride, self.dilation, self.kernel))

    def forward(self, x, weight, bias, out_hw):
        in_hw, batch = tuple(x.shape[-3:-1]), x.shape[-1]
        matrix = weight.flatten(-3)  # (..., in, out*kh*kw)
        cols = matrix.mT @ x.reshape(*x.shape[:-3], -1)  # (..., out*kh*kw, h*w*batch)
        out_channels = weight.shape[-3]
        full = x.new_zeros((*x.shape[:-4], out_channels, *self.reach(in_hw), batch))
        add_columns_back(full, cols, self.kernel, self.dilation, self.stride, in_hw)
        y = self._window(full, out_hw)  # (..., out, oh, ow, batch)
        if bias is not None:
            y += bias.view(*bias.shape, 1, 1, 1)
        return y, (x, in_hw, out_hw)

    def _window(self, full, out_hw):
        """The output's window of the reached area: `padding` off the top left, and zeros below
        and right where output_padding goes past the reach (torch's fold refuses those)."""
        (ph, pw), (oh, ow) = self.padding, out_hw
        out = full.new_zeros((*full.shape[:-3], oh, ow, full.shape[-1]))
        window = full[..., ph:ph + oh, pw:pw + ow, :]
        out[..., :window.shape[-3], :window.shape[-2], :] = window
        return out

    def backward(self, grad_output, cache, weight, weight_grad, bias_grad, needs_input_grad):
        x, in_hw, out_hw = cache
        (ph, pw), batch = self.padding, grad_output.shape[-1]
        if bias_grad is not None:
            bias_grad += grad_output.sum(dim=(-3, -2, -1))  # (..., out)
        # _window's adjoint: the output's gradient placed in the reached area, zeros elsewhere
        full = grad_output.new_zeros((*grad_output.shape[:-3], *self.reach(in_hw), batch))
        place = full[..., ph:ph + out_hw[0], pw:pw + out_hw[1], :]
        place.copy_(grad_output[..., :place.shape[-3], :place.shape[-2], :])
        cols = columns(full, self.kernel, self.dilation, self.stride, in_hw)  # (..., out*kh*kw, h*w*batch)
        rows = x.reshape(*x.shape[:-3], -1)  # (..., in, h*w*batch)
        add_matmul_(weight_grad.view(*weight.shape[:-3], -1), rows, cols.mT)  # (..., in, out*kh*kw)
        if not needs_input_grad:
            return None
        return (weight.flatten(-3) @ cols).view(x.shape)  # (..., in, h, w, batch)
