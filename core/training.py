"""The training loop: mini-batch gradient descent with seeded shuffling.

Usable directly from Python; the CLI calls nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.protocols import Loss, Module, Optimizer, decision_threshold


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
    on_epoch: Callable[[int, float], None] | None = None,
    lr_at: Callable[[int], float] | None = None,
) -> list[float]:
    """Train in place; return the mean training loss of each epoch.

    Each epoch visits the samples in an order drawn from `generator`, in batches of
    `batch_size` (the last one may be smaller). `on_epoch(epoch, loss)` follows each epoch.
    `lr_at(epoch)`, if given, sets `optimizer.lr` before each epoch (a schedule).
    """
    with torch.set_grad_enabled(False):  # every gradient here is computed by hand
        return _fit(model, loss, optimizer, x, y, epochs, batch_size, generator, on_epoch, lr_at)


def _fit(model, loss, optimizer, x, y, epochs, batch_size, generator, on_epoch, lr_at=None) -> list[float]:
    n = x.shape[0]
    history = []
    for epoch in range(1, epochs + 1):
        if lr_at is not None:
            optimizer.lr = lr_at(epoch)
        order = torch.randperm(n, generator=generator)
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            value = loss.forward(model.forward(x[batch]), y[batch])
            optimizer.zero_grad()
            model.backward(loss.backward())
            optimizer.step()
            total += value * len(batch)  # stays a tensor: no sync per step
        history.append(total.item() / n)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return history


def error_rate(model: Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of points whose predicted class differs from the 0/1 label."""
    predicted = model.forward(x) > decision_threshold(loss)  # (n, 1)
    return (predicted != (y > 0.5)).double().mean().item()
