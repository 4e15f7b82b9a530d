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
from core.data.disk import disk_dataset
from core.errors import RowError, SettingsError
from core.files.model_file import LoadedModel, load_model
from core.plugin.registry import Registry
from core.training import memory
from core.training.settings import MAX_SEED
from core.data.tabular import Table, TableError, format_predictions, output_format, read_table

# Fresh test sets draw from stream 15 of a seed, which no training run uses (0-2 today).
EVALUATE_STREAM = 15


def predict_file(
    model_path: str | os.PathLike,
    input_path: str | os.PathLike,
    *,
    output: str | None = None,
    fmt: str | None = None,
    registry: Registry | None = None,
) -> str:
    """Predict every row of `input_path`; return the text, and write it to `output` if given.

    The output is written atomically, and only once every row has been predicted.
    """
    fmt = output_format(fmt, output)
    if output is not None:
        check_writable(output)
    loaded = load_model(model_path, registry)
    table = read_table(input_path)
    check_width(table, loaded, input_path)
    with rows_named_by_line(table, input_path):
        prediction = loaded.predict(table.features)
    text = format_predictions(prediction.scores, prediction.classes, fmt)
    if output is not None:
        with write_lock(output):  # one writer; removes what a killed one left
            atomic_write_text(output, text)
    return text


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


@dataclass
class Evaluation:
    error: float  # fraction of points misclassified
    n: int  # points evaluated
    source: str  # the file, or "disk task, seed S"

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_model(
    model_path: str | os.PathLike,
    *,
    input_path: str | os.PathLike | None = None,
    seed: int = 0,
    n: int = 1000,
    registry: Registry | None = None,
) -> Evaluation:
    """The model's error on a labelled file, or on `n` fresh points of the disk task."""
    loaded = load_model(model_path, registry)
    if input_path is not None:
        table = read_table(input_path, labels_required=True)
        check_width(table, loaded, input_path)
        with rows_named_by_line(table, input_path):
            error = loaded.error_rate(table.features, table.labels)
        return Evaluation(error, len(table.labels), str(input_path))
    if n < 1:
        raise SettingsError(f"n must be an integer >= 1, got {n}")
    if not 0 <= seed < MAX_SEED:
        raise SettingsError(f"seed must be an integer in [0, {MAX_SEED}), got {seed}")
    _, per_point = memory.network_bytes(loaded.model, loaded.in_features, 1, loaded.dtype, "cpu")
    memory.check_fits({"--n": n * (per_point + memory.data_bytes(1, loaded.in_features))},
                      f"evaluating {n} points")
    generator = torch.Generator().manual_seed(seed * 16 + EVALUATE_STREAM)
    x, y = disk_dataset(n, generator, loaded.dtype)
    return Evaluation(loaded.error_rate(x, y), n, f"fresh points of the disk task, seed {seed}")
