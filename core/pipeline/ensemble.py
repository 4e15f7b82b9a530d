"""Many runs at once: N networks trained together as one batched ensemble.

Every parameter gets a leading run dimension and every matmul becomes a batched one, so N
small networks cost about as many Python-level operations as one. Run i is
`train(replace(settings, seed=seeds[i]))`: its own data, initial weights and batch order,
all drawn from its own seed, the same bit for bit; its training agrees to rounding, as
batched matmuls may add in another order than a single run's. A component joins the ensemble by declaring
`supports_runs = True` (and, for a layer, accepting `runs: int`, giving each parameter a
leading run dimension in the order of its single-run `parameters()`); when any component
of the settings does not, the runs are trained one at a time, each exactly its seed's run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from core.network.assemble import build_flat_stack, components
from core.network.protocols import evaluating, set_training
from core.pipeline.prepare import Run, prepare
from core.pipeline.resolve import EVERY_FIELD, ResolvedRun, resolve
from core.pipeline.train import train
from core.plugin.registry import Registry, default_registry
from core.training.components import make_loss, make_optimizer
from core.training.evaluate import forward_in_slices, output_errors, output_metrics, run_errors
from core.training.loop import divergence, divergence_error, fit_runs
from core.training.penalty import Penalty
from core.training.result import TrainResult
from core.training.settings import TrainSettings


def supports_runs(registry: Registry, run: TrainSettings | ResolvedRun) -> bool:
    """Whether every component the run names declares `supports_runs = True`."""
    resolved = resolve(run, registry, EVERY_FIELD)  # as named: no default changes a name here
    settings = resolved.settings
    if settings.val_fraction > 0:  # each run keeps its own best epoch: one at a time
        return False
    named = components(resolved.network_specs(1))
    named += [("loss", settings.loss), ("optimizer", settings.optimizer)]
    return all(getattr(registry.get(kind, name).factory, "supports_runs", False)
               for kind, name in named)


def train_ensemble(
    settings: TrainSettings | ResolvedRun,
    seeds: Sequence[int],
    registry: Registry | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[TrainResult]:
    """Train one run per seed, together where the components allow; results in seed order.

    `settings` are resolved as `train` resolves them. `on_epoch(epoch, loss)` follows each
    epoch with the mean loss over the runs (when the runs go one at a time, it follows each
    epoch of each run, as in `train`).
    """
    registry = registry or default_registry()
    resolved = resolve(settings, registry)
    if not seeds:
        return []
    if not supports_runs(registry, resolved):
        return [train(resolved.with_seed(seed), registry, on_epoch) for seed in seeds]
    # The first run is checked for all of them (same shapes); each run its own data.
    runs = [prepare(resolved.with_seed(seed), registry, runs=len(seeds), check=i == 0)
            for i, seed in enumerate(seeds)]
    with torch.set_grad_enabled(False):
        return _train_together(registry, runs, on_epoch)


def _train_together(registry: Registry, runs: list[Run], on_epoch) -> list[TrainResult]:
    settings, first = runs[0].settings, runs[0]
    loss = make_loss(registry, settings)
    data = [run.data for run in runs]
    x_train = torch.stack([d.x_train for d in data])  # (runs, n_train, in)
    y_train = torch.stack([d.y_train for d in data])  # (runs, n_train, out)
    x_test = torch.stack([d.x_test for d in data])  # (runs, n_test, in)
    labels_train = torch.stack([d.labels_train for d in data])  # (runs, n_train, ...)
    labels_test = torch.stack([d.labels_test for d in data])  # (runs, n_test, ...)

    # Each run's network is built alone, drawing its weights from its own seed; the
    # ensemble starts from those weights stacked, and hands the trained ones back.
    specs = first.specs
    singles = [run.model for run in runs]
    ensemble = build_flat_stack(
        registry, specs, first.in_features, init=settings.init,
        generator=torch.Generator().manual_seed(0),  # overwritten just below
        dtype=first.dtype, device=first.device, runs=len(runs),
    )
    stacked = ensemble.parameters()
    per_run = [model.parameters() for model in singles]
    for j, p in enumerate(stacked):
        p.value.copy_(torch.stack([params[j].value for params in per_run]))  # (runs, ...)
    for name, buffer in ensemble.buffers().items():  # running statistics, (runs, ...)
        buffer.copy_(torch.stack([model.buffers()[name] for model in singles]))
    for j, module in enumerate(ensemble.modules):  # dropout: run i draws as its own network
        if getattr(module, "generators", None) is not None:
            module.generators = [model.modules[j].generator for model in singles]

    optimizer = make_optimizer(registry, settings, stacked)

    with evaluating(ensemble):  # moves no running statistic, draws no mask
        initial_losses = loss.forward(forward_in_slices(ensemble, x_train), y_train).tolist()  # (runs,)

    def after_epoch(epoch: int, run_losses: list[float]) -> None:
        check_runs([run.settings for run in runs], stacked, epoch, run_losses, initial_losses)
        if on_epoch is not None:
            on_epoch(epoch, sum(run_losses) / len(run_losses))

    losses = fit_runs(
        ensemble, loss, optimizer, x_train, y_train, epochs=settings.epochs,
        batch_size=settings.batch_size,
        generators=[run.generators["shuffle"] for run in runs], on_epoch=after_epoch,
        lr_at=first.lr_at, penalty=Penalty(settings.l1, settings.l2),
    )
    set_training(ensemble, False)  # the trained networks measure in evaluation
    # Each run's data share a task, an encoding and (per run) a preprocessing.
    how = dict(task=data[0].task, one_hot=data[0].one_hot)
    test_outputs = forward_in_slices(ensemble, x_test)  # (runs, n_test, out): errors and metrics
    if how["task"] == "regression":  # each run maps its outputs back with its own statistics
        outputs = forward_in_slices(ensemble, x_train), test_outputs  # (runs, n, targets) each
        train_errors, test_errors = (
            [output_errors(out[i], loss, d_labels(d), preprocessing=d.preprocessing, **how).item()
             for i, d in enumerate(data)]
            for out, d_labels in zip(outputs, (lambda d: d.labels_train, lambda d: d.labels_test))
        )
    else:
        train_errors = run_errors(ensemble, loss, x_train, labels_train, preprocessing={},
                                  **how).tolist()  # (runs,)
        test_errors = output_errors(test_outputs, loss, labels_test, preprocessing={},
                                    **how).tolist()  # (runs,)
    for j, p in enumerate(stacked):
        for i, params in enumerate(per_run):
            params[j].value.copy_(p.value[i])
    for name, buffer in ensemble.buffers().items():
        for i, model in enumerate(singles):
            model.buffers()[name].copy_(buffer[i])
    results = []
    for i, (run, d) in enumerate(zip(runs, data)):
        if len(d.x_test) == 0:  # --test-fraction 0: nothing held out, nothing to report
            results.append(TrainResult(run.settings, losses[i], train_errors[i], None, specs,
                                       singles[i], d.preprocessing, dataset=d.metadata()))
            continue
        metrics = output_metrics(test_outputs[i], loss, d.labels_test, preprocessing=d.preprocessing,
                                 class_names=d.dataset.class_names,
                                 images=len(d.dataset.input_shape) > 1, **how)
        results.append(TrainResult(
            run.settings, losses[i], train_errors[i], test_errors[i], specs, singles[i],
            d.preprocessing, dataset=d.metadata(), metrics=metrics,
        ))
    return results


def check_runs(
    runs: list[TrainSettings], stacked: list, epoch: int, losses: list[float],
    initial_losses: list[float],
) -> None:
    """Stop as `train` would when any run diverges (core.training.loop.divergence), naming it."""
    finite = torch.stack([p.value.flatten(1).isfinite().all(dim=1) for p in stacked])  # (params, runs)
    reasons = [
        (run.seed, divergence(loss, ok, initial))
        for run, loss, ok, initial in zip(runs, losses, finite.all(dim=0).tolist(), initial_losses)
    ]
    bad = [seed for seed, why in reasons if why is not None]
    if not bad:
        return
    what = next(why for _, why in reasons if why is not None)
    raise divergence_error(epoch, what, runs[0].lr, where=f" (seed {', '.join(map(str, bad))})")
