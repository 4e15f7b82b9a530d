"""What one training run produced: settings, losses, errors, the network and its input step.

It lives below core/files and core/pipeline so that both can name it: model files save a
`TrainResult`, and `core.pipeline.train.train` returns one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.data import preprocess
from core.network.assemble import LayerSpec
from core.network.sequential import Sequential
from core.training.settings import TrainSettings, has_data_settings


@dataclass
class TrainResult:
    """What a run produced."""

    settings: TrainSettings
    losses: list[float]  # mean training loss of each epoch
    # fraction of points misclassified at the end (regression: the RMSE, in the target's units)
    train_error: float
    test_error: float | None  # None: no row was held out for testing (test_fraction 0)
    specs: list[LayerSpec]  # the network, by registered names and arguments
    model: Sequential = field(repr=False)
    # the input step fitted on the training inputs; `core.data.preprocess.apply` replays it
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(preprocess.IDENTITY))
    # what the data were (core.Dataset.metadata(): task, feature and class names, shape)
    dataset: dict[str, Any] | None = None
    # on the test set: per-class table and confusion matrix, or RMSE, MAE and R^2
    metrics: dict[str, Any] | None = None
    best_epoch: int | None = None  # with a validation set: the epoch whose weights were kept

    @property
    def task(self) -> str:
        return (self.dataset or {}).get("task", "binary")

    def stopping_note(self) -> str | None:
        """With a validation set, a line saying where training stopped and which epoch's
        weights were kept; None without one."""
        if self.best_epoch is None:
            return None
        ran, epochs = len(self.losses), self.settings.epochs
        kept = f"kept the weights of epoch {self.best_epoch} (the lowest validation loss)"
        if ran < epochs:
            return (f"stopped early after epoch {ran} of {epochs}: no lower validation loss for "
                    f"{self.settings.patience} epochs; {kept}")
        return f"trained all {epochs} epochs; {kept}"

    def to_dict(self) -> dict[str, Any]:
        d = {
            "settings": self.settings.to_dict(),
            "train_error": self.train_error,
            "test_error": self.test_error,
            "losses": self.losses,
            "preprocessing": self.preprocessing,
        }
        if has_data_settings(self.settings):  # the disk's JSON stays as it was before datasets
            d.update(task=self.task, dataset=self.dataset, metrics=self.metrics,
                     best_epoch=self.best_epoch)
        return d

