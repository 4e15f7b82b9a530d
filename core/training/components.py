"""A run's loss and optimizer, by name: the one place each is constructed, so a run built
for training, for the ensemble, for the playground or read back from a file gets them alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.network.protocols import Loss, Optimizer, Parameter
    from core.plugin.registry import Registry
    from core.training.settings import TrainSettings


def make_loss(registry: Registry, settings: TrainSettings) -> Loss:
    """The run's loss, by name."""
    return registry.create("loss", settings.loss)


def make_optimizer(registry: Registry, settings: TrainSettings, parameters: list[Parameter]) -> Optimizer:
    """The run's optimizer over `parameters`, with its options (checked when the run was
    resolved, core/pipeline/resolve.py)."""
    return registry.create("optimizer", settings.optimizer, parameters=parameters,
                           lr=settings.lr, **dict(settings.optimizer_args))
