"""Prepare: a resolved run -> a `Run`, everything a run trains with, built once.

`prepare` loads the data once (or takes the dataset resolving already built), splits and
preprocesses it, and checks that the network fits the data and the memory; the `Run` it
returns then builds the network, the loss and the optimizer on first use, from the seed's
generators. `check` (shapes only), `--summary`, `train`, the batched ensemble, sweeps and
the playground all take their run from here, its loss and optimizer made by
core/training/components.py, the one place each is constructed.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from functools import cached_property
from typing import Any

import torch

from core.data.dataset import parse_data
from core.data.preparation import Data, Split, check_loss_fits, prepare_data, split_dataset
from core.data.split import output_width
from core.errors import SettingsError
from core.network.assemble import (
    LayerSpec, build_flat_stack, check_output_width, probe_device, shapes_only,
)
from core.network.protocols import Loss, Optimizer
from core.network.sequential import Sequential
from core.network.shapes import sample_shape
from core.network.summary import layer_table
from core.plugin.registry import Registry, default_registry
from core.pipeline.resolve import ResolvedRun, generator, load_dataset, resolve
from core.training.components import make_loss, make_optimizer
from core.training.memory import check_run_fits
from core.training.schedule import SCHEDULES
from core.training.settings import DTYPES, TrainSettings


def device(settings: TrainSettings) -> torch.device:
    """The run's device; a clear error when CUDA is asked for and absent."""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise SettingsError(
            "device 'cuda' is not available here (torch finds no CUDA GPU); accepted: cpu"
        )
    return torch.device(settings.device)


def split_run_data(resolved: ResolvedRun, registry: Registry) -> Split:
    """The run's dataset (the one resolving built, else built now), split from the seed's
    "split" stream."""
    settings = resolved.settings
    dataset = resolved.dataset or load_dataset(settings, resolved.data, registry)  # (1 build)
    return split_dataset(dataset, settings.test_fraction, settings.val_fraction,
                         generator(settings, "split"))


class Run:
    """One run, built once: its data (split, preprocessed, on its device), its network by
    name, and on first use the network itself, its loss and its optimizer."""

    def __init__(self, resolved: ResolvedRun, registry: Registry, split: Split, data: Data) -> None:
        self.resolved, self.registry, self.split, self.data = resolved, registry, split, data
        settings = resolved.settings
        self.dtype, self.device = DTYPES[settings.dtype], device(settings)
        shape = tuple(data.dataset.input_shape)  # images: one sample's shape; else a row's width
        self.in_features = shape if len(shape) > 1 else data.x_train.shape[-1]
        self.out_features = output_width(data.dataset, registry.get("loss", settings.loss).factory)
        self.specs: list[LayerSpec] = resolved.network_specs(self.out_features)
        # "init" draws the weights and, while training, dropout's masks; "shuffle" the batches.
        self.generators = {"shuffle": generator(settings, "shuffle"),
                           "init": generator(settings, "init")}

    @property
    def settings(self) -> TrainSettings:
        return self.resolved.settings

    @cached_property
    def model(self) -> Sequential:
        """The network, its weights drawn from the seed's "init" stream."""
        return self.build_network(self.generators["init"])

    @cached_property
    def loss(self) -> Loss:
        return make_loss(self.registry, self.settings)

    @cached_property
    def optimizer(self) -> Optimizer:
        return make_optimizer(self.registry, self.settings, self.model.parameters())

    def build_network(self, init: torch.Generator | None = None) -> Sequential:
        """A network of the run's specs, drawn from `init` (default: a fresh "init" stream,
        so the same weights as `model` started with)."""
        settings = self.settings
        model = build_flat_stack(  # images come in as flat rows, (n, features), like every input
            self.registry, self.specs, self.in_features, init=settings.init,
            generator=generator(settings, "init") if init is None else init,
            dtype=self.dtype, device=self.device,
        )
        if self.resolved.layers is not None:
            check_output_width(model, self.width, self.out_features, self.dtype, self.device)
        return model

    @property
    def width(self) -> int:
        """The width of one input row (the product of an image's shape)."""
        return math.prod(sample_shape(self.in_features))

    def lr_at(self, epoch: int) -> float:
        """The learning rate of an epoch (counted from 1), as the schedule sets it."""
        settings = self.settings
        return SCHEDULES[settings.schedule](settings.lr, epoch, settings.epochs)

    def check(self, runs: int = 1) -> None:
        """Refuse a network that does not fit the data or the memory (`runs` of it trained
        together), looking at its shapes only: no weight is drawn."""
        settings = self.settings
        shapes = shapes_only(self.registry, self.specs, self.in_features, self.dtype)
        if shapes is not None:
            check_run_fits(shapes, self.dtype, sizes(settings), size_option(settings), runs,
                           self.width)
        if self.resolved.layers is not None:  # names, arguments, shapes and the output width
            if shapes is None:  # only the real build can tell, at the cost of the weights
                self.model  # noqa: B018 (built once, kept for training)
            else:
                check_output_width(shapes, self.width, self.out_features, self.dtype,
                                   probe_device(shapes))

    def summary(self) -> tuple[Any, list[dict[str, Any]]]:
        """(input shape, rows of core.network.summary.layer_table) of the network."""
        with torch.set_grad_enabled(False):
            in_shape = self.model.input_shape or self.data.x_train.shape[-1]  # images, or rows
            return in_shape, layer_table(self.model, self.specs, in_shape, self.dtype)


def sizes(settings: TrainSettings) -> dict[str, int]:
    return {"n_train": settings.n_train, "n_test": settings.n_test}


def size_option(settings: TrainSettings) -> str:
    return "--layers" if settings.layers else "--hidden"


def prepare(
    resolved: ResolvedRun, registry: Registry | None = None, *, runs: int = 1, check: bool = True,
) -> Run:
    """The Run of a resolved run, its data loaded, split and preprocessed once.

    With `check` (the default) nothing big is allocated before it is known to fit: the
    data's size first, as the settings give it, then the network's, once the data say how
    wide it is (`runs` networks trained together need `runs` times the weights).
    """
    registry = registry or default_registry()
    settings = resolved.settings
    where = device(settings)
    with torch.set_grad_enabled(False):
        if check:
            check_run_fits(None, DTYPES[settings.dtype], sizes(settings), size_option(settings), runs)
        split = split_run_data(resolved, registry)
        check_loss_fits(registry, settings.loss, split.dataset.task)
        loss_factory = registry.get("loss", settings.loss).factory
        data = prepare_data(split, loss_factory, settings.preprocess, DTYPES[settings.dtype], where)
        run = Run(resolved, registry, split, data)
        if check:
            run.check(runs)
    return run


def check(settings: TrainSettings | ResolvedRun, registry: Registry, runs: int = 1,
          given: Collection[str] | None = None) -> None:
    """Fail on any name, option, data or network the run cannot use, or on a run too big
    for memory (`runs` networks trained together), before any training."""
    prepare(resolve(settings, registry, given), registry, runs=runs)


def test_rows(settings: TrainSettings, registry: Registry | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A finished run's test rows, raw: x (n, features) float64 and the Dataset's labels
    (`settings` as the run recorded them: whole, no default applied)."""
    split = raw_split(settings, registry)
    return split.x_test, split.y_test


def datasets(settings: TrainSettings, registry: Registry | None = None) -> tuple[torch.Tensor, ...]:
    """A finished run's raw x_train, y_train, x_test, y_test at its precision, on the CPU,
    before preprocessing: x (n, features); y (n, 1) 0/1 for a binary task (as the disk's
    always were), (n,) class indices for more classes, (n, targets) for regression."""
    split = raw_split(settings, registry)
    dtype = DTYPES[settings.dtype]

    def labels(y):
        return y.to(dtype).view(-1, 1) if split.dataset.task == "binary" else y

    return split.x_train.to(dtype), labels(split.y_train), split.x_test.to(dtype), labels(split.y_test)


def raw_split(settings: TrainSettings, registry: Registry | None = None) -> Split:
    """The split rows of a run whose settings are whole (a result's, a model file's)."""
    registry = registry or default_registry()
    with torch.set_grad_enabled(False):
        dataset = load_dataset(settings, parse_data(settings.data), registry)
    return split_dataset(dataset, settings.test_fraction, settings.val_fraction,
                         generator(settings, "split"))
