"""Train: a prepared Run -> a trained network and its errors (`train_run`), and `train`, the
whole path in one call: resolve -> prepare -> train, as `nn-cli train` takes it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import torch

from core.data.preparation import Data
from core.errors import Interrupted, SettingsError
from core.files.atomic import write_locks
from core.files.checkpoint import AfterEpoch, Checkpoint, Checkpointing, RunState
from core.network.protocols import Loss, evaluating, set_training
from core.network.assemble import LayerSpec
from core.network.sequential import Sequential
from core.pipeline.prepare import Run, prepare
from core.pipeline.resolve import EVERY_FIELD, ResolvedRun, resolve
from core.plugin.registry import Registry, default_registry
from core.training.early_stopping import BestEpoch
from core.training.evaluate import (
    forward_in_slices, mean_loss, output_errors, output_metrics, run_errors, slice_rows,
)
from core.training.loop import fit
from core.training.penalty import Penalty
from core.training.result import TrainResult
from core.training.settings import TrainSettings

if TYPE_CHECKING:
    from core.training.distributed import DataParallel, World


def train(
    settings: TrainSettings | ResolvedRun,
    registry: Registry | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    checkpoint: Checkpointing | None = None,
    resume: Checkpoint | None = None,
    world: World | None = None,
    given: Collection[str] | None = None,
    watch: Callable[[int, Sequential, Data], Any] | None = None,
) -> TrainResult:
    """Resolve the settings (the dataset's defaults and the task's loss for every field not
    in `given`: by default those left at their defaults), prepare the run, train it.

    The same options give the same run as `nn-cli train`. With `resume` (from
    `core.files.checkpoint.read_checkpoint`, whose `.settings` must be `settings`) the
    settings are the checkpoint's, whole: no default applies. See `train_run`.
    """
    registry = registry or default_registry()
    resolved = resolve(settings, registry, EVERY_FIELD if resume is not None else given)
    return train_run(prepare(resolved, registry), on_epoch, checkpoint=checkpoint,
                     resume=resume, world=world, watch=watch)


def train_run(
    run: Run,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    checkpoint: Checkpointing | None = None,
    resume: Checkpoint | None = None,
    world: World | None = None,
    watch: Callable[[int, Sequential, Data], Any] | None = None,
) -> TrainResult:
    """Train a prepared run and measure its errors.

    `watch(epoch, model, data)`, if given, follows each epoch (after early stopping has
    seen it): a search measures the network on its held-out rows there, and may stop the
    run by raising (a pruned trial, core/pipeline/tune.py).

    A loss or weight that stops being finite raises DivergenceError. With `checkpoint`,
    the run's state is written every `checkpoint.every` epochs; with `resume`, training
    goes on from it and ends exactly as the uninterrupted run.

    With `world` (core.training.distributed.World.from_env(), under torchrun) the run is data
    parallel: every process calls this with the same settings (checked), takes its slice of
    each batch, and the gradients are summed across processes at each step; rank 0 alone
    writes the checkpoint. Every process returns the same trained network.
    """
    settings = run.settings
    if resume is not None and resume.settings != settings:
        raise SettingsError("resume: the checkpoint's settings differ from the run's")
    if settings.val_fraction > 0 and (resume is not None or checkpoint is not None):
        raise SettingsError("checkpoints and resume are for runs without --val-fraction "
                            "(the best epoch's weights are kept in memory only)")
    # One run per checkpoint file: a second is refused; what a killed writer left is removed.
    # Data parallel, rank 0 alone writes the checkpoint, so it alone holds the lock.
    writes = checkpoint is not None and (world is None or world.main)
    with write_locks(checkpoint.path if writes else None), torch.set_grad_enabled(False):
        data, model, loss, optimizer = run.data, run.model, run.loss, run.optimizer
        shard = None if world is None else data_parallel(world, settings, model, checkpoint)
        state = RunState(settings, run.specs, model, optimizer, run.generators, run.registry,
                         in_features=data.x_train.shape[-1], preprocessing=data.preprocessing,
                         dataset=data.metadata())
        # Before any restore: a resumed run judges divergence as the uninterrupted one does.
        # In evaluation: measuring moves no running statistic and draws no dropout mask.
        with evaluating(model):
            initial_loss = mean_loss(model, loss, data.x_train, data.y_train, slice_rows(data.task))
        done = resume.restore(run.specs, model, optimizer, state.generators) if resume else []
        if shard is not None:  # after any restore: every rank goes on from the same state
            shard.check_same_start(len(done))
            checkpoint = checkpoint if shard.world.main else None
        after_epoch = AfterEpoch(
            state, checkpoint, on_epoch, resumed=resume, initial_loss=initial_loss
        )
        best = (None if data.x_val is None
                else BestEpoch(model, loss, data.x_val, data.y_val, settings.patience,
                               slice_rows(data.task)))
        each_epoch = after_epoch if best is None else best.after(after_epoch)
        if watch is not None:
            each_epoch = watched(each_epoch, watch, model, data)
        try:
            losses = done + fit(
                model, loss, optimizer, data.x_train, data.y_train,
                epochs=settings.epochs - len(done), batch_size=settings.batch_size,
                generator=run.generators["shuffle"], on_epoch=each_epoch,
                # fit counts its epochs from 1; the schedule counts from the run's first
                lr_at=lambda epoch: run.lr_at(len(done) + epoch),
                shard=shard, penalty=Penalty(settings.l1, settings.l2),
            )
        except KeyboardInterrupt:  # Ctrl-C: say how far it got and what is on disk
            saved = after_epoch.last_checkpoint
            raise Interrupted(len(after_epoch.losses) + 1, settings.epochs,
                              str(checkpoint.path) if saved else None, saved) from None
        if best is not None:
            best.restore()
        result = result_of(settings, losses, run.specs, model, loss, data,
                           best_epoch=None if best is None else best.best_epoch)
        result.defaults = [d.to_dict() for d in run.resolved.chosen]
        return result


def watched(then: Callable[[int, float], Any], watch, model: Sequential, data: Data):
    """`then`, and after it `watch(epoch, model, data)`; stops when `then` says so."""
    def each_epoch(epoch: int, loss: float) -> Any:
        stop = then(epoch, loss)
        watch(epoch, model, data)
        return stop
    return each_epoch


def data_parallel(
    world: World, settings: TrainSettings, model: Sequential, checkpoint: Checkpointing | None
) -> DataParallel:
    """This process's part in a data-parallel run, once every rank is checked to run the
    same settings (and to checkpoint to the same file)."""
    from core.training.distributed import DataParallel, check_same_everywhere

    check_same_everywhere(world, "the run's settings", settings, lambda s: str(s.to_dict()))
    check_same_everywhere(world, "--checkpoint", checkpoint and str(checkpoint.path), str)
    return DataParallel(world, model)


def result_of(
    settings: TrainSettings, losses: list[float], specs: list[LayerSpec], model: Sequential,
    loss: Loss, data: Data, best_epoch: int | None = None,
) -> TrainResult:
    """The TrainResult of a trained network: its errors and, on the test set, its metrics
    (None for both when no row was held out: --test-fraction 0)."""
    set_training(model, False)  # a trained network measures and predicts in evaluation
    how = dict(task=data.task, one_hot=data.one_hot, preprocessing=data.preprocessing)
    train_error = run_errors(model, loss, data.x_train, data.labels_train, **how).item()
    if len(data.x_test) == 0:
        return TrainResult(settings, losses, train_error, None, specs, model, data.preprocessing,
                           dataset=data.metadata(), best_epoch=best_epoch)
    with torch.set_grad_enabled(False):
        test_outputs = forward_in_slices(model, data.x_test, slice_rows(data.task))  # once: error and metrics
    test_error = output_errors(test_outputs, loss, data.labels_test, **how).item()
    metrics = output_metrics(test_outputs, loss, data.labels_test,
                             class_names=data.dataset.class_names,
                             images=len(data.dataset.input_shape) > 1, **how)
    return TrainResult(settings, losses, train_error, test_error, specs, model, data.preprocessing,
                       dataset=data.metadata(), metrics=metrics, best_epoch=best_epoch)
