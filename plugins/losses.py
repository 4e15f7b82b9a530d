"""Losses on the network's raw output, averaged over every element of the batch."""

from __future__ import annotations

from core import StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class MSELoss:
    """Mean squared error between output and 0/1 target; class 1 above 0.5."""

    decision_threshold = 0.5

    def __init__(self) -> None:
        self.diff: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.diff = prediction - target  # (batch, out)
        return (self.diff * self.diff).mean()

    def backward(self) -> torch.Tensor:
        if self.diff is None:
            raise StateError("MSELoss.backward called before forward")
        return self.diff * (2.0 / self.diff.numel())


class BCEWithLogitsLoss:
    """Binary cross-entropy on the logit (stable for any logit); class 1 above 0."""

    decision_threshold = 0.0

    def __init__(self) -> None:
        self.logit: torch.Tensor | None = None
        self.target: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.logit, self.target = prediction, target
        # NOTE: -[y log s(x) + (1-y) log(1-s(x))] = max(x,0) - x y + log(1 + exp(-|x|));
        # the right side never takes the log of a rounded-off 0 nor overflows exp.
        per_element = prediction.clamp(min=0) - prediction * target + torch.log1p(
            torch.exp(-prediction.abs())
        )
        return per_element.mean()

    def backward(self) -> torch.Tensor:
        if self.logit is None or self.target is None:
            raise StateError("BCEWithLogitsLoss.backward called before forward")
        return (torch.sigmoid(self.logit) - self.target) / self.logit.numel()


@hookimpl
def register_losses(register):
    register("mse", MSELoss)
    register("bce", BCEWithLogitsLoss)
