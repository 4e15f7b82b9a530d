"""The training loop: mini-batch gradient descent with seeded shuffling.

Usable directly from Python; the CLI calls nothing else. The same loop trains one network
or an ensemble of networks with a leading run dimension (see core/pipeline/ensemble.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from core.errors import DivergenceError
from core.network.protocols import (
    Loss, Module, Optimizer, no_input_grad, set_training,
)
from core.training.penalty import Penalty, penalised


# A mean epoch loss this many times the untrained network's counts as divergence even while
# finite: e.g. Adam at --lr 1e6 grows the weights so fast that the mean loss of the first
# epoch is in the millions (MSE at batch 10: ~1e13), yet never NaN.
DIVERGENCE_FACTOR = 1e4


def divergence(loss: float, weights_finite: bool, initial_loss: float | None) -> str | None:
    """Why an epoch counts as diverged (loss or weights not finite, or the loss exploded
    past DIVERGENCE_FACTOR times `initial_loss`), or None if it does not."""
    if not math.isfinite(loss):
        return f"the mean loss is {loss}"
    if not weights_finite:
        return "a weight is not finite"
    if initial_loss is not None and loss > DIVERGENCE_FACTOR * max(initial_loss, 1e-12):
        return (f"the mean loss {loss:.3g} is over {DIVERGENCE_FACTOR:g} times the untrained "
                f"network's {initial_loss:.3g}")
    return None


def divergence_error(
    epoch: int, what: str, lr: float, *, where: str = "", kept: str = ""
) -> DivergenceError:
    """The one message a diverged run stops with: when, why, and a lower rate to try."""
    return DivergenceError(
        f"training diverged at epoch {epoch}{where}: {what}; lower the learning rate "
        f"(now {lr:g}), e.g. --lr {lr / 10:g}{kept}"
    )


def fit(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    on_epoch: Callable[[int, float], bool | None] | None = None,
    lr_at: Callable[[int], float] | None = None,
    shard: Shard | None = None,
    penalty: Penalty | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[float]:
    """Train in place; return the mean training loss of each epoch.

    Each epoch visits the samples in an order drawn from `generator`, in batches of
    `batch_size` (the last one may be smaller). `on_epoch(epoch, loss)` follows each epoch;
    when it returns True, training stops there (early stopping).
    `lr_at(epoch)`, if given, sets `optimizer.lr` before each epoch (a schedule).
    `shard` (data parallel, core/training/distributed.py) makes this process train on its slice of
    each batch and sum the gradients and losses with the other processes'.
    `penalty` (core/training/penalty.py) adds its gradient on the weights before each step;
    the losses returned are the loss's alone, without the penalty.
    `stop()`, if given, is asked before each batch; when it returns True, training ends
    there and the unfinished epoch is dropped from the result (the network is mid-epoch):
    a run that its user closed stops within a batch, not an epoch (the playground).
    """
    with torch.set_grad_enabled(False):  # every gradient here is computed by hand
        each_epoch = None if on_epoch is None else (lambda e, loss: on_epoch(e, loss.item()))
        history = _fit(
            model, loss, optimizer, x, y, epochs, batch_size, [generator], each_epoch, lr_at, lead=0,
            shard=shard, penalty=penalty, stop=stop,
        )
    return history.tolist()  # (epochs,)


def fit_runs(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    generators: Sequence[torch.Generator],
    on_epoch: Callable[[int, list[float]], None] | None = None,
    lr_at: Callable[[int], float] | None = None,
    penalty: Penalty | None = None,
) -> list[list[float]]:
    """`fit` for an ensemble: `x` (runs, n, in), `y` (runs, n, out), one generator per run.

    Run i visits its own samples in the order `generators[i]` draws, exactly as `fit` would;
    returns each run's per-epoch losses. `on_epoch(epoch, losses)` gets each run's loss.
    """
    each_epoch = None if on_epoch is None else (lambda e, losses: on_epoch(e, losses.tolist()))
    with torch.set_grad_enabled(False):
        history = _fit(
            model, loss, optimizer, x, y, epochs, batch_size, generators, each_epoch, lr_at, lead=1,
            penalty=penalty,
        )
    return history.T.tolist()  # (runs, epochs)


def shuffled(
    x: torch.Tensor, y: torch.Tensor, generators: Sequence[torch.Generator], lead: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`x` (..., n, *sample) and `y` (..., n, *target) in one epoch's order, as contiguous copies.

    `lead` is the number of run dimensions before the samples (0 or 1). One run draws
    `randperm(n)` from its generator; with a run dimension, row r is ordered by
    `generators[r]`. The orders are drawn on the CPU, where the generators live, so a seed
    gives the same batches on every device.
    """
    n = x.shape[lead]
    orders = [torch.randperm(n, generator=g) for g in generators]
    order = (torch.stack(orders) if lead else orders[0]).to(x.device)  # (..., n)
    return in_order(x, order), in_order(y, order)


def in_order(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """`x` (..., n, *sample) reordered along n by `order` (..., n), as one contiguous tensor."""
    if order.dim() == 1:
        return x.index_select(0, order)
    runs = torch.arange(order.shape[0], device=order.device).unsqueeze(1)  # (runs, 1)
    return x[runs, order]  # (runs, n, *sample)


class Shard(Protocol):
    """A process's part in data-parallel training (core.training.distributed.DataParallel)."""

    def part(self, start: int, stop: int) -> tuple[int, int]:
        """This process's slice [lo, hi) of the global batch [start, stop)."""

    def reduce(self, mine: int, batch: int) -> None:
        """Make the gradients of this process's `mine` samples those of the whole batch."""

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the processes."""


def _fit(
    model, loss, optimizer, x, y, epochs, batch_size, generators, on_epoch, lr_at=None, *, lead,
    shard=None, penalty=None, stop=None,
) -> torch.Tensor:
    n = x.shape[lead]
    weights = penalised(model, lead) if penalty else []  # what the penalty's gradient goes to
    runs = x.shape[:lead]  # () or (runs,)
    history = []
    for epoch in range(1, epochs + 1):
        set_training(model, True)  # dropout on, batchnorm on batch statistics
        if lr_at is not None:
            optimizer.lr = lr_at(epoch)
        # Reordered once per epoch, so each batch is a view: the same samples as gathering
        # x[order[start:stop]] step by step, without a gather per step.
        xs, ys = shuffled(x, y, generators, lead)  # (..., n, *sample), (..., n, *target)
        total = torch.zeros(runs, dtype=torch.float64, device=x.device)  # () or (runs,)
        for start in range(0, n, batch_size):
            if stop is not None and stop():
                return _history(history, runs)
            end = min(start + batch_size, n)
            lo, hi = (start, end) if shard is None else shard.part(start, end)
            optimizer.zero_grad()
            if hi > lo:  # a process may get no sample of a batch smaller than the world
                value = loss.forward(model.forward(xs.narrow(lead, lo, hi - lo)),
                                     ys.narrow(lead, lo, hi - lo))
                with no_input_grad(model):  # nothing reads the data's gradient: skip it
                    model.backward(loss.backward())
                total += value * (hi - lo)  # stays a tensor: no sync per step
            if shard is not None:
                shard.reduce(hi - lo, end - start)
            if weights:  # once the batch's gradient is whole (after the processes' sum)
                penalty.add_grad(weights)
            optimizer.step()
        history.append((total if shard is None else shard.total(total)) / n)
        del xs, ys  # before the next epoch draws its copies: never two epochs' data at once
        if on_epoch is not None and on_epoch(epoch, history[-1]):  # () or (runs,)
            break  # the callback asked to stop (early stopping)
    return _history(history, runs)


def _history(history: list[torch.Tensor], runs: tuple[int, ...]) -> torch.Tensor:
    if not history:  # zero epochs, e.g. resuming a run whose last epoch was checkpointed
        return torch.zeros((0, *runs), dtype=torch.float64)
    return torch.stack(history)  # (epochs,) or (epochs, runs)

