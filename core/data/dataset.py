"""The dataset contract: what a dataset plugin's factory returns, and `--data` text.

A dataset is registered like any component (`register_datasets(register)` hook, kind
"dataset"); its factory is called with its options from the `--data` text
(`spiral:arms=3,noise=0.2`) and, when its signature names them, the run's context:

    generator   a torch.Generator seeded from the run's seed (its "data" stream): draw
                every random number from it, so the same seed gives the same points
    n_train, n_test   TrainSettings.n_train / n_test (the disk's sizes)

and returns a `Dataset`: the tensors with everything downstream needs to know about them,
as scikit-learn's `load_*` bunch does. A dataset without its own test split leaves
`x_test`/`y_test` as None and the pipeline splits it (seeded, stratified; core.data.split).
"""

from __future__ import annotations

import math
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from core.errors import SettingsError
from core.keyvalue import NAME, parse_pair
from core.plugin.context import context_arguments

if TYPE_CHECKING:
    import torch

TASKS = ("binary", "multiclass", "regression", "sequence")
CLASSIFICATION = ("binary", "multiclass")
# "sequence": x (n, context) token ids, y (n, context) the next token at every position;
# class_names is the vocabulary, one token per id (core/data/text.py).


class DataError(SettingsError):
    """Data that cannot be trained on: names the dataset or file, and the row and column."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Points to learn from, and what the rest of the pipeline needs to know about them.

    x: (n, features) float64, one flat row per point; `x.view(n, *input_shape)` gives
       the points in their natural shape (images: (n, 1, 8, 8) for digits).
    y: classification: (n,) int64 class indices in [0, len(class_names));
       regression: (n, targets) float64;
       sequence: (n, context) float64 token ids in [0, len(class_names)), the next token
       after each position of x (whose values are token ids too).
    """

    name: str  # what made it: the registered name, or the file's path
    task: str  # "binary", "multiclass" or "regression"
    x_train: torch.Tensor  # (n_train, features) float64
    y_train: torch.Tensor  # (n_train,) int64, or (n_train, targets) float64
    feature_names: tuple[str, ...]  # one per column of x
    input_shape: tuple[int, ...]  # the shape of one point; its product is the feature count
    class_names: tuple[str, ...] = ()  # classification: one per class, index order
    x_test: torch.Tensor | None = None  # the dataset's own test split, when it has one
    y_test: torch.Tensor | None = None
    # regression: one per target column; a file's classification: its label column's name
    # (so `evaluate` finds the labels of a file of the same kind by name)
    target_names: tuple[str, ...] = ()
    description: str = ""  # a line or two for `nn-cli info`
    # The rule that labels a point, where the data have one (the disk: inside the circle):
    # x (n, features) -> 0/1 labels; figures draw its boundary beside the network's.
    truth: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_test_split(self) -> bool:
        return self.x_test is not None

    def metadata(self) -> dict[str, Any]:
        """What a model file records about its data (no tensors)."""
        return {
            "name": self.name, "task": self.task, "feature_names": list(self.feature_names),
            "input_shape": list(self.input_shape), "class_names": list(self.class_names),
            "target_names": list(self.target_names),
        }

    def check(self) -> None:
        """Raise DataError when the tensors and the metadata disagree (see check_dataset)."""
        problems = dataset_problems(self)
        if problems:
            raise DataError(f"dataset {self.name!r}: {problems[0]}")


def dataset_problems(data: Dataset) -> list[str]:
    """Every way `data` breaks the contract, as short sentences (empty when it keeps it)."""
    import torch

    problems = []
    if data.task not in TASKS:
        return [f"task {data.task!r} is not one of {', '.join(TASKS)}"]
    splits = [("train", data.x_train, data.y_train)]
    if (data.x_test is None) != (data.y_test is None):
        problems.append("x_test and y_test must both be given or both be None")
    elif data.x_test is not None:
        splits.append(("test", data.x_test, data.y_test))
    width = math.prod(data.input_shape) if data.input_shape else -1
    for split, x, y in splits:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.float64:
            problems.append(f"x_{split} must be a (n, features) float64 tensor, got "
                            f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
            continue
        if x.shape[1] != len(data.feature_names):
            problems.append(f"x_{split} has {x.shape[1]} features but {len(data.feature_names)} "
                            f"feature names")
        if x.shape[1] != width:
            problems.append(f"x_{split} has {x.shape[1]} features; input_shape "
                            f"{tuple(data.input_shape)} holds {width}")
        if not torch.isfinite(x).all():
            problems.append(f"x_{split} holds NaN or infinite values")
        if data.task == "sequence":
            problems += _sequence_problems(split, x, y, data.n_classes)
        elif data.task in CLASSIFICATION:
            if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.dtype != torch.int64:
                problems.append(f"y_{split} must be ({x.shape[0]},) int64 class indices, got "
                                f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
            elif len(y) and (y.min() < 0 or y.max() >= data.n_classes):
                problems.append(f"y_{split} holds class {int(y.max() if y.max() >= data.n_classes else y.min())}"
                                f"; classes are 0..{data.n_classes - 1} ({data.n_classes} class names)")
        else:
            if (not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[0] != x.shape[0]
                    or y.dtype != torch.float64):
                problems.append(f"y_{split} must be ({x.shape[0]}, targets) float64, got "
                                f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
            elif not torch.isfinite(y).all():
                problems.append(f"y_{split} holds NaN or infinite values")
            elif y.shape[1] != len(data.target_names):
                problems.append(f"y_{split} has {y.shape[1]} targets but {len(data.target_names)} "
                                f"target names")
    if data.task == "binary" and data.n_classes != 2:
        problems.append(f"a binary task has 2 class names, got {data.n_classes}")
    if data.task == "multiclass" and data.n_classes < 2:
        problems.append(f"a multiclass task has 2 or more class names, got {data.n_classes}")
    if data.task == "sequence" and data.n_classes < 1:
        problems.append("a sequence task has its vocabulary as class names, got none")
    if data.task == "regression" and data.class_names:
        problems.append("a regression task has no class names")
    return problems


def _sequence_problems(split: str, x: torch.Tensor, y: object, vocab: int) -> list[str]:
    import torch

    if not isinstance(y, torch.Tensor) or y.shape != x.shape or y.dtype != torch.float64:
        return [f"y_{split} must be {tuple(x.shape)} float64 token ids like x_{split}, got "
                f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}"]
    for name, ids in (("x", x), ("y", y)):
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab or not torch.equal(ids, ids.round())):
            return [f"{name}_{split} must hold token ids 0..{vocab - 1} (the vocabulary's size)"]
    return []


# -- `--data` text -----------------------------------------------------------------------

DATA_EXAMPLE = "spiral:arms=3,noise=0.2,n=900"
FILE_SUFFIXES = tuple(kind + packed for kind in (".csv", ".tsv", ".txt", ".json")
                      for packed in ("", ".gz", ".bz2", ".xz")) + (".npz",)


def is_file_text(text: str) -> bool:
    """Whether `--data` names a file (by its suffix, or a path separator) rather than a
    dataset (`name:key=value,...`, whose values may be paths: `file:path=data/x.tsv`)."""
    name, colon, rest = text.partition(":")
    if colon and NAME.match(name) and "=" in rest:  # options, whatever their values end with
        return False  # (`text:path=notes.txt`)
    if text.lower().endswith(FILE_SUFFIXES) and not text.startswith("file:"):
        return True
    if colon and NAME.match(name):
        return False
    return "/" in text or "\\" in text


def parse_data_text(text: str) -> tuple[str, dict[str, Any]]:
    """'spiral:arms=3,noise=0.2' -> ('spiral', {'arms': 3, 'noise': 0.2}); a file path -> ('file', {'path': ...})."""
    spec = parse_data(text)
    return spec.name, dict(spec.options)


@dataclass(frozen=True)
class DataSpec:
    """`--data` parsed: the registered name and its options (a file: "file", path)."""

    name: str
    options: Mapping[str, Any]  # read-only: one parse serves every caller
    text: str  # as typed, for messages and the settings' record


def parse_data(text: str) -> DataSpec:
    """'spiral:arms=3' -> DataSpec('spiral', {'arms': 3}, 'spiral:arms=3').

    Each text is read once: the settings' check when they are made and `resolve` share the
    result (a few hundred texts are kept; a bad one raises every time).
    """
    if not isinstance(text, str) or not text.strip():
        raise SettingsError(f"data must name a dataset or a file, such as {DATA_EXAMPLE!r}")
    return _read_data_text(text)


@functools.lru_cache(maxsize=256)
def _read_data_text(typed: str) -> DataSpec:
    text = typed.strip()
    if is_file_text(text):
        return DataSpec("file", MappingProxyType({"path": text}), typed)
    name, _, rest = text.partition(":")
    name = name.strip()
    if not NAME.match(name):
        raise SettingsError(
            f"data {text!r} must start with a dataset name (or be a .csv/.tsv/.txt/.json/.npz "
            f"file, the text ones also .gz, .bz2 or .xz); "
            f"write name:key=value,... such as {DATA_EXAMPLE!r}"
        )
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))) if rest else ():
        parsed = parse_pair(pair)
        if parsed is None:
            raise SettingsError(
                f"data {text!r}: {pair!r} is not key=value; write e.g. {DATA_EXAMPLE!r}"
            )
        key, value = parsed
        if key in options:
            raise SettingsError(f"data {text!r} gives {key!r} twice")
        options[key] = value
    return DataSpec(name, MappingProxyType(options), typed)


# -- building ----------------------------------------------------------------------------

# What the pipeline passes a dataset factory when its signature names it (never typed in --data).
CONTEXT = context_arguments("dataset")


def build_from_factory(
    factory: Any, options: dict[str, Any], *, seed: int = 0,
    generator: torch.Generator | None = None, context: dict[str, Any] | None = None,
    name: str | None = None, check: bool = True,
) -> Dataset:
    """Call a dataset factory with its options and the context its signature names.

    `generator` defaults to one seeded with `seed`; `context` may give `n_train`, `n_test`,
    `dtype` and `target`. A factory option that it does not take is a SettingsError listing
    the ones it does. The result is checked against the contract (`Dataset.check`) unless
    `check` is False (the authoring kit runs those checks one by one).
    """
    import torch

    from core.network.stack import constructor_parameters, match_key

    label = name or getattr(factory, "__name__", repr(factory))
    parameters = constructor_parameters(factory)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    settable = [n for n, p in parameters.items() if n not in CONTEXT and p.kind != p.VAR_KEYWORD]
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key in CONTEXT:
            raise SettingsError(f"dataset {label!r}: {key} comes from the run, not from --data")
        full, problem = match_key(key, settable, takes_any)
        if problem:
            raise SettingsError(
                f"dataset {label!r}: {key!r} {problem} option; its options are "
                f"{', '.join(settable) or 'none'} (see `nn-cli info {label}`)"
            )
        kwargs[full] = value
    given = {"generator": generator or torch.Generator().manual_seed(seed), **(context or {})}
    for key in CONTEXT:
        if key in parameters and key in given and given[key] is not None:
            kwargs[key] = given[key]
    missing = [n for n in settable if parameters[n].default is parameters[n].empty and n not in kwargs]
    if missing:
        raise SettingsError(f"dataset {label!r} needs {', '.join(missing)}; write e.g. "
                            f"{label}:{missing[0]}=...")
    try:
        data = factory(**kwargs)
    except TypeError as e:  # e.g. an option of the wrong type reaching arithmetic
        raise SettingsError(f"dataset {label!r}: {e}") from None
    if check:
        if not isinstance(data, Dataset):
            raise DataError(f"dataset {label!r} returned {type(data).__name__}, not core.Dataset")
        data.check()
    return data


def build_dataset(
    registry: Any, data: str | DataSpec, *, generator: torch.Generator,
    context: dict[str, Any] | None = None,
) -> Dataset:
    """The Dataset that `--data` names (its text, or the DataSpec parsed from it): a
    registered dataset with options, or a file."""
    spec = data if isinstance(data, DataSpec) else parse_data(data)
    entry = registry.get("dataset", spec.name)
    return build_from_factory(entry.factory, dict(spec.options), generator=generator,
                              context=context, name=spec.name)
