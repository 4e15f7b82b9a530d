"""Using a saved model: predictions for a file of rows, and the error on a test set.

`nn-cli predict` and `nn-cli evaluate` call these; a Python user calls them the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from core.files.atomic import atomic_write_text, check_writable, write_lock
from core.data.dataset import CLASSIFICATION, build_dataset, parse_data
from core.data.metrics import classification_metrics, regression_metrics
from core.errors import RowError, SettingsError
from core.files.model_file import LoadedModel, load_model
from core.network.stack import constructor_parameters
from core.plugin.registry import Registry, default_registry
from core.training import memory
from core.training.settings import MAX_SEED, has_data_settings
from core.data.tabular import (
    Table, TableError, class_value, format_predictions, format_rows, output_format, read_table,
)

# Fresh test sets draw from stream 15 of a seed, which no training run uses (0-2 today).
EVALUATE_STREAM = 15


def model_layers(path: str | os.PathLike, registry: Registry | None = None):
    """(the LoadedModel, its input shape, rows of core.network.summary.layer_table) of a
    model or checkpoint file: what `nn-cli info FILE` shows."""
    from core.network.assemble import LayerSpec
    from core.network.summary import layer_table

    loaded = load_model(path, registry)
    shape = loaded.model.input_shape or loaded.in_features  # images, or flat rows
    specs = [LayerSpec.from_dict(s) for s in loaded.header["architecture"]]
    return loaded, shape, layer_table(loaded.model, specs, shape, loaded.dtype)


def predict_file(
    model_path: str | os.PathLike,
    input_path: str | os.PathLike,
    *,
    output: str | None = None,
    fmt: str | None = None,
    registry: Registry | None = None,
    proba: bool = False,
) -> str:
    """Predict every row of `input_path`; return the text, and write it to `output` if given.

    Classification: `score` (the network's output for the predicted class: a logit for
    bce and cross_entropy) and `class` (the class name, or its number when the name is
    one); with `proba`, one `p_NAME` column per class. Regression: one column per target,
    in the target's units. The output is written atomically, once every row is predicted.
    """
    fmt = output_format(fmt, output)
    if output is not None:
        check_writable(output)
    loaded = load_model(model_path, registry)
    table = read_labelled(loaded, input_path, required=False)
    check_width(table, loaded, input_path)
    with rows_named_by_line(table, input_path):
        prediction = loaded.predict(table.features)
        if "dataset" not in loaded.header and not proba:  # a file from before datasets
            text = format_predictions(prediction.scores, prediction.classes, fmt)
        else:
            text = format_rows(*prediction_table(loaded, table.features, prediction, proba), fmt)
    if output is not None:
        with write_lock(output):  # one writer; removes what a killed one left
            atomic_write_text(output, text)
    return text


def prediction_table(loaded: LoadedModel, x: torch.Tensor, prediction, proba: bool):
    """(column names, rows) of `predict`'s output for a model with data metadata."""
    if prediction.classes is None:  # regression
        names = list(loaded.dataset.get("target_names") or ["prediction"])
        return names, prediction.scores.tolist()
    classes = loaded.class_names
    picked = prediction.classes.view(-1)  # (n,)
    scores = prediction.scores.gather(1, picked.view(-1, 1)) if prediction.scores.shape[1] > 1 \
        else prediction.scores  # (n, 1)
    names = ["score", "class"]
    rows = [[float(score), class_value(classes[c])] for score, c in zip(scores.view(-1).tolist(), picked.tolist())]
    if proba:
        names += [f"p_{name}" for name in classes]
        for row, p in zip(rows, loaded.probabilities(x).tolist()):
            row += [float(v) for v in p]
    return names, rows


def read_labelled(loaded: LoadedModel, path, *, required: bool, target: str | None = None) -> Table:
    """An input file for this model, its columns matched to the model's features by name
    when the file names them; its label column (`target`, else the training data's target
    column, else `label`) may hold the model's class names."""
    classes = loaded.class_names
    # Two classes named 0 and 1 (the disk's) are read as the numbers they are; more classes
    # named 0, 1, 2, ... (a file's numeric labels) by their names, which the numbers are.
    plain = classes == [str(i) for i in range(len(classes))] and len(classes) <= 2
    named = loaded.task != "regression" and not plain
    names = classes if named else None
    features = loaded.dataset.get("feature_names")
    return read_table(path, labels_required=required, class_names=names, label=target or label_column(loaded),
                      any_labels=loaded.task == "regression",
                      features=features if features and len(features) == loaded.in_features else None)


def label_column(loaded: LoadedModel) -> str:
    """The name of the column that holds a file's labels for this model: the training
    file's target column (recorded as the data's one target name), else the run's --target
    when it is a name, else `label`."""
    recorded = loaded.dataset.get("target_names") or []
    if len(recorded) == 1:
        return recorded[0]
    target = loaded.settings.target
    return target if target and not target.isdigit() else "label"


def check_width(table: Table, loaded: LoadedModel, input_path: str | os.PathLike) -> None:
    width = table.features.shape[1]
    if width != loaded.in_features:
        raise TableError(
            f"{input_path}: rows have {width} features; the model {loaded.path} takes "
            f"{loaded.in_features}"
        )


@contextlib.contextmanager
def rows_named_by_line(table: Table, input_path: str | os.PathLike) -> Iterator[None]:
    """A row the model cannot score, named by the input file's line."""
    try:
        yield
    except RowError as e:
        raise TableError(f"{input_path}: line {table.lines[e.row]}: {e.reason}") from None


def _check_data_file_reachable(loaded: LoadedModel, model_path) -> None:
    """A run's test rows are drawn again from its --data: a file named relative to the
    folder it trained in may not be there from here. Say so, rather than blame --data."""
    from pathlib import Path

    from core.data.dataset import parse_data_text

    name, options = parse_data_text(loaded.settings.data)
    path = options.get("path") if name == "file" else None
    if path is not None and not Path(path).is_file():
        raise SettingsError(
            f"{model_path} was trained on the file {path!r}, which is not there from this folder "
            f"({os.getcwd()}): run evaluate where it trained, or give --input FILE with its "
            f"features and a {label_column(loaded)!r} column"
        )


@dataclass
class Evaluation:
    error: float  # fraction of points misclassified (measure "rmse": the RMSE of a regression)
    n: int  # points evaluated
    source: str  # the file, or "disk task, seed S"
    measure: str = "error"  # what `error` is: "error" (a fraction) or "rmse"
    # A model of data other than the disk: its task, and what `nn-cli train` reports for its
    # test split (core.data.metrics): per-class table and confusion, or RMSE, MAE and R^2.
    task: str | None = None
    metrics: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.measure == "error":  # as before regression models existed
            del d["measure"]
        if self.metrics is None:  # the disk's evaluation reads as it always did
            del d["task"], d["metrics"]
        return d


def scored(loaded: LoadedModel, x: torch.Tensor, y: torch.Tensor, n: int, source: str) -> Evaluation:
    """The model's error on rows `x` with labels `y` (class indices, or regression targets)
    and, for a model of data other than the disk, the metrics `train` reports for its test
    split, from the same predictions."""
    error = loaded.error_rate(x, y)
    measure = "rmse" if loaded.task == "regression" else "error"
    if not has_data_settings(loaded.settings):  # as train reports: the disk's figure alone
        return Evaluation(error, n, source, measure)
    if loaded.task not in (*CLASSIFICATION, "regression"):  # a text model: its error alone
        return Evaluation(error, n, source, measure)
    prediction = loaded.predict(x)
    if prediction.classes is None:
        images = len(loaded.dataset.get("input_shape") or []) > 1  # PSNR: a figure of pixels
        metrics = regression_metrics(y.reshape(prediction.scores.shape), prediction.scores, images)
    else:
        classes = prediction.classes.view(-1)  # (n,)
        metrics = classification_metrics((y.reshape(classes.shape) + 0.5).long(), classes,
                                         loaded.class_names)
    return Evaluation(error, n, source, measure, loaded.task, metrics)


def evaluate_model(
    model_path: str | os.PathLike,
    *,
    input_path: str | os.PathLike | None = None,
    seed: int = 0,
    n: int = 1000,
    registry: Registry | None = None,
    test_split=None,
    target: str | None = None,
) -> Evaluation:
    """The model's error on a labelled file; without one, on `n` fresh points of its data
    when its dataset draws as many as asked (its factory takes `n_train`: the disk), else on
    its run's own test rows, which `test_split(settings, registry)` gives as raw (x, labels)
    (core.pipeline.prepare's `test_rows`, passed in from above: files cannot reach the
    pipeline). A model of data other than the disk also gets the metrics `train` reports
    for its test split (`scored`). `target` names the file's label column where it differs
    from the training file's."""
    registry = registry or default_registry()
    loaded = load_model(model_path, registry)
    if input_path is not None and loaded.task == "sequence":
        raise SettingsError(f"{model_path} is a text model: evaluate it without --input, on the "
                            f"held-out text it was trained with")
    if input_path is not None:
        table = read_labelled(loaded, input_path, required=True, target=target)
        check_width(table, loaded, input_path)
        with rows_named_by_line(table, input_path):
            return scored(loaded, table.features, table.labels, len(table.labels), str(input_path))
    data = parse_data(loaded.settings.data)
    if "n_train" not in constructor_parameters(registry.get("dataset", data.name).factory):
        if test_split is None:
            raise SettingsError(
                f"{model_path} was trained on {loaded.dataset['name']!r}, which draws no fresh "
                f"points: give --input FILE with its features and a "
                f"{loaded.settings.target or 'label'!r} column"
            )
        _check_data_file_reachable(loaded, model_path)
        x, labels = test_split(loaded.settings, registry)
        if len(labels) == 0:
            raise SettingsError(
                f"{model_path} was trained on every row of {loaded.dataset['name']!r} "
                f"(--test-fraction 0): none is left to test; give --input FILE with held-out "
                f"rows and a {label_column(loaded)!r} column"
            )
        return scored(loaded, x, labels, len(labels),
                      f"the test split of {loaded.dataset['name']}, seed {loaded.settings.seed}")
    if n < 1:
        raise SettingsError(f"n must be an integer >= 1, got {n}")
    if not 0 <= seed < MAX_SEED:
        raise SettingsError(f"seed must be an integer in [0, {MAX_SEED}), got {seed}")
    _, per_point = memory.network_bytes(loaded.model, loaded.in_features, 1, loaded.dtype, "cpu")
    memory.check_fits({"--n": n * (per_point + memory.data_bytes(1, loaded.in_features))},
                      f"evaluating {n} points")
    generator = torch.Generator().manual_seed(seed * 16 + EVALUATE_STREAM)
    fresh = build_dataset(registry, data, generator=generator,  # its first n points: fresh
                          context={"n_train": n, "n_test": 1, "dtype": loaded.dtype,
                                   "target": loaded.settings.target})
    return Evaluation(loaded.error_rate(fresh.x_train, fresh.y_train), n,
                      f"fresh points of {loaded.dataset['name']}, seed {seed}")
