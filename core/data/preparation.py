"""A run's data made ready to train on: the Dataset split three ways, then preprocessed and
encoded for the run's loss, on its device.

Plain arguments only (fractions, a generator, a dtype): the run's settings live in
core/training, above this room; `core/pipeline/prepare.py` reads them and calls these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.data import preprocess
from core.data.dataset import Dataset
from core.data.split import is_one_hot, loss_tasks, split_indices, training_targets
from core.errors import SettingsError
from core.plugin.registry import Registry

# the `preprocess` setting -> the function fitting that step on the training inputs
PREPROCESSORS = {"standardize": preprocess.fit_standardize, "none": lambda x: dict(preprocess.IDENTITY)}


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

    def metadata(self) -> dict[str, Any]:
        """What model files and results record of the data: the Dataset's metadata, and
        whether the network has one output per class (`one_hot`)."""
        return {**self.dataset.metadata(), "one_hot": self.one_hot}


def split_dataset(
    dataset: Dataset, test_fraction: float, val_fraction: float, generator: torch.Generator
) -> Split:
    """The dataset split: its own test split, or one drawn from `generator` (stratified for
    classification); validation rows, when `val_fraction` > 0, out of the training rows."""
    x_train, y_train, x_test, y_test = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    if x_test is None and test_fraction == 0:  # every row trains; none is tested
        x_test, y_test = x_train[:0], y_train[:0]
    elif x_test is None:
        keep, held = split_indices(y_train, test_fraction, generator, task=dataset.task)
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
    if val_fraction == 0:
        return Split(dataset, x_train, y_train, x_test, y_test)
    keep, held = split_indices(y_train, val_fraction, generator, task=dataset.task,
                               what="validation")
    return Split(dataset, x_train[keep], y_train[keep], x_test, y_test, x_train[held], y_train[held])


def check_loss_fits(registry: Registry, loss_name: str, task: str) -> None:
    """A loss that does not fit the task (bce with 10 classes) names the ones that do."""
    if task in loss_tasks(registry.get("loss", loss_name).factory):
        return
    fitting = [e.name for e in registry.entries("loss") if task in loss_tasks(e.factory)]
    raise SettingsError(
        f"loss {loss_name!r} does not fit this {task} task; losses that do: "
        f"{', '.join(fitting) or 'none registered'}"
    )


def prepare_data(
    split: Split, loss_factory: Any, preprocessing: str, dtype: torch.dtype, device: torch.device
) -> Data:
    """The split's sets, ready to train on: inputs at `dtype` through the input step fitted
    on the training inputs alone (the same map applied to every set), targets encoded for
    the loss (`loss_factory`: one output per class or one for two), all on `device`."""
    dataset = split.dataset
    one_hot = is_one_hot(loss_factory, dataset.task)
    x_train = split.x_train.to(dtype)  # the training inputs at the run's precision, as fitted
    # token ids are names, not values: never standardised
    fitted = PREPROCESSORS["none" if dataset.task == "sequence" else preprocessing](x_train)
    if dataset.task == "regression" and preprocessing == "standardize":
        fitted["target"] = preprocess.fit_target(split.y_train)

    def inputs(x):
        return None if x is None else preprocess.apply(fitted, x.to(dtype)).to(device)

    def targets(y):
        if y is None:
            return None
        encoded = training_targets(y, dataset.task, dataset.n_classes, one_hot)
        return preprocess.scale_target(fitted, encoded).to(dtype).to(device)

    return Data(
        inputs(x_train), targets(split.y_train), inputs(split.x_test), targets(split.y_test),
        fitted, dataset, one_hot, split.y_train.to(device), split.y_test.to(device),
        inputs(split.x_val), targets(split.y_val),
    )
