"""What one training run produced: settings, losses, errors, the network and its input step.

It lives below core/files and core/pipeline so that both can name it: model files save a
`TrainResult`, and `core.pipeline.experiment.train` returns one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.data import preprocess
from core.network.assemble import LayerSpec
from core.network.sequential import Sequential
from core.training.settings import TrainSettings


@dataclass
class TrainResult:
    """What a run produced."""

    settings: TrainSettings
    losses: list[float]  # mean training loss of each epoch
    train_error: float  # fraction of training points misclassified at the end
    test_error: float  # fraction of test points misclassified at the end
    specs: list[LayerSpec]  # the network, by registered names and arguments
    model: Sequential = field(repr=False)
    # the input step fitted on the training inputs; `core.data.preprocess.apply` replays it
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(preprocess.IDENTITY))

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "train_error": self.train_error,
            "test_error": self.test_error,
            "losses": self.losses,
            "preprocessing": self.preprocessing,
        }
