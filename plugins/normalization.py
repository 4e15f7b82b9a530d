"""Normalisation and dropout: the layers whose behaviour depends on the mode.

Both use the optional parts of the Module protocol (core/protocols.py): `train(mode)`
switches training and evaluation, `buffers()` names batchnorm's running statistics,
which model files and checkpoints save. Inputs may be (batch, features) or images
(batch, channels, height, width), with a leading run dimension in an ensemble.
"""

from __future__ import annotations

import math

from core import Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast
from core.network.layout import BATCH_FIRST, BATCH_INNERMOST


class _Modes:
    """A module that starts in training mode and keeps it in `training`."""

    training = True
    supports_runs = True

    def train(self, mode: bool = True) -> None:
        self.training = bool(mode)

    def eval(self) -> None:
        self.train(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class BatchNorm(_Modes):
    """Batch normalisation over the batch (and pixels) per feature or channel, with running statistics.

    Takes (batch, features) like torch's BatchNorm1d or (batch, channels, h, w) like
    BatchNorm2d; inside a network images come batch-innermost, (channels, h, w, batch)
    (`layout="chwn"`, core/network/layout.py), where each channel's values are one
    contiguous run for the statistics' sums. Training normalises with the batch's mean and (biased) variance and moves
    the running ones by `momentum` (the running variance unbiased, as torch does);
    evaluation normalises with the running statistics. Scale 1, shift 0 to start.
    """

    def __init__(
        self,
        in_channels: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        runs: int | None = None,
        layout: str = BATCH_FIRST,
    ):
        if layout not in (BATCH_FIRST, BATCH_INNERMOST):
            raise ShapeError(f"layout must be {BATCH_FIRST} or {BATCH_INNERMOST}, got {layout!r}")
        self.layout = layout
        if not 0.0 <= momentum <= 1.0:
            raise ShapeError(f"batchnorm momentum must be in [0, 1], got {momentum!r}")
        if not eps > 0:
            raise ShapeError(f"batchnorm eps must be > 0, got {eps!r}")
        self.channels, self.eps, self.momentum, self.runs = in_channels, eps, momentum, runs
        lead = () if runs is None else (runs,)
        like = {"dtype": dtype, "device": device}
        self.weight = Parameter.of(torch.ones(*lead, in_channels, **like), "weight")
        self.bias = Parameter.of(torch.zeros(*lead, in_channels, **like), "bias")
        self.running_mean = torch.zeros(*lead, in_channels, **like)
        self.running_var = torch.ones(*lead, in_channels, **like)
        self.cache: tuple | None = None

    def axes(self, x: torch.Tensor) -> tuple[tuple[int, ...], list[int]]:
        """The dimensions statistics reduce over, and the shape a per-channel vector broadcasts as."""
        batch = 0 if self.runs is None else 1
        # where the channels are: after the batch, or first (batch-innermost images)
        channel = batch if x.dim() == batch + 4 and self.layout == BATCH_INNERMOST else batch + 1
        if x.dim() not in (batch + 2, batch + 4) or x.shape[channel] != self.channels:
            sample = x.shape[batch:-1] if channel == batch else x.shape[batch + 1:]
            raise ShapeError(
                f"batchnorm takes {self.channels} features, or images of {self.channels} "
                f"channels, got per-sample shape {tuple(sample)}"
            )
        reduce = tuple(d for d in range(batch, x.dim()) if d != channel)  # the batch and every pixel
        view = [1] * x.dim()
        view[channel] = self.channels
        if self.runs is not None:
            view[0] = self.runs
        return reduce, view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduce, view = self.axes(x)
        if self.training:
            count = x.numel() // (self.channels * (self.runs or 1))  # values per channel
            if count < 2:
                raise ShapeError(
                    f"batchnorm needs more than one value per channel in training, got input "
                    f"shape {tuple(x.shape)}; use a batch of 2 or more"
                )
            mean = x.mean(dim=reduce, keepdim=True)  # view-shaped
            centred = x - mean
            # NOTE: not torch.var_mean: its one-pass (Welford) reduction is several times slower here
            var = (centred * centred).mean(dim=reduce, keepdim=True)  # biased, as torch normalises
            # NOTE: detached so that an autograd check of this forward (the kit) leaves the
            # running statistics plain tensors; the framework runs without autograd anyway.
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach().reshape(self.running_mean.shape), alpha=m)
            unbiased = var.detach().reshape(self.running_var.shape) * (count / (count - 1))
            self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        else:
            centred = x - self.running_mean.view(view)
            var = self.running_var.view(view)
        inv_std = torch.rsqrt(var + self.eps)  # view-shaped
        normalised = centred * inv_std  # like x (not in place: the kit runs this forward under autograd)
        self.cache = (normalised, inv_std, reduce, view, self.training)
        # NOTE: not torch.addcmul: about 2x slower than these two on a channel-major batch
        return (normalised * self.weight.value.view(view)).add_(self.bias.value.view(view))

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            raise StateError("BatchNorm.backward called before forward (each forward allows one backward)")
        normalised, inv_std, reduce, view, batch_statistics = self.cache
        self.cache = None  # dropped once used: memory (see plugins/activations.py)
        scaled_sum = (grad_output * normalised).sum(dim=reduce)  # (..., channels)
        plain_sum = grad_output.sum(dim=reduce)  # (..., channels)
        self.weight.grad += scaled_sum
        self.bias.grad += plain_sum
        scale = self.weight.value.view(view) * inv_std  # view-shaped
        if not batch_statistics:  # running statistics are constants
            return grad_output * scale
        # The batch's mean and variance depend on every input: project out their directions,
        # g - mean(g) - normalised * mean(g * normalised), times weight / std. Written into
        # one new tensor in place: a single input-sized temporary (memory).
        count = grad_output.numel() // plain_sum.numel()
        grad = normalised * (scaled_sum.view(view) / -count)
        grad += grad_output
        grad -= plain_sum.view(view) / count
        return grad.mul_(scale)

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def buffers(self) -> dict[str, torch.Tensor]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}


class LayerNorm:
    """Layer normalisation over each sample's every value, with a scale and shift per value.

    Like torch's LayerNorm(normalized_shape = the sample's shape): (features,) after a
    linear layer, (channels, h, w) on images. A sequence's sample, (time, features), is
    normalised position by position, as torch's LayerNorm(features) does in a transformer.
    The same in both modes.
    """

    supports_runs = True

    def __init__(
        self,
        in_shape: tuple[int, ...],
        eps: float = 1e-5,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        runs: int | None = None,
    ):
        if not eps > 0:
            raise ShapeError(f"layernorm eps must be > 0, got {eps!r}")
        in_shape = tuple(in_shape)
        self.sample_shape = in_shape
        self.in_shape = in_shape[1:] if len(in_shape) == 2 else in_shape  # what one mean is over
        self.eps, self.runs = eps, runs
        lead = () if runs is None else (runs,)
        like = {"dtype": dtype, "device": device}
        self.weight = Parameter.of(torch.ones(*lead, *self.in_shape, **like), "weight")
        self.bias = Parameter.of(torch.zeros(*lead, *self.in_shape, **like), "bias")
        self.dims = tuple(range(-len(self.in_shape), 0))  # the sample's own dimensions
        self.size = math.prod(self.in_shape)  # the values one mean is over
        self.cache: tuple | None = None

    def affine(self, p: Parameter) -> torch.Tensor:
        if self.runs is None:
            return p.value
        batch = (1,) * (1 + len(self.sample_shape) - len(self.in_shape))  # batch (and time)
        return p.value.view(self.runs, *batch, *self.in_shape)  # (runs, 1, *sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-len(self.in_shape):]) != self.in_shape:
            raise ShapeError(
                f"layernorm was built for per-sample shape {self.in_shape}, got input {tuple(x.shape)}"
            )
        # NOTE: sums, not means (a mean is a sum, a division and a scalar's conversion: at
        # batch 1 the dispatch costs more than the arithmetic); x - sum / n in one op, the
        # variance from each sample's norm (no square of x made)
        centred = torch.sub(x, x.sum(dim=self.dims, keepdim=True), alpha=1 / self.size)
        norm = torch.linalg.vector_norm(centred, dim=self.dims, keepdim=True)  # (..., batch, 1, ...)
        inv_std = torch.rsqrt((norm * norm).div_(self.size).add_(self.eps))
        # in place unless autograd records this forward (the kit's oracle), which keeps centred
        normalised = centred * inv_std if torch.is_grad_enabled() else centred.mul_(inv_std)  # like x
        self.cache = (normalised, inv_std)
        return torch.addcmul(self.affine(self.bias), normalised, self.affine(self.weight))

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            raise StateError("LayerNorm.backward called before forward (each forward allows one backward)")
        normalised, inv_std = self.cache
        self.cache = None  # dropped once used: memory (see plugins/activations.py)
        first = 0 if self.runs is None else 1
        batch = tuple(range(first, grad_output.dim() - len(self.in_shape)))  # batch (and time)
        scaled = grad_output * normalised  # like x
        self.weight.grad += scaled.sum(dim=batch)  # (..., *in_shape)
        self.bias.grad += grad_output.sum(dim=batch)
        weight = self.affine(self.weight)
        # g = grad_output * weight; the input gradient is inv_std (g - mean(g) - n mean(g n)),
        # n the normalised input: two new tensors, the rest in place
        g_n = scaled.mul_(weight).sum(dim=self.dims, keepdim=True)  # n mean(g n): (..., batch, 1)
        g = grad_output * weight
        g.sub_(g.sum(dim=self.dims, keepdim=True), alpha=1 / self.size).addcmul_(normalised, g_n, value=-1 / self.size)
        return g.mul_(inv_std)

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py), on (rows, features), nothing kept."""
        if self.runs is not None or len(self.in_shape) != 1:
            return None  # an ensemble's, an image's: forward
        weight, bias, eps = self.weight.value, self.bias.value, like.new_tensor(self.eps)
        var_mean, addcmul = torch.var_mean, torch.addcmul

        def decode(x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] != 1:  # a prompt's rows: as forward (var_mean is slow on many rows)
                mean = x.mean(dim=-1, keepdim=True)
                centred = x - mean
                var = (centred * centred).mean(dim=-1, keepdim=True)
            else:  # one token's row: one call for both
                var, mean = var_mean(x, dim=-1, correction=0, keepdim=True)  # (1, 1) each
                centred = x - mean
            return addcmul(bias, centred.mul_(var.add_(eps).rsqrt_()), weight)
        return decode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class Dropout(_Modes):
    """Zeroes each value with probability p in training and scales the rest by 1/(1-p); identity in evaluation.

    The masks are drawn from the run's seeded generator (the one its weights were drawn
    from), so a seed gives the same training bit for bit. With `runs=R`, run r draws its
    mask from `generators[r]`; the ensemble hands each the generator of that run's own
    network, so run r drops exactly what the single run of its seed drops.
    """

    any_layout = True  # element-wise: images in either layout (core/network/layout.py)

    def __init__(
        self, p: float = 0.5, *, generator: torch.Generator | None = None, runs: int | None = None
    ):
        if not 0.0 <= p < 1.0:
            raise ShapeError(f"dropout p must be in [0, 1), got {p!r}")
        self.p, self.generator = p, generator
        self.generators = None if runs is None else [generator] * runs
        self.mask: torch.Tensor | None = None
        self.called = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.called = True
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        # Drawn on the CPU, where the generators live, so a seed gives the same masks anywhere.
        if self.generators is None:
            uniform = torch.rand(x.shape, generator=self.generator, dtype=x.dtype)
        else:  # (runs, batch, ...): each run's mask from its own generator
            uniform = torch.stack([torch.rand(x.shape[1:], generator=g, dtype=x.dtype)
                                   for g in self.generators])
        keep = uniform >= self.p
        self.mask = (keep.to(x.dtype) / (1 - self.p)).to(x.device)  # like x: 0 or 1/(1-p)
        return x * self.mask

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if not self.called:
            raise StateError("Dropout.backward called before forward (each forward allows one backward)")
        mask, self.mask, self.called = self.mask, None, False  # dropped once used: memory
        return grad_output if mask is None else grad_output * mask

    def parameters(self) -> list[Parameter]:
        return []

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py): in evaluation, x itself."""
        return (lambda x: x) if not self.training or self.p == 0.0 else None


@hookimpl
def register_layers(register):
    register("batchnorm", BatchNorm)
    register("layernorm", LayerNorm)
    register("dropout", Dropout)
