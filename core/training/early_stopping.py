"""Early stopping on the validation loss: keep the best epoch's weights, stop after
`patience` epochs without a lower validation loss, and end on the best weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from core.network.protocols import Loss, evaluating
from core.network.sequential import Sequential
from core.training.evaluate import mean_loss


class BestEpoch:
    """Remembers the best epoch's weights on (x_val, y_val), asks the loop to stop after
    `patience` epochs without a lower validation loss (None: never), restores them."""

    def __init__(self, model: Sequential, loss: Loss, x_val: torch.Tensor, y_val: torch.Tensor,
                 patience: int | None, rows: int | None = None) -> None:
        self.model, self.loss, self.patience = model, loss, patience
        self.rows = rows  # rows per evaluation slice (core.training.evaluate.slice_rows)
        self.x_val, self.y_val = x_val, y_val
        self.best_loss, self.best_epoch, self.weights = math.inf, 0, None

    def after(self, then: Callable[[int, float], Any]) -> Callable[[int, float], bool]:
        """`then`, followed by the validation check: the loop's `on_epoch`."""
        def after_epoch(epoch: int, train_loss: float) -> bool:
            then(epoch, train_loss)
            with evaluating(self.model):
                value = mean_loss(self.model, self.loss, self.x_val, self.y_val, self.rows)
            if value < self.best_loss:
                self.best_loss, self.best_epoch = value, epoch
                self.weights = [t.clone() for t in self.state()]
            return self.patience is not None and epoch - self.best_epoch >= self.patience
        return after_epoch

    def state(self) -> list[torch.Tensor]:
        """The weights and the running statistics: what the best epoch's network was."""
        return [p.value for p in self.model.parameters()] + list(self.model.buffers().values())

    def restore(self) -> None:
        if self.weights is not None:
            for tensor, value in zip(self.state(), self.weights):
                tensor.copy_(value)
