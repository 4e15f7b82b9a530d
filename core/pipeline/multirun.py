"""Many runs of one configuration: seeds seed, seed+1, ..., and their statistics.

Run i of `run_many(settings, n)` is `train(replace(settings, seed=settings.seed + i))`: its
seed draws its data, its weights and its shuffling, so any run can be replayed alone: bit
for bit when the runs went one at a time (`together=False`), to rounding when they trained
together as a batched ensemble, whose batched matmuls may add in another order.
Standard deviations are sample standard deviations (divisor n - 1), 0.0 for a single run.

Under torchrun (or `nn-cli --workers K`) `sweep` splits (configuration, seed) pairs across
the processes, each rank's share trained as above, and gathers the results on rank 0.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core import errors
from core.errors import NNError, SettingsError
from core.lazy import torch
from core.files.model_file import in_features_of, model_state
from core.network.assemble import build_stack
from core.pipeline.ensemble import supports_runs, train_ensemble
from core.pipeline.prepare import device
from core.pipeline.resolve import ResolvedRun, resolve
from core.pipeline.train import train
from core.training.result import TrainResult
from core.plugin.registry import Registry, default_registry
from core.pipeline.sharing import claims, share
from core.training.world import World, from_main
from core.training.settings import DTYPES, MAX_SEED, TrainSettings, has_data_settings

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

    def summary(self) -> dict[str, float | None]:
        """Mean and deviation of the final errors and of the final epoch's loss; the test
        error's are None when the runs held out no test rows (test_fraction 0)."""
        finals = [r.losses[-1] for r in self.results]
        tested = None not in self.test_errors
        return {
            "train_error_mean": statistics.fmean(self.train_errors),
            "train_error_std": std(self.train_errors),
            "test_error_mean": statistics.fmean(self.test_errors) if tested else None,
            "test_error_std": std(self.test_errors) if tested else None,
            "final_loss_mean": statistics.fmean(finals),
            "final_loss_std": std(finals),
        }

    def text(self) -> str:
        """The errors as `nn-cli train` prints them: one run's, or the runs' mean ± std; for
        one run of a dataset, its test set's metrics too."""
        first, runs, seed = self.results[0], len(self.results), self.settings.seed
        regression = first.task == "regression"
        fmt = (lambda v: f"{v:.4g}") if regression else (lambda v: f"{v:.2%}")
        what = "RMSE" if regression else "error"
        if first.test_error is None:  # --test-fraction 0: every row trained
            train = fmt(first.train_error) if runs == 1 else (
                f"{fmt(self.summary()['train_error_mean'])} ± "
                f"{fmt(self.summary()['train_error_std'])}")
            return (f"train {what} {train}   test: none held out (--test-fraction 0 trains on "
                    f"every row; `nn-cli evaluate MODEL --input FILE` measures a held-out file)")
        if runs > 1:
            s = self.summary()
            how = "trained together as one batched ensemble" if self.together else "one at a time"
            return (f"{runs} runs (seeds {seed}-{seed + runs - 1}, {how}), mean ± std:   "
                    f"train {what} {fmt(s['train_error_mean'])} ± {fmt(s['train_error_std'])}   "
                    f"test {what} {fmt(s['test_error_mean'])} ± {fmt(s['test_error_std'])}")
        text = f"train {what} {fmt(first.train_error)}   test {what} {fmt(first.test_error)}"
        if first.stopping_note():
            text += "\n" + first.stopping_note()
        if has_data_settings(self.settings) and first.metrics:
            from core.data.metrics import text_report

            text += (f"\n\ntest set ({first.dataset['name']}, {first.task}):\n"
                     f"{text_report(first.metrics)}")
        return text

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
    resolved: ResolvedRun,
    seeds: Sequence[int],
    registry: Registry,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    together: bool = True,
) -> list[TrainResult]:
    """One independent run per seed: all together as one batched ensemble when `together`
    and every component supports it (core/pipeline/ensemble.py), else one after another."""
    if batched(resolved, len(seeds), registry, together):
        # The runs advance together: the epoch callback gets run None and the mean loss.
        epoch_callback = None if on_epoch is None else (
            lambda epoch, loss: on_epoch(None, epoch, loss)
        )
        results = train_ensemble(resolved, seeds, registry, on_epoch=epoch_callback)
        for i, result in enumerate(results):
            if on_run is not None:
                on_run(i, result)
        return results
    results = []
    for i, seed in enumerate(seeds):
        epoch_callback = None if on_epoch is None else (
            lambda epoch, loss, i=i: on_epoch(i, epoch, loss)
        )
        results.append(train(resolved.with_seed(seed), registry, on_epoch=epoch_callback))
        if on_run is not None:
            on_run(i, results[-1])
    return results


def run_many(
    settings: TrainSettings | ResolvedRun,
    runs: int,
    registry: Registry | None = None,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    together: bool = True,
    world: World | None = None,
) -> MultiRunResult | None:
    """Train `runs` models with seeds settings.seed, settings.seed + 1, ...

    `settings` are resolved as `train` resolves them. `together=False` trains them one after another even where they could train as one
    batched ensemble: slower, and each run then equals its seed's single run bit for bit.
    With `world` (core.training.distributed, under torchrun) the seeds are split across the
    processes (`sweep`, below): rank 0 gets the result, the other ranks None.
    """
    check_runs(settings.settings if isinstance(settings, ResolvedRun) else settings, runs)
    registry = registry or default_registry()
    resolved = resolve(settings, registry)
    settings = resolved.settings
    if world is not None:
        grouped = sweep([resolved], runs, registry, world, on_epoch, on_run, None, together)
        return None if grouped is None else MultiRunResult(
            settings, grouped[0], batched(resolved, runs, registry, together))
    results = train_seeds(resolved, seeds_of(settings, runs), registry, on_epoch, on_run, together)
    return MultiRunResult(settings, results, batched(resolved, runs, registry, together))


def check_runs(settings: TrainSettings, runs: int) -> None:
    """`runs` must be a count >= 1 whose seeds all stay below MAX_SEED."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise SettingsError(f"runs must be an integer >= 1, got {runs!r}")
    if settings.seed + runs > MAX_SEED:
        raise SettingsError(f"seed + runs must stay below {MAX_SEED}, got {settings.seed + runs}")


def batched(resolved: ResolvedRun, runs: int, registry: Registry, together: bool) -> bool:
    """Whether `runs` runs train together as one batched ensemble."""
    return together and runs > 1 and supports_runs(registry, resolved)


def sweep(
    configs: Sequence[ResolvedRun],
    runs: int,
    registry: Registry,
    world: World,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    on_configuration: Callable[[int, int], None] | None = None,
    together: bool = True,
) -> list[list[TrainResult]] | None:
    """Every configuration's `runs` runs, split across the ranks; on rank 0, the results
    of each configuration in seed order, on the other ranks None.

    The work comes in groups (`groups`), each trained as one batched ensemble
    (`together`) or one run after another; a rank that is free takes the next group
    (`claims`), so ranks that draw cheaper configurations take more of them.
    `on_configuration(index, first_run)` precedes each group; the run index that
    `on_epoch` and `on_run` get counts from the configuration's first run. An NNError on any
    rank is raised on every rank.
    """
    work = groups([c.settings for c in configs], runs, world.size)
    done: list[tuple[int, int, TrainResult]] = []  # (configuration, run, result)
    failure = None
    try:
        for index in claims(world, len(work)):
            c, first, seeds = work[index]
            if on_configuration is not None:
                on_configuration(c, first)
            results = train_seeds(configs[c], seeds, registry, shifted(on_epoch, first),
                                  shifted(on_run, first), together)
            done += [(c, first + i, result) for i, result in enumerate(results)]
    except NNError as e:
        failure = (type(e).__name__, str(e))
    sent = [] if world.main else [(c, i, portable(result)) for c, i, result in done]
    world.join()  # where `World.from_env(join=False)` left it for now
    gathered: list[Any] | None = [None] * world.size if world.main else None
    torch.distributed.gather_object((sent, failure), gathered, dst=0)
    failure = from_main(world, next((f for _, f in gathered if f), None) if world.main else None)
    if failure is not None:
        name, message = failure
        raise getattr(errors, name, NNError)(message)
    if not world.main:
        return None
    arrived = [(c, i, rebuilt(payload, registry))
               for rank_sent, _ in gathered for c, i, payload in rank_sent]
    by_config: list[list[TrainResult]] = [[] for _ in configs]
    for c, _, result in sorted(done + arrived, key=lambda item: item[:2]):
        by_config[c].append(result)
    return by_config


def groups(configs: Sequence[TrainSettings], runs: int, ranks: int) -> list[tuple[int, int, list[int]]]:
    """The sweep's units of work, (configuration, its first run, seeds), largest first.

    With at least as many configurations as ranks, each configuration is one group: it
    trains as the same ensemble as in one process, so its numbers are the same bit for
    bit. With fewer, the (configuration, seed) pairs are cut into `ranks` consecutive
    shares, one group per configuration within a share: every rank has work, and a
    configuration's seeds train as two or more smaller ensembles (equal to rounding).
    """
    if len(configs) >= ranks:
        return [(c, 0, seeds_of(settings, runs)) for c, settings in enumerate(configs)]
    pairs = [(c, i) for c in range(len(configs)) for i in range(runs)]
    found = []
    for rank in range(ranks):
        for c, group in itertools.groupby(share(pairs, World(rank, ranks)), key=lambda pair: pair[0]):
            indices = [i for _, i in group]
            found.append((c, indices[0], [configs[c].seed + i for i in indices]))
    return sorted(found, key=lambda group: -len(group[2]))  # stable: ties keep their order


def shifted(callback: Callable[..., None] | None, first: int) -> Callable[..., None] | None:
    """`callback(run, ...)` with `run` counted from a configuration's first run, not the group's."""
    if callback is None:
        return None
    return lambda run, *rest: callback(run if run is None else first + run, *rest)


def portable(result: TrainResult) -> dict[str, Any]:
    """A result as plain data and CPU tensors, to pickle across processes: the network
    travels as its weights and buffers (model_state), rebuilt by name on arrival (plugin
    objects are never pickled)."""
    return {
        "result": replace(result, model=None),
        "in_features": in_features_of(result),
        "state": [t.cpu() for _, t in model_state(result.model)],
    }


def rebuilt(payload: dict[str, Any], registry: Registry) -> TrainResult:
    """The TrainResult `portable` described: its network rebuilt by name, weights copied."""
    result = payload["result"]
    settings = result.settings
    with torch.set_grad_enabled(False):
        model = build_stack(
            registry, result.specs, payload["in_features"], init=settings.init,
            generator=torch.Generator().manual_seed(0),  # overwritten just below
            dtype=DTYPES[settings.dtype], device=device(settings),
        )
        for (_, tensor), value in zip(model_state(model), payload["state"], strict=True):
            tensor.copy_(value)
    return replace(result, model=model)
