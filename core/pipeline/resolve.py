"""Resolve: the settings a user gave, plus what the registry knows, -> the run to build.

One function, called by the library (`core.train`) and by every CLI command alike, so both
train the same run for the same options:

- the options the user gave (`given`) stand as they are: nothing below overrides them;
- every other field takes the dataset's defaults (`register(..., defaults={...})`:
  digits a wider network and fewer epochs) and, when neither sets it, the loss the task
  trains with (TASK_LOSSES: bce for two classes, cross_entropy for more, mse for regression);
- a table with few rows for its features takes the defaults of a small table (early
  stopping, a small network, a penalty: core/training/table_defaults.py), where neither
  the user nor the dataset set them; the run records which, each with why (`chosen`);
- `--data` and `--layers` are parsed here, once, into a DataSpec and LayerSpecs checked
  against the registry; every component name and optimizer option is checked too.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.data.dataset import Dataset, DataSpec, build_dataset, parse_data
from core.errors import SettingsError
from core.network.assemble import LayerSpec, mlp_specs, vocab_takers, with_vocab
from core.network.stack import constructor_parameters, parse_layers
from core.plugin.registry import Entry, Registry, default_registry
from core.training.settings import DTYPES, TrainSettings
from core.training.table_defaults import TABLE_FIELDS, Default, small_table_defaults

if TYPE_CHECKING:
    import torch

# The loss a task trains with when neither the user nor the dataset chooses one.
TASK_LOSSES = {"binary": "bce", "multiclass": "cross_entropy", "regression": "mse",
               "sequence": "token_cross_entropy"}
# Every settings field: `given=EVERY_FIELD` resolves settings that are already whole (a
# checkpoint's, a model file's, the playground's), applying no default.
EVERY_FIELD = frozenset(f.name for f in dataclasses.fields(TrainSettings))
# Independent random streams drawn from one seed ("split": test and validation rows).
STREAMS = {"data": 0, "init": 1, "shuffle": 2, "split": 3}


def generator(settings: TrainSettings, stream: str) -> torch.Generator:
    """The seeded generator of one random stream of a run."""
    import torch

    return torch.Generator().manual_seed(settings.seed * 16 + STREAMS[stream])


@dataclass(frozen=True)
class ResolvedRun:
    """A run described in full: every setting decided, its text parsed and its names checked."""

    settings: TrainSettings  # every field: the user's, else the dataset's default, else the task's
    given: frozenset[str]  # the fields the user chose: no default ever replaces them
    data: DataSpec  # `settings.data`, parsed
    layers: tuple[LayerSpec, ...] | None  # `settings.layers`, parsed and checked; None: the MLP
    # The dataset as drawn from `settings.seed`, when resolving had to build it (its task
    # picks the loss, its size the small-table defaults): preparing the run takes it.
    dataset: Dataset | None = None
    chosen: tuple[Default, ...] = ()  # the small-table defaults applied, each with why
    # The layers of `layers` that take a `vocab` not given (an embedding, a gpt): the
    # data's vocabulary is written into their specs (core.network.assemble.with_vocab).
    vocab_takers: frozenset[str] = frozenset()

    def with_seed(self, seed: int) -> ResolvedRun:
        """The same run with another seed (its own data, weights and shuffling)."""
        if seed == self.settings.seed:
            return self
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, seed=seed),
                                   dataset=None)

    def network_specs(self, out_features: int) -> list[LayerSpec]:
        """The network by registered names: the stack given, else the MLP of act and hidden
        with `out_features` outputs (what the data and the loss need)."""
        if self.layers is not None:  # an embedding not given its vocabulary gets the data's
            return with_vocab(self.layers, self.vocab_takers, out_features)
        return mlp_specs(self.settings.hidden, out_features, self.settings.act)


def user_fields(settings: TrainSettings) -> frozenset[str]:
    """The fields a Python caller chose, as far as the settings can tell: those that
    differ from TrainSettings' defaults (one left at its default takes the dataset's)."""
    defaults = TrainSettings()
    return frozenset(name for name in EVERY_FIELD
                     if getattr(settings, name) != getattr(defaults, name))


def resolve(
    settings: TrainSettings | ResolvedRun, registry: Registry | None = None,
    given: Collection[str] | None = None,
) -> ResolvedRun:
    """The run `settings` describe, resolved (see the module's docstring).

    `given` names the fields the user chose (`nn-cli` passes the options typed on its
    command line); None takes those that differ from the defaults (`user_fields`). A run
    already resolved comes back as it is.
    """
    if isinstance(settings, ResolvedRun):
        return settings
    registry = registry or default_registry()
    given = user_fields(settings) if given is None else frozenset(given)
    data = parse_data(settings.data)
    suggested = dict(dataset_defaults(registry.get("dataset", data.name)))
    if "layers" in given:  # a stack typed by hand replaces act and hidden
        suggested = {k: v for k, v in suggested.items() if k not in ("act", "hidden")}
    changes = {k: v for k, v in suggested.items() if k not in given}
    settings = dataclasses.replace(settings, **changes) if changes else settings
    dataset = None
    if "loss" not in given and "loss" not in suggested:  # the task's: the data tell it
        dataset = load_dataset(settings, data, registry)
        if settings.loss != TASK_LOSSES[dataset.task]:
            settings = dataclasses.replace(settings, loss=TASK_LOSSES[dataset.task])
    chosen: tuple[Default, ...] = ()
    # A dataset drawn from the seed (its factory takes a generator: the disk, moons, ...)
    # is no small table: more points are one option away, and its defaults stay its own.
    draws = "generator" in constructor_parameters(registry.get("dataset", data.name).factory)
    if not draws and not TABLE_FIELDS <= given | set(suggested):  # a field the rule may set
        dataset = dataset or load_dataset(settings, data, registry)
        settings, chosen = with_table_defaults(settings, dataset, given | set(suggested))
    check_names(settings, registry)
    layers = None if settings.layers is None else tuple(parse_layers(settings.layers, registry))
    return ResolvedRun(settings, given, data, layers, dataset, chosen,
                       vocab_takers=vocab_takers(registry, layers or ()))


def with_table_defaults(
    settings: TrainSettings, dataset: Dataset, taken: Collection[str]
) -> tuple[TrainSettings, tuple[Default, ...]]:
    """`settings` with the small-table defaults for this dataset in every field not
    `taken` (given by the user or set by the dataset), and those applied."""
    rows = len(dataset.x_train)
    if not dataset.has_test_split:  # the rows left once the test split is held out
        rows -= round(settings.test_fraction * rows)
    rule = small_table_defaults(dataset.task, rows, dataset.n_features, tuple(dataset.input_shape))
    chosen = [d for d in rule if d.field not in taken
              and not (d.field == "hidden" and ("layers" in taken or settings.layers))]
    if "val_fraction" in taken and not settings.val_fraction > 0:
        chosen = [d for d in chosen if d.field != "patience"]  # --val-fraction 0: no stopping
    if not chosen:
        return settings, ()
    return dataclasses.replace(settings, **{d.field: d.value for d in chosen}), tuple(chosen)


def dataset_defaults(entry: Entry) -> dict:
    """The settings a registered dataset suggests for the options not given (its
    `register(..., defaults=...)`), each a TrainSettings field."""
    unknown = sorted(set(entry.defaults) - EVERY_FIELD)
    if unknown:
        raise SettingsError(
            f"dataset {entry.name!r} (plugin {entry.plugin!r}) has defaults for "
            f"{', '.join(map(repr, unknown))}, which are no settings; settings: "
            f"{', '.join(sorted(EVERY_FIELD))}"
        )
    return dict(entry.defaults)


def load_dataset(settings: TrainSettings, data: DataSpec, registry: Registry) -> Dataset:
    """The Dataset `data` names, drawn from the run's "data" stream."""
    import torch

    with torch.set_grad_enabled(False):
        return build_dataset(
            registry, data, generator=generator(settings, "data"),
            context={"n_train": settings.n_train, "n_test": settings.n_test,
                     "dtype": DTYPES[settings.dtype], "target": settings.target},
        )


def check_names(settings: TrainSettings, registry: Registry) -> None:
    """Every component the settings name is registered; every optimizer option is one its
    factory accepts."""
    names = [("loss", settings.loss), ("initializer", settings.init)]
    if not settings.layers:
        names.append(("activation", settings.act))
    for kind, name in names:
        registry.get(kind, name)
    check_optimizer_args(registry.get("optimizer", settings.optimizer), settings)


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
