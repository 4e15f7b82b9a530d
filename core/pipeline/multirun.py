"""Many runs of one configuration: seeds seed, seed+1, ..., and their statistics.

Run i of `run_many(settings, n)` is `train(replace(settings, seed=settings.seed + i))`: its
seed draws its data, its weights and its shuffling, so any run can be replayed alone: bit
for bit when the runs went one at a time (`together=False`), to rounding when they trained
together as a batched ensemble, whose batched matmuls may add in another order.
Standard deviations are sample standard deviations (divisor n - 1), 0.0 for a single run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.errors import SettingsError
from core.pipeline.ensemble import supports_runs, train_ensemble
from core.pipeline.experiment import TrainResult, train
from core.plugin.registry import Registry, default_registry
from core.training.settings import MAX_SEED, TrainSettings

# on_epoch(run_index, epoch, loss) after each epoch of each run (run_index None: of all the
# runs training together, with their mean loss); on_run(run_index, result)
EpochCallback = Callable[[int | None, int, float], None]
RunCallback = Callable[[int, TrainResult], None]


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0.0 for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class MultiRunResult:
    """The runs of one configuration, in seed order, and their means and deviations."""

    settings: TrainSettings  # the configuration; its seed is the first run's
    results: list[TrainResult]  # one per seed
    together: bool = False  # trained together as one batched ensemble (else one at a time)

    @property
    def seeds(self) -> list[int]:
        return [r.settings.seed for r in self.results]

    @property
    def test_errors(self) -> list[float]:
        return [r.test_error for r in self.results]

    @property
    def train_errors(self) -> list[float]:
        return [r.train_error for r in self.results]

    @property
    def loss_mean(self) -> list[float]:
        """Mean over runs of the training loss of each epoch."""
        return [statistics.fmean(epoch) for epoch in zip(*(r.losses for r in self.results))]

    @property
    def loss_std(self) -> list[float]:
        return [std(epoch) for epoch in zip(*(r.losses for r in self.results))]

    def summary(self) -> dict[str, float]:
        """Mean and deviation of the final errors and of the final epoch's loss."""
        finals = [r.losses[-1] for r in self.results]
        return {
            "train_error_mean": statistics.fmean(self.train_errors),
            "train_error_std": std(self.train_errors),
            "test_error_mean": statistics.fmean(self.test_errors),
            "test_error_std": std(self.test_errors),
            "final_loss_mean": statistics.fmean(finals),
            "final_loss_std": std(finals),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "runs": [
                {"seed": r.settings.seed, "train_error": r.train_error,
                 "test_error": r.test_error, "losses": r.losses}
                for r in self.results
            ],
            **self.summary(),
            "together": self.together,
            "loss_mean": self.loss_mean,
            "loss_std": self.loss_std,
            "std": "sample (n - 1)",
        }


def seeds_of(settings: TrainSettings, runs: int) -> list[int]:
    return [settings.seed + i for i in range(runs)]


def train_seeds(
    settings: TrainSettings,
    seeds: Sequence[int],
    registry: Registry,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    together: bool = True,
) -> list[TrainResult]:
    """One independent run per seed: all together as one batched ensemble when `together`
    and every component supports it (core/ensemble.py), else one after another."""
    if batched(settings, len(seeds), registry, together):
        # The runs advance together: the epoch callback gets run None and the mean loss.
        epoch_callback = None if on_epoch is None else (
            lambda epoch, loss: on_epoch(None, epoch, loss)
        )
        results = train_ensemble(settings, seeds, registry, on_epoch=epoch_callback)
        for i, result in enumerate(results):
            if on_run is not None:
                on_run(i, result)
        return results
    results = []
    for i, seed in enumerate(seeds):
        epoch_callback = None if on_epoch is None else (
            lambda epoch, loss, i=i: on_epoch(i, epoch, loss)
        )
        results.append(train(replace(settings, seed=seed), registry, on_epoch=epoch_callback))
        if on_run is not None:
            on_run(i, results[-1])
    return results


def run_many(
    settings: TrainSettings,
    runs: int,
    registry: Registry | None = None,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    together: bool = True,
) -> MultiRunResult:
    """Train `runs` models with seeds settings.seed, settings.seed + 1, ...

    `together=False` trains them one after another even where they could train as one
    batched ensemble: slower, and each run then equals its seed's single run bit for bit.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise SettingsError(f"runs must be an integer >= 1, got {runs!r}")
    if settings.seed + runs > MAX_SEED:
        raise SettingsError(f"seed + runs must stay below {MAX_SEED}, got {settings.seed + runs}")
    registry = registry or default_registry()
    results = train_seeds(settings, seeds_of(settings, runs), registry, on_epoch, on_run, together)
    return MultiRunResult(settings, results, batched(settings, runs, registry, together))


def batched(settings: TrainSettings, runs: int, registry: Registry, together: bool) -> bool:
    """Whether `runs` runs train together as one batched ensemble."""
    return together and runs > 1 and supports_runs(registry, settings)
