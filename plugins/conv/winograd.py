"""Convolution by Winograd's minimal filtering F(4x4, 3x3), images batch-innermost.

Lavin and Gray (2015), "Fast Algorithms for Convolutional Neural Networks". A 3x3 kernel
over a 6x6 tile of the input gives a 4x4 tile of the output; directly that is 16 * 9 = 144
multiplications per channel pair, Winograd's way 36:

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* element-wise, d a 6x6 tile, g the 3x3 kernel)

and the sum over input channels moves inside the brackets, so it becomes 36 matrix products
(out, in) @ (in, tiles*batch), one per position of the 6x6 transformed tile.

Where the matrices come from (one dimension; the 2-D algorithm nests it in rows and columns).
The correlation y_i = sum_k d_{i+k} g_k, i < 4, k < 3, is the transpose (in d) of the
polynomial product s(x) = g(x) a(x), deg g = 2, deg a = 3, deg s = 5: y = T(g)^T d when s =
T(g) a. Compute s by evaluating at five points p = 0, 1, -1, 2, -2 and at infinity (the top
coefficient), multiplying point by point, and interpolating (Toom-Cook):
    s = C [ (G g) * (A a) ]
  - A (6x4): row k evaluates a at p_k, [1, p_k, p_k^2, p_k^3]; the infinity row picks a_3.
  - G (6x3): row k evaluates g at p_k, divided by N_k = prod_{l != k} (p_k - p_l), the
    Lagrange denominator moved here (it is applied once per kernel, not per tile);
    the infinity row picks g_2.
  - C (6x6): column k holds the coefficients of prod_{l != k} (x - p_l) (Lagrange's basis
    polynomial times N_k), the infinity column those of M(x) = prod_l (x - p_l), since
    s(x) = s_inf M(x) + sum_k s(p_k) L_k(x).
  Transposing in d: y = A^T [ (G g) * (C^T d) ], so B^T = C^T. With the points above
  this gives Lavin and Gray's matrices, e.g. B^T's first row (x-1)(x+1)(x-2)(x+2) =
  x^4 - 5x^2 + 4 -> [4, 0, -5, 0, 1, 0], G's first row 1/N_0 = 1/4. `_matrices` builds
  them exactly so, in fractions; the tests check the result against torch's convolution.

Every transform is a matrix product on contiguous data: the input's 6x6 tiles are gathered
as (6, 6, in, tiles, batch), so B^T from the left over the first 6 and again over the
second are two plain products; likewise A^T for the output, whose 4x4 tiles are copied into
(out, oh, ow, batch) with the bias added in the same pass. The backward is each product's
adjoint, in reverse: A, then the 36 products transposed (the kernel's gradient through G^T
from both sides, the tiles' through B), then each tile position added back to its pixels.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

from core.lazy import torch  # imported on first use: listing plugins stays fast

POINTS = (0, 1, -1, 2, -2)  # plus infinity: the six points of F(4, 3)
M, R = 4, 3  # output tile, kernel
T = M + R - 1  # input tile: 6

# Winograd pays when its 36 products per tile (against 144) outweigh the transforms, whose
# cost grows with in + out channels, not their product: so from a few input channels on.
# (conv 1 -> 16 on 8x8, bench/images.py's first layer, is faster by im2col.)
MIN_IN_CHANNELS = 4


def polynomial(roots) -> list[Fraction]:
    """Coefficients (lowest first) of prod (x - r) over roots."""
    coefficients = [Fraction(1)]
    for r in roots:
        shifted = [Fraction(0)] + coefficients  # x * p(x)
        coefficients = [a - r * b for a, b in zip(shifted, coefficients + [Fraction(0)])]
    return coefficients


def _matrices() -> tuple[list[list[Fraction]], list[list[Fraction]], list[list[Fraction]]]:
    """(A^T (4x6), G (6x3), B^T (6x6)) from POINTS and infinity, as derived above."""
    a_t = [[Fraction(p) ** i for p in POINTS] + [Fraction(int(i == M - 1))] for i in range(M)]
    g = []
    for k, p in enumerate(POINTS):
        norm = math.prod(Fraction(p - q) for q in POINTS if q != p)
        g.append([Fraction(p) ** j / norm for j in range(R)])
    g.append([Fraction(int(j == R - 1)) for j in range(R)])
    b_t = [polynomial([q for q in POINTS if q != p]) + [Fraction(0)] for p in POINTS]
    b_t.append(polynomial(POINTS))
    return a_t, g, b_t


@lru_cache(maxsize=None)
def matrices(dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A^T (4, 6), G (6, 3), B^T (6, 6) as tensors."""
    return tuple(torch.tensor([[float(v) for v in row] for row in m], dtype=dtype, device=device)
                 for m in _matrices())


def fits(kernel, stride, dilation, in_channels: int) -> bool:
    """Whether conv2d of these settings runs by Winograd (any padding, any image size)."""
    return kernel == (R, R) and stride == (1, 1) and dilation == (1, 1) and in_channels >= MIN_IN_CHANNELS


def tiles_view(padded: torch.Tensor, tiles_hw) -> torch.Tensor:
    """A view (..., 6, 6, c, th, tw, batch) of padded (..., c, 4*th + 2, 4*tw + 2, batch):
    tile (ty, tx) is the 6x6 window at (4*ty, 4*tx); windows overlap by two pixels."""
    *lead, sc, sh, sw, sn = padded.stride()
    *lead_shape, c, _, _, batch = padded.shape
    return padded.as_strided((*lead_shape, T, T, c, *tiles_hw, batch),
                             (*lead, sh, sw, sc, M * sh, M * sw, sn), padded.storage_offset())


class Winograd:
    """conv2d's forward and backward by F(4x4, 3x3): 3x3 kernel, stride 1, dilation 1."""

    name = "winograd F(4x4,3x3)"

    def __init__(self, padding):
        self.padding = padding

    def forward(self, x, weight, bias, out_hw):
        a_t, g, b_t = matrices(x.dtype, x.device)
        *lead, c, h, w, n = x.shape
        tiles_hw = tuple(-(-size // M) for size in out_hw)  # (th, tw)
        if tiles_hw == (1, 1):
            return self.one_tile_forward(x, weight, bias, out_hw, g)
        v = self.input_transform(x, b_t, tiles_hw)  # (..., 36, c, tiles * n)
        u = self.kernel_transform(weight, g)  # (..., 36, out, c)
        m = u @ v  # (..., 36, out, tiles * n): the 36 products
        y = self.output_transform(m, a_t, bias, out_hw, tiles_hw, n)
        return y, (v, u, x.shape, tiles_hw)

    def input_transform(self, x, b_t, tiles_hw):
        """V = B^T d B for every 6x6 tile d of the padded input: (..., 36, c, tiles * n)."""
        *lead, c, h, w, n = x.shape
        (ph, pw), (th, tw) = self.padding, tiles_hw
        # The input, padded to whole tiles: padding on top and left, zeros to the end (4 * th
        # + 2 >= oh + 2 = h + 2 * ph: the image always fits)
        padded = x.new_zeros((*lead, c, M * th + 2, M * tw + 2, n))
        padded[..., ph:ph + h, pw:pw + w, :] = x
        d = tiles_view(padded, tiles_hw).contiguous()  # (..., 6, 6, c, th, tw, n)
        del padded
        # the rows (first 6) then the columns (second 6), two products
        v = b_t @ d.view(*lead, T, -1)  # (..., 6, 6 * c * tiles * n)
        v = b_t @ v.view(*lead, T, T, -1)  # (..., 6, 6, c * tiles * n)
        return v.view(*lead, T * T, c, th * tw * n)

    def input_transform_adjoint(self, gv, b_t, in_shape, tiles_hw):
        """The input's gradient from V's, gv (..., 36, c, tiles * n): the transform's adjoint,
        then each tile's pixels added back where they came from."""
        *lead, c, h, w, n = in_shape
        (ph, pw), (th, tw) = self.padding, tiles_hw
        gv = gv.view(*lead, T, T, -1)  # (..., 6, 6, c * tiles * n)
        gd = b_t.mT @ gv  # the columns' adjoint, (..., 6, 6, ...)
        gd = (b_t.mT @ gd.view(*lead, T, -1)).view(*lead, T, T, c, th, tw, n)  # the rows'
        grad_padded = gd.new_zeros((*lead, c, M * th + 2, M * tw + 2, n))
        place = tiles_view(grad_padded, tiles_hw)
        for i in range(T):  # tiles overlap: one tile position at a time
            for j in range(T):
                spot = place[..., i, j, :, :, :, :]
                spot += gd[..., i, j, :, :, :, :]
        return grad_padded[..., ph:ph + h, pw:pw + w, :]  # padding's adjoint: a view

    @staticmethod
    def kernel_transform(weight, g):
        """U = G w G^T for every (out, in) pair: (..., out, in, 3, 3) -> (..., 36, out, in)."""
        *lead, out, c, _, _ = weight.shape
        w = weight.movedim((-2, -1), (-4, -3)).reshape(*lead, R, -1)  # (..., 3, 3 * out * in)
        u = g @ w  # (..., 6, 3 * out * in)
        u = g @ u.view(*lead, T, R, -1)  # (..., 6, 6, out * in)
        return u.view(*lead, T * T, out, c)

    @staticmethod
    def kernel_transform_adjoint(gu, g, weight_grad):
        """weight_grad (..., out, in, 3, 3) += G^T gU G, for gU (..., 36, out, in)."""
        *lead, _, out, c = gu.shape
        gw = g.mT @ gu.reshape(*lead, T, -1)  # (..., 3, 6 * out * in)
        gw = g.mT @ gw.view(*lead, R, T, -1)  # (..., 3, 3, out * in)
        weight_grad += gw.view(*lead, R, R, out, c).movedim((-4, -3), (-2, -1))

    @staticmethod
    def output_transform(m, a_t, bias, out_hw, tiles_hw, n):
        """Y = A^T m A, each 4x4 tile copied to its place in (..., out, oh, ow, n), plus the bias."""
        *lead, _, out, _ = m.shape
        (th, tw), (oh, ow) = tiles_hw, out_hw
        z = a_t @ m.view(*lead, T, -1)  # (..., 4, 6 * out * tiles * n)
        z = a_t @ z.view(*lead, M, T, -1)  # (..., 4, 4, out * tiles * n)
        z = z.view(*lead, M, M, out, th, tw, n)
        k = len(lead)
        z = z.permute(*range(k), k + 2, k + 3, k, k + 4, k + 1, k + 5)  # (..., out, th, 4, tw, 4, n)
        y = m.new_empty((*lead, out, M * th, M * tw, n))
        target = y.view(*lead, out, th, M, tw, M, n)
        if bias is None:
            target.copy_(z)
        elif torch.is_grad_enabled():  # NOTE: out= is refused under autograd (the kit's check
            target.copy_(z)            # of this forward; the kit compares both ways)
            y += bias.view(*bias.shape, 1, 1, 1)
        else:
            torch.add(z, bias.view(*bias.shape, 1, 1, 1, 1, 1), out=target)  # one pass: copy and bias
        if (M * th, M * tw) != (oh, ow):  # an output not a whole number of tiles
            y = y[..., :oh, :ow, :]
        return y

    def one_tile_forward(self, x, weight, bias, out_hw, g):
        """The whole image one tile (an output of at most 4x4, bench/images.py's second layer).

        Both transforms of a tile at once: vec(B^T d B) = (B^T kron B^T) vec(d), so with the
        image's pixels already in a row per channel, (..., c, h*w, n), V is one product by a
        36 x (h*w) matrix, and the padding's rows and columns of the tile (zeros) are never
        built: only B^T's columns for the image's own rows and columns enter. Likewise
        vec(A^T m A) = (A^T kron A^T) vec(m), whose product lands straight in the output's
        layout (..., out, oh*ow, n), the bias added by the same call.
        """
        *lead, c, h, w, n = x.shape
        out, k = weight.shape[-4], len(lead)
        into, outof = self.kron_matrices(x.dtype, x.device, (h, w), tuple(out_hw), self.padding)  # (36, h*w), (oh*ow, 36)
        v = into @ x.reshape(*lead, c, h * w, n)  # (..., c, 36, n)
        u = self.kernel_transform(weight, g)  # (..., 36, out, c)
        m = u @ v.transpose(k, k + 1)  # (..., 36, out, n): the 36 products
        y = outof @ m.transpose(k, k + 1)  # (..., out, oh*ow, n)
        if bias is not None:
            y += bias.view(*bias.shape, 1, 1)
        return y.view(*lead, out, *out_hw, n), (v, u, x.shape, (1, 1))

    def one_tile_backward(self, grad_output, cache, weight_grad, needs_input_grad, g):
        """one_tile_forward's adjoint: each product's, in reverse."""
        v, u, in_shape, _ = cache
        *lead, out, oh, ow, n = grad_output.shape
        k, (h, w) = len(lead), in_shape[-3:-1]
        into, outof = self.kron_matrices(grad_output.dtype, grad_output.device, (h, w), (oh, ow), self.padding)
        gm = outof.mT @ grad_output.reshape(*lead, out, oh * ow, n)  # (..., out, 36, n)
        gm = gm.transpose(k, k + 1)  # (..., 36, out, n), a view
        self.kernel_transform_adjoint(gm @ v.transpose(k, k + 1).mT, g, weight_grad)
        if not needs_input_grad:
            return None
        gv = u.mT @ gm  # (..., 36, c, n)
        return (into.mT @ gv.transpose(k, k + 1)).view(in_shape)  # (..., c, h, w, n)

    @staticmethod
    @lru_cache(maxsize=None)
    def kron_matrices(dtype, device, in_hw, out_hw, padding):
        """(B^T kron B^T) restricted to the image's own pixels, (36, h*w), and A^T kron A^T
        restricted to the output's, (oh*ow, 36): one tile's two transforms each as one matrix."""
        a_t, _, b_t = matrices(dtype, device)
        (h, w), (ph, pw), (oh, ow) = in_hw, padding, out_hw
        return (torch.kron(b_t[:, ph:ph + h], b_t[:, pw:pw + w]), torch.kron(a_t[:oh], a_t[:ow]))

    def backward(self, grad_output, cache, weight, weight_grad, bias_grad, needs_input_grad):
        v, u, in_shape, tiles_hw = cache
        a_t, g, b_t = matrices(grad_output.dtype, grad_output.device)
        *lead, out, oh, ow, n = grad_output.shape
        c, h, w = in_shape[-4:-1]
        (th, tw), k = tiles_hw, len(lead)
        if bias_grad is not None:
            bias_grad += grad_output.sum(dim=(-3, -2, -1))  # (..., out)
        if tiles_hw == (1, 1):
            return self.one_tile_backward(grad_output, cache, weight_grad, needs_input_grad, g)
        # The output transform's adjoint: tiles of the gradient, (..., 4, 4, out, th, tw, n)
        if (M * th, M * tw) != (oh, ow):
            whole = grad_output.new_zeros((*lead, out, M * th, M * tw, n))
            whole[..., :oh, :ow, :] = grad_output
            grad_output = whole
        gz = grad_output.reshape(*lead, out, th, M, tw, M, n)
        gz = gz.permute(*range(k), k + 2, k + 4, k, k + 1, k + 3, k + 5).contiguous()
        gz = a_t.mT @ gz.view(*lead, M, M, -1)  # (..., 4, 6, out * tiles * n)
        gm = a_t.mT @ gz.view(*lead, M, -1)  # (..., 6, 6 * out * tiles * n)
        gm = gm.view(*lead, T * T, out, -1)  # (..., 36, out, tiles * n)
        # The 36 products' adjoints; the kernel's through G^T on both sides
        self.kernel_transform_adjoint(gm @ v.mT, g, weight_grad)
        if not needs_input_grad:
            return None
        return self.input_transform_adjoint(u.mT @ gm, b_t, in_shape, tiles_hw)  # (..., 36, c, tiles * n) in
