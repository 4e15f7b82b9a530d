"""The report's experiment as one call: settings in, trained network and errors out."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from core.data import preprocess
from core.network.assemble import LayerSpec, build_stack, mlp_specs, shapes_only
from core.files.atomic import write_locks
from core.files.checkpoint import AfterEpoch, Checkpoint, Checkpointing, RunState
from core.data.disk import DTYPES, disk_dataset
from core.training import memory
from core.errors import SettingsError
from core.plugin.registry import Entry, Registry, default_registry
from core.training.schedule import SCHEDULES
from core.network.sequential import Sequential
from core.training.settings import TrainSettings
from core.network.stack import parse_layers
from core.training.loop import error_rate, fit
from core.training.result import TrainResult

# Independent random streams drawn from one seed.
STREAMS = {"data": 0, "init": 1, "shuffle": 2}
# settings.preprocess -> the function fitting that step on the training inputs
PREPROCESSORS = {"standardize": preprocess.fit_standardize, "none": lambda x: dict(preprocess.IDENTITY)}


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
    """A run's training and test sets, preprocessed: x (n, 2), y (n, 1), on the run's device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    preprocessing: dict[str, Any]  # fitted on the raw training inputs; preprocess.apply replays it


def datasets(settings: TrainSettings) -> tuple[torch.Tensor, ...]:
    """The run's raw x_train, y_train, x_test, y_test, drawn from its seed on the CPU."""
    dtype = DTYPES[settings.dtype]
    data = generator(settings, "data")
    x_train, y_train = disk_dataset(settings.n_train, data, dtype)
    x_test, y_test = disk_dataset(settings.n_test, data, dtype)
    return x_train, y_train, x_test, y_test


def prepare_data(settings: TrainSettings) -> Data:
    """The data of a run: drawn from its seed, preprocessed, moved to its device.

    The one data pipeline: `train` and `train_ensemble` both take their data from here.
    The preprocessing statistics come from the training inputs only and the same map is
    applied to both sets.
    """
    where = device(settings)
    x_train, y_train, x_test, y_test = datasets(settings)
    preprocessing = PREPROCESSORS[settings.preprocess](x_train)
    x_train, x_test = preprocess.apply(preprocessing, x_train), preprocess.apply(preprocessing, x_test)
    return Data(
        x_train.to(where), y_train.to(where), x_test.to(where), y_test.to(where), preprocessing
    )


def network_specs(registry: Registry, settings: TrainSettings) -> list[LayerSpec]:
    """The run's network by registered names: `settings.layers` when given, else the MLP."""
    if settings.layers:  # the whole stack by name; checked before any weight is drawn
        return parse_layers(settings.layers, registry)
    return mlp_specs(settings.hidden, 1, settings.act)


def build_network(
    registry: Registry, settings: TrainSettings, specs: list[LayerSpec] | None = None
) -> Sequential:
    """The run's network, its weights drawn from the seed's "init" stream."""
    specs = network_specs(registry, settings) if specs is None else specs
    dtype, where = DTYPES[settings.dtype], device(settings)
    model = build_stack(
        registry, specs, 2, init=settings.init, generator=generator(settings, "init"),
        dtype=dtype, device=where,
    )
    if settings.layers:
        check_single_output(model, dtype, where)
    return model


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
        shapes = shapes_only(registry, network_specs(registry, settings), 2, DTYPES[settings.dtype])
        if shapes is not None:
            check_memory(settings, shapes, runs)
        if settings.layers:  # names, arguments and the single output
            if shapes is None:
                build_network(registry, settings)  # checks them, at the cost of the weights
            else:
                check_single_output(shapes, DTYPES[settings.dtype], "meta")


def check_memory(settings: TrainSettings, shapes: Sequential, runs: int = 1) -> None:
    """Refuse a run that cannot fit in memory before it allocates, naming what to lower.

    `shapes` is the run's network built on the meta device (`shapes_only`); `runs`
    networks trained together (an ensemble) each need their own weights and activations.
    """
    dtype = DTYPES[settings.dtype]
    network, per_point = memory.network_bytes(shapes, 2, 1, dtype, "meta")
    per_point = runs * per_point + memory.data_bytes(1, 2)
    size = "--layers" if settings.layers else "--hidden"
    memory.check_fits({
        size if runs == 1 else f"{size} or --runs": runs * network,
        "n_train": settings.n_train * per_point,  # every training point goes through at once
        "n_test": settings.n_test * per_point,
    }, "this run" if runs == 1 else f"these {runs} runs")


def check_single_output(
    model: Sequential, dtype: torch.dtype, where: torch.device | str = "cpu"
) -> None:
    """The disk problem has one output: a stack ending wider than that is a settings error."""
    width = model.forward(torch.zeros(1, 2, dtype=dtype, device=where)).shape[-1]
    if width != 1:
        raise SettingsError(
            f"layers must end with one output feature for this task, got {width}; "
            f"end the stack with linear:out_features=1"
        )


def train(
    settings: TrainSettings,
    registry: Registry | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    checkpoint: Checkpointing | None = None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Draw the data, build the network by name, train it and measure its errors.

    A loss or weight that stops being finite raises DivergenceError. With `checkpoint`,
    the run's state is written every `checkpoint.every` epochs; with `resume` (from
    `core.checkpoint.read_checkpoint`, whose `.settings` must be `settings`), training
    goes on from it and ends exactly as the uninterrupted run.
    """
    if resume is not None and resume.settings != settings:
        raise SettingsError("resume: the checkpoint's settings differ from the run's")
    registry = registry or default_registry()
    loss = registry.create("loss", settings.loss)
    optimizer_entry = registry.get("optimizer", settings.optimizer)
    check_optimizer_args(optimizer_entry, settings)
    # One run per checkpoint file: a second is refused; what a killed writer left is removed.
    with write_locks(checkpoint.path if checkpoint else None), torch.set_grad_enabled(False):
        data = prepare_data(settings)
        specs = network_specs(registry, settings)
        model = build_network(registry, settings, specs)
        optimizer = optimizer_entry.create(
            parameters=model.parameters(), lr=settings.lr, **dict(settings.optimizer_args)
        )
        shuffle = generator(settings, "shuffle")
        run = RunState(settings, specs, model, optimizer, {"shuffle": shuffle}, registry,
                       preprocessing=data.preprocessing)
        # Before any restore: a resumed run judges divergence as the uninterrupted one does.
        initial_loss = loss.forward(model.forward(data.x_train), data.y_train).item()
        done = resume.restore(specs, model, optimizer, run.generators) if resume else []
        after_epoch = AfterEpoch(
            run, checkpoint, on_epoch, resumed=resume, initial_loss=initial_loss
        )
        schedule = SCHEDULES[settings.schedule]
        losses = done + fit(
            model, loss, optimizer, data.x_train, data.y_train, epochs=settings.epochs - len(done),
            batch_size=settings.batch_size, generator=shuffle, on_epoch=after_epoch,
            # fit counts its epochs from 1; the schedule counts from the run's first
            lr_at=lambda epoch: schedule(settings.lr, len(done) + epoch, settings.epochs),
        )
        return TrainResult(
            settings, losses, error_rate(model, loss, data.x_train, data.y_train),
            error_rate(model, loss, data.x_test, data.y_test), specs, model, data.preprocessing,
        )
