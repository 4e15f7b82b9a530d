"""The report's experiment as one call: settings in, trained network and errors out."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from core.data import preprocess
from core.network.assemble import (
    LayerSpec, build_flat_stack, mlp_specs, probe_device, shapes_only, with_vocab,
)
from core.network.shapes import sample_shape
from core.network.summary import layer_table
from core.files.atomic import write_locks
from core.files.checkpoint import AfterEpoch, Checkpoint, Checkpointing, RunState
from core.data.dataset import Dataset, build_dataset, parse_data_text
from core.data.disk import DTYPES
from core.data.split import is_one_hot, loss_tasks, output_width, split_indices, training_targets
from core.training import memory
from core.errors import Interrupted, SettingsError
from core.network.protocols import evaluating, set_training
from core.plugin.registry import Entry, Registry, default_registry
from core.training.schedule import SCHEDULES
from core.network.sequential import Sequential
from core.training.settings import TrainSettings
from core.network.stack import parse_layers
from core.training.evaluate import (
    forward_in_slices, mean_loss, output_errors, output_metrics, run_errors, slice_rows,
)
from core.training.loop import fit
from core.training.result import TrainResult

if TYPE_CHECKING:
    from core.training.distributed import DataParallel, World

# Independent random streams drawn from one seed ("split": test and validation rows).
STREAMS = {"data": 0, "init": 1, "shuffle": 2, "split": 3}
# settings.preprocess -> the function fitting that step on the training inputs
PREPROCESSORS = {"standardize": preprocess.fit_standardize, "none": lambda x: dict(preprocess.IDENTITY)}
# The loss a task trains with when none is chosen (`with_data_defaults`).
TASK_LOSSES = {"binary": "bce", "multiclass": "cross_entropy", "regression": "mse",
               "sequence": "token_cross_entropy"}


def generator(settings: TrainSettings, stream: str) -> torch.Generator:
    """The seeded generator of one random stream of a run."""
    return torch.Generator().manual_seed(settings.seed * 16 + STREAMS[stream])


def device(settings: TrainSettings) -> torch.device:
    """The run's device; a clear error when CUDA is asked for and absent."""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise SettingsError(
            "device 'cuda' is not available here (torch finds no CUDA GPU); accepted: cpu"
        )
    return torch.device(settings.device)


@dataclass
class Data:
    """A run's sets, split, preprocessed and encoded for its loss, on the run's device.

    x (n, features); y what the loss trains on: (n, 1) 0/1, (n, classes) one-hot, or
    (n, targets) regression targets (standardised when the run standardises);
    `labels_*` the raw labels: (n,) class indices, or (n, targets) in the target's units.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    preprocessing: dict[str, Any]  # fitted on the raw training inputs; preprocess.apply replays it
    dataset: Dataset | None = None  # what the data are: task, names, shape (tensors unsplit)
    one_hot: bool = False  # the loss trains one output per class
    labels_train: torch.Tensor | None = None
    labels_test: torch.Tensor | None = None
    x_val: torch.Tensor | None = None  # held out of training to pick the best epoch
    y_val: torch.Tensor | None = None

    @property
    def task(self) -> str:
        return self.dataset.task if self.dataset is not None else "binary"


def load_dataset(settings: TrainSettings, registry: Registry) -> Dataset:
    """The Dataset `settings.data` names, drawn from the run's "data" stream."""
    return build_dataset(
        registry, settings.data, generator=generator(settings, "data"),
        context={"n_train": settings.n_train, "n_test": settings.n_test,
                 "dtype": DTYPES[settings.dtype], "target": settings.target},
    )


def check_loss_fits(registry: Registry, loss_name: str, task: str) -> None:
    """A loss that does not fit the task (bce with 10 classes) names the ones that do."""
    if task in loss_tasks(registry.get("loss", loss_name).factory):
        return
    fitting = [e.name for e in registry.entries("loss") if task in loss_tasks(e.factory)]
    raise SettingsError(
        f"loss {loss_name!r} does not fit this {task} task; losses that do: "
        f"{', '.join(fitting) or 'none registered'}"
    )


@dataclass
class Split:
    """A run's raw rows (float64 x, labels as the Dataset holds them), split three ways."""

    dataset: Dataset
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None


def split_data(settings: TrainSettings, registry: Registry) -> Split:
    """The run's dataset, split: its own test split, or one drawn from the seed's "split"
    stream (stratified for classification); validation rows out of the training rows."""
    dataset = load_dataset(settings, registry)
    x_train, y_train, x_test, y_test = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    split = generator(settings, "split")
    if x_test is None:
        keep, held = split_indices(y_train, settings.test_fraction, split, task=dataset.task)
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
    if settings.val_fraction == 0:
        return Split(dataset, x_train, y_train, x_test, y_test)
    keep, held = split_indices(y_train, settings.val_fraction, split, task=dataset.task,
                               what="validation")
    return Split(dataset, x_train[keep], y_train[keep], x_test, y_test, x_train[held], y_train[held])


def test_rows(settings: TrainSettings, registry: Registry | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test rows, raw: x (n, features) float64 and the Dataset's labels."""
    split = split_data(settings, registry or default_registry())
    return split.x_test, split.y_test


def datasets(settings: TrainSettings, registry: Registry | None = None) -> tuple[torch.Tensor, ...]:
    """The run's raw x_train, y_train, x_test, y_test at its precision, on the CPU, before
    preprocessing: x (n, features); y (n, 1) 0/1 for a binary task (as the disk's always
    were), (n,) class indices for more classes, (n, targets) for regression."""
    split = split_data(settings, registry or default_registry())
    dtype = DTYPES[settings.dtype]

    def labels(y):
        return y.to(dtype).view(-1, 1) if split.dataset.task == "binary" else y

    return split.x_train.to(dtype), labels(split.y_train), split.x_test.to(dtype), labels(split.y_test)


def prepare_data(settings: TrainSettings, registry: Registry | None = None) -> Data:
    """The data of a run: built from its seed, split, preprocessed, moved to its device.

    The one data pipeline: `train` and `train_ensemble` both take their data from here.
    A dataset without its own test split is split with the seed's "split" stream
    (stratified for classification); the validation rows, when asked for, come out of the
    training rows the same way. The preprocessing statistics come from the training inputs
    only and the same map is applied to every set.
    """
    registry = registry or default_registry()
    where, dtype = device(settings), DTYPES[settings.dtype]
    split = split_data(settings, registry)
    dataset = split.dataset
    check_loss_fits(registry, settings.loss, dataset.task)
    one_hot = is_one_hot(registry.get("loss", settings.loss).factory, dataset.task)
    x_train, y_train, x_test, y_test, x_val, y_val = (
        split.x_train, split.y_train, split.x_test, split.y_test, split.x_val, split.y_val
    )
    x_train = x_train.to(dtype)  # the training inputs at the run's precision, as fitted
    # token ids are names, not values: never standardised
    preprocessing = PREPROCESSORS["none" if dataset.task == "sequence" else settings.preprocess](x_train)
    if dataset.task == "regression" and settings.preprocess == "standardize":
        preprocessing["target"] = preprocess.fit_target(y_train)

    def inputs(x):
        return None if x is None else preprocess.apply(preprocessing, x.to(dtype)).to(where)

    def targets(y):
        if y is None:
            return None
        encoded = training_targets(y, dataset.task, dataset.n_classes, one_hot)
        return preprocess.scale_target(preprocessing, encoded).to(dtype).to(where)

    return Data(
        inputs(x_train), targets(y_train), inputs(x_test), targets(y_test), preprocessing,
        dataset, one_hot, y_train.to(where), y_test.to(where), inputs(x_val), targets(y_val),
    )


def network_specs(
    registry: Registry, settings: TrainSettings, out_features: int = 1
) -> list[LayerSpec]:
    """The run's network by registered names: `settings.layers` when given, else the MLP
    with `out_features` outputs (what the data and the loss need, `output_width`)."""
    if settings.layers:  # the whole stack by name; checked before any weight is drawn
        # an embedding or a gpt not given its vocabulary gets the data's (out_features)
        return with_vocab(registry, parse_layers(settings.layers, registry), out_features)
    return mlp_specs(settings.hidden, out_features, settings.act)


def build_network(
    registry: Registry, settings: TrainSettings, specs: list[LayerSpec] | None = None,
    init: torch.Generator | None = None,
    *, in_features: int | tuple[int, ...] = 2, out_features: int = 1,
) -> Sequential:
    """The run's network, its weights drawn from the seed's "init" stream (`init`, if given).

    Modules that draw while training (dropout) go on drawing from that same generator.
    """
    specs = network_specs(registry, settings, out_features) if specs is None else specs
    dtype, where = DTYPES[settings.dtype], device(settings)
    model = build_flat_stack(  # images come in as flat rows, (n, features), like every input
        registry, specs, in_features, init=settings.init,
        generator=generator(settings, "init") if init is None else init, dtype=dtype, device=where,
    )
    if settings.layers:
        check_output_width(model, math.prod(sample_shape(in_features)), out_features, dtype, where)
    return model


def network_summary(settings: TrainSettings, registry: Registry) -> tuple[Any, list[dict[str, Any]]]:
    """(input shape, rows of core.network.summary.layer_table) of the network these settings
    train on their data, built from the seed as `train` builds it; nothing is trained."""
    with torch.set_grad_enabled(False):
        data = prepare_data(settings, registry)
        in_shape, out_features = shape_of(data, registry, settings)
        specs = network_specs(registry, settings, out_features)
        model = build_network(registry, settings, specs, in_features=in_shape,
                              out_features=out_features)
        in_shape = model.input_shape or data.x_train.shape[-1]  # images, or flat rows
        return in_shape, layer_table(model, specs, in_shape, DTYPES[settings.dtype])


def shape_of(data: Data, registry: Registry, settings: TrainSettings) -> tuple[int, int]:
    """(in_features, out_features) of the run's network: in_features is the width of a
    row, or one sample's shape when it has several dimensions (digits: (1, 8, 8))."""
    loss = registry.get("loss", settings.loss).factory
    shape = tuple(data.dataset.input_shape)
    return (shape if len(shape) > 1 else data.x_train.shape[-1]), output_width(data.dataset, loss)


def check_optimizer_args(entry: Entry, settings: TrainSettings) -> None:
    """Every extra optimizer option must be a keyword its factory accepts."""
    accepted = [
        name for name, p in inspect.signature(entry.factory).parameters.items()
        if name not in ("parameters", "lr") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for key, _ in settings.optimizer_args:
        if key not in accepted:
            raise SettingsError(
                f"optimizer {entry.name!r} has no option {key!r}; "
                f"accepted: {', '.join(accepted) or 'none'}"
            )


def check(settings: TrainSettings, registry: Registry, runs: int = 1) -> None:
    """Fail on any name or optimizer option the registry cannot build, or on a run too big
    for memory (`runs` networks trained together), before any work."""
    names = [("loss", settings.loss), ("initializer", settings.init)]
    if not settings.layers:
        names.append(("activation", settings.act))
    for kind, name in names:
        registry.get(kind, name)
    check_optimizer_args(registry.get("optimizer", settings.optimizer), settings)
    device(settings)
    with torch.set_grad_enabled(False):
        # The data's own size first, as the settings give it (the disk task's 2 features),
        # then the network's, once the data say how wide it is: nothing big is allocated
        # before both are known to fit.
        check_memory(settings, None, runs)
        data = prepare_data(settings, registry)  # the dataset, its split and the loss's fit
        in_features, out_features = shape_of(data, registry, settings)  # maybe a sample shape
        width = math.prod(sample_shape(in_features))  # of a row, as the network takes it
        specs = network_specs(registry, settings, out_features)
        shapes = shapes_only(registry, specs, in_features, DTYPES[settings.dtype])
        if shapes is not None:
            check_memory(settings, shapes, runs, width)
        if settings.layers:  # names, arguments, shapes and the output width
            if shapes is None:  # checks them, at the cost of the weights
                build_network(registry, settings, in_features=in_features, out_features=out_features)
            else:
                check_output_width(shapes, width, out_features, DTYPES[settings.dtype],
                                   probe_device(shapes))


def check_memory(
    settings: TrainSettings, shapes: Sequential | None, runs: int = 1, in_features: int = 2
) -> None:
    """Refuse a run that cannot fit in memory before it allocates, naming what to lower.

    `shapes` is the run's network built without its values (`shapes_only`; None: count the
    data alone), `in_features` the width of a row (the product of an image's shape); `runs` networks trained together (an ensemble) each need their own weights
    and activations.
    """
    dtype = DTYPES[settings.dtype]
    network, per_point = (0, 0) if shapes is None else memory.network_bytes(
        shapes, in_features, 1, dtype, probe_device(shapes))
    per_point = runs * per_point + memory.data_bytes(1, in_features)
    size = "--layers" if settings.layers else "--hidden"
    memory.check_fits({
        size if runs == 1 else f"{size} or --runs": runs * network,
        "n_train": settings.n_train * per_point,  # every training point goes through at once
        "n_test": settings.n_test * per_point,
    }, "this run" if runs == 1 else f"these {runs} runs")


def check_output_width(
    model: Sequential, in_features: int, out_features: int, dtype: torch.dtype,
    where: torch.device | str = "cpu",
) -> None:
    """A stack must end with as many outputs as the data and loss need (one for the disk)."""
    with evaluating(model):
        width = model.forward(torch.zeros(1, in_features, dtype=dtype, device=where)).shape[-1]
    if width != out_features:
        raise SettingsError(
            f"layers must end with {'one' if out_features == 1 else out_features} output "
            f"feature{'s' if out_features > 1 else ''} for this task, got {width}; "
            f"end the stack with linear:out_features={out_features}"
        )


def data_parallel(
    world: World, settings: TrainSettings, model: Sequential, checkpoint: Checkpointing | None
) -> DataParallel:
    """This process's part in a data-parallel run, once every rank is checked to run the
    same settings (and to checkpoint to the same file)."""
    from core.training.distributed import DataParallel, check_same_everywhere

    check_same_everywhere(world, "the run's settings", settings, lambda s: str(s.to_dict()))
    check_same_everywhere(world, "--checkpoint", checkpoint and str(checkpoint.path), str)
    return DataParallel(world, model)


def train(
    settings: TrainSettings,
    registry: Registry | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    checkpoint: Checkpointing | None = None,
    resume: Checkpoint | None = None,
    world: World | None = None,
) -> TrainResult:
    """Draw the data, build the network by name, train it and measure its errors.

    A loss or weight that stops being finite raises DivergenceError. With `checkpoint`,
    the run's state is written every `checkpoint.every` epochs; with `resume` (from
    `core.files.checkpoint.read_checkpoint`, whose `.settings` must be `settings`), training
    goes on from it and ends exactly as the uninterrupted run.

    With `world` (core.training.distributed.World.from_env(), under torchrun) the run is data
    parallel: every process calls this with the same settings (checked), takes its slice of
    each batch, and the gradients are summed across processes at each step; rank 0 alone
    writes the checkpoint. Every process returns the same trained network.
    """
    if resume is not None and resume.settings != settings:
        raise SettingsError("resume: the checkpoint's settings differ from the run's")
    if settings.val_fraction > 0 and (resume is not None or checkpoint is not None):
        raise SettingsError("checkpoints and resume are for runs without --val-fraction "
                            "(the best epoch's weights are kept in memory only)")
    registry = registry or default_registry()
    loss = registry.create("loss", settings.loss)
    optimizer_entry = registry.get("optimizer", settings.optimizer)
    check_optimizer_args(optimizer_entry, settings)
    # One run per checkpoint file: a second is refused; what a killed writer left is removed.
    # Data parallel, rank 0 alone writes the checkpoint, so it alone holds the lock.
    writes = checkpoint is not None and (world is None or world.main)
    with write_locks(checkpoint.path if writes else None), torch.set_grad_enabled(False):
        data = prepare_data(settings, registry)
        in_features, out_features = shape_of(data, registry, settings)
        specs = network_specs(registry, settings, out_features)
        init = generator(settings, "init")
        model = build_network(registry, settings, specs, init, in_features=in_features,
                              out_features=out_features)
        optimizer = optimizer_entry.create(
            parameters=model.parameters(), lr=settings.lr, **dict(settings.optimizer_args)
        )
        shard = None if world is None else data_parallel(world, settings, model, checkpoint)
        shuffle = generator(settings, "shuffle")
        # "init" too: dropout draws its masks from it, so a resumed run needs its state.
        run = RunState(settings, specs, model, optimizer, {"shuffle": shuffle, "init": init},
                       registry, in_features=data.x_train.shape[-1], preprocessing=data.preprocessing,
                       dataset=data_metadata(data))
        # Before any restore: a resumed run judges divergence as the uninterrupted one does.
        # In evaluation: measuring moves no running statistic and draws no dropout mask.
        with evaluating(model):
            initial_loss = mean_loss(model, loss, data.x_train, data.y_train, slice_rows(data.task))
        done = resume.restore(specs, model, optimizer, run.generators) if resume else []
        if shard is not None:  # after any restore: every rank goes on from the same state
            shard.check_same_start(len(done))
            checkpoint = checkpoint if shard.world.main else None
        after_epoch = AfterEpoch(
            run, checkpoint, on_epoch, resumed=resume, initial_loss=initial_loss
        )
        best = BestEpoch(model, loss, data, settings.patience) if data.x_val is not None else None
        schedule = SCHEDULES[settings.schedule]
        try:
            losses = done + fit(
                model, loss, optimizer, data.x_train, data.y_train,
                epochs=settings.epochs - len(done), batch_size=settings.batch_size,
                generator=shuffle, on_epoch=after_epoch if best is None else best.after(after_epoch),
                # fit counts its epochs from 1; the schedule counts from the run's first
                lr_at=lambda epoch: schedule(settings.lr, len(done) + epoch, settings.epochs),
                shard=shard,
            )
        except KeyboardInterrupt:  # Ctrl-C: say how far it got and what is on disk
            saved = after_epoch.last_checkpoint
            raise Interrupted(len(after_epoch.losses) + 1, settings.epochs,
                              str(checkpoint.path) if saved else None, saved) from None
        if best is not None:
            best.restore()
        return result_of(settings, losses, specs, model, loss, data,
                         best_epoch=None if best is None else best.best_epoch)


def result_of(
    settings, losses, specs, model, loss, data: Data, best_epoch: int | None = None
) -> TrainResult:
    """The TrainResult of a trained network: its errors and, on the test set, its metrics."""
    set_training(model, False)  # a trained network measures and predicts in evaluation
    how = dict(task=data.task, one_hot=data.one_hot, preprocessing=data.preprocessing)
    train_error = run_errors(model, loss, data.x_train, data.labels_train, **how).item()
    with torch.set_grad_enabled(False):
        test_outputs = forward_in_slices(model, data.x_test, slice_rows(data.task))  # once, for the error and the metrics
    test_error = output_errors(test_outputs, loss, data.labels_test, **how).item()
    metrics = output_metrics(test_outputs, loss, data.labels_test,
                             class_names=data.dataset.class_names, **how)
    return TrainResult(settings, losses, train_error, test_error, specs, model, data.preprocessing,
                       dataset=data_metadata(data), metrics=metrics, best_epoch=best_epoch)


def data_metadata(data: Data) -> dict[str, Any]:
    """What model files and results record of the data: the Dataset's metadata, and
    whether the network has one output per class (`one_hot`)."""
    return {**data.dataset.metadata(), "one_hot": data.one_hot}


class BestEpoch:
    """Early stopping on the validation loss: remembers the best epoch's weights, asks the
    loop to stop after `patience` epochs without a lower validation loss, restores them."""

    def __init__(self, model: Sequential, loss, data: Data, patience: int | None) -> None:
        self.model, self.loss, self.data, self.patience = model, loss, data, patience
        self.best_loss, self.best_epoch, self.weights = math.inf, 0, None

    def after(self, then: Callable[[int, float], Any]) -> Callable[[int, float], bool]:
        def after_epoch(epoch: int, train_loss: float) -> bool:
            then(epoch, train_loss)
            with evaluating(self.model):
                value = mean_loss(self.model, self.loss, self.data.x_val, self.data.y_val,
                                  slice_rows(self.data.task))
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


def with_data_defaults(
    settings: TrainSettings, registry: Registry, given: Collection[str] = ()
) -> TrainSettings:
    """`settings` with the dataset's defaults for every field not in `given`.

    A dataset factory may carry `defaults`, a dict of TrainSettings fields that suit it
    (digits: a wider network, fewer epochs); the loss defaults to the task's
    (TASK_LOSSES: bce for two classes, cross_entropy for more, mse for regression).
    `nn-cli train` passes the options typed on the command line as `given`; the disk
    has no defaults of its own, so its runs are unchanged.
    """
    name, _ = parse_data_text(settings.data)
    suggested = dict(getattr(registry.get("dataset", name).factory, "defaults", {}))
    if "loss" not in given and "loss" not in suggested:
        with torch.set_grad_enabled(False):
            suggested["loss"] = TASK_LOSSES[load_dataset(settings, registry).task]
    if "layers" in given:  # a stack typed by hand replaces act and hidden
        suggested = {k: v for k, v in suggested.items() if k not in ("act", "hidden")}
    changes = {k: v for k, v in suggested.items() if k not in given}
    return dataclasses.replace(settings, **changes) if changes else settings
