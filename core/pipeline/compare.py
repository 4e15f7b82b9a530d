"""Configurations side by side: the cartesian product of settings, each run `runs` times."""

from __future__ import annotations

import csv
import io
import itertools
import textwrap
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files.atomic import atomic_write_text
from core.errors import SettingsError
from core.pipeline.prepare import prepare
from core.pipeline.resolve import ResolvedRun, resolve, user_fields
from core.pipeline.multirun import (
    EpochCallback, MultiRunResult, RunCallback, batched, check_runs, run_many, sweep,
)
from core.plugin.registry import Registry, default_registry
from core.training.settings import OPTIONS, TrainSettings

if TYPE_CHECKING:
    from core.training.distributed import World

DEFAULT_DATA = TrainSettings().data  # named in a title only when another is chosen
TITLE_WIDTH = 80  # characters per line of a figure's title: the loss figure's width at its font size
SUMMARY_KEYS = (
    "train_error_mean", "train_error_std", "test_error_mean", "test_error_std",
    "final_loss_mean", "final_loss_std",
)


def configurations(
    base: TrainSettings, variations: Mapping[str, Sequence[Any]]
) -> list[TrainSettings]:
    """`base` with every combination of the values in `variations` (field -> values).

    The first field varies slowest, as in itertools.product.
    """
    known = {f.name for f in fields(TrainSettings)} - {"seed"}
    for name, values in variations.items():
        if name not in known:
            raise SettingsError(f"cannot vary {name!r}; accepted: {', '.join(sorted(known))}")
        if not values:
            raise SettingsError(f"{name} needs at least one value to compare")
    keys = list(variations)
    return [replace(base, **dict(zip(keys, combo)))
            for combo in itertools.product(*(variations[k] for k in keys))]


# settings field -> the nn-cli option that sets it (fields without one show as name=value)
FLAGS = OPTIONS


def label(settings: TrainSettings, varied: Sequence[str]) -> str:
    """'--act tanh --loss mse': the fields in `varied` as the nn-cli options that set them;
    with none varied, the fields off their defaults; 'defaults' when there are none."""
    defaults = TrainSettings()
    keys = list(varied) or [
        f.name for f in fields(TrainSettings)
        if f.name != "seed" and getattr(settings, f.name) != getattr(defaults, f.name)
    ]
    d = settings.to_dict()
    parts = []
    for key in keys:
        value = d[key]
        if isinstance(value, list):
            value = ",".join(map(str, value))
        elif isinstance(value, dict):
            value = ",".join(f"{k}={as_typed(v)}" for k, v in value.items()) or "''"
        parts.append(f"{FLAGS[key]} {value}" if key in FLAGS else f"{key}={value}")
    return " ".join(parts) or "defaults"


def as_typed(value: Any) -> str:
    """A value as the command line takes it: `true`, not Python's `True`."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(
    configurations: Sequence[TrainSettings], width: int | None = TITLE_WIDTH,
    widths: tuple[int, int] | None = None,
) -> str:
    """The settings all `configurations` share, for a figure's title; what varies between
    them (and so stands in each label) shows as "varies". Lines of at most `width`
    characters, for a figure's title; one line with `width=None`. `widths`, the networks'
    (inputs, outputs) when they share them, shows the MLP whole; the data show unless
    they are the default."""
    first = configurations[0]

    def shared(field: str, text: str) -> str:
        same = all(getattr(c, field) == getattr(first, field) for c in configurations)
        return text if same else f"{field} varies"

    if first.layers:  # the stack is the whole network
        net = shared("layers", f"layers {first.layers}")
    else:  # with the data's widths when the caller knows them: "2-25-25-25-1 net"
        shape = ("-".join(map(str, (widths[0], *first.hidden, widths[1]))) + " net" if widths
                 else "hidden " + "-".join(map(str, first.hidden)))
        net = f"{shared('hidden', shape)}, {shared('act', first.act)}"
    if first.data != DEFAULT_DATA or any(c.data != first.data for c in configurations):
        net = f"{shared('data', f'data {first.data}')}, {net}"
    o = first.optimizer + "".join(f" {k}={as_typed(v)}" for k, v in first.optimizer_args)
    lines = [  # short lines, so the title fits the figure
        f"{net}, {shared('loss', first.loss + ' loss')}, {shared('init', first.init + ' init')}",
        f"{shared('optimizer', shared('optimizer_args', o))}, "
        f"{shared('lr', f'lr {first.lr:g}')} ({shared('schedule', first.schedule)}), "
        f"{shared('batch_size', f'batch {first.batch_size}')}, "
        f"{shared('epochs', f'{first.epochs} epoch' + ('s' if first.epochs != 1 else ''))}",
        f"inputs: {shared('preprocess', first.preprocess)}, {shared('dtype', first.dtype)}",
    ]
    if width is None:
        return ", ".join(lines)
    return "\n".join(wrapped for line in lines for wrapped in textwrap.wrap(line, width))


def run_label(settings: TrainSettings) -> str:
    """A single configuration's label (`nn-cli train --plot`), as `compare` labels one: the
    options off their defaults ('defaults' when there are none)."""
    return label(settings, [])


@dataclass
class Comparison:
    """One MultiRunResult per configuration, with the fields that vary between them."""

    varied: list[str]  # settings fields given more than one value
    results: list[MultiRunResult]

    @property
    def labels(self) -> list[str]:
        return [label(r.settings, self.varied) for r in self.results]

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per configuration: label, its varied values, runs, summary."""
        rows = []
        for name, result in zip(self.labels, self.results):
            d = result.settings.to_dict()
            rows.append({
                "label": name, **{key: d[key] for key in self.varied},
                "runs": len(result.results), **result.summary(),
            })
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "varied": self.varied,
            "configurations": [
                {"label": name, **result.to_dict()}
                for name, result in zip(self.labels, self.results)
            ],
        }

    def write_csv(self, path: Path) -> None:
        """The table as CSV, written atomically (never half a file)."""
        rows = self.rows()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        atomic_write_text(path, text.getvalue())

    def table(self) -> str:
        """Mean ± sample std of the errors (percent) and of the final training loss."""
        rows = self.rows()
        width = max(len("configuration"), *(len(r["label"]) for r in rows))
        lines = [
            f"{'configuration':<{width}}  {'runs':>4}  {'train error':>15}  "
            f"{'test error':>15}  {'final loss':>21}"
        ]
        for r in rows:
            lines.append(
                f"{r['label']:<{width}}  {r['runs']:>4}  "
                f"{_pct(r['train_error_mean'], r['train_error_std']):>15}  "
                f"{_pct(r['test_error_mean'], r['test_error_std']):>15}  "
                f"{r['final_loss_mean']:>10.6f} ± {r['final_loss_std']:.6f}"
            )
        return "\n".join(lines)


def _pct(mean: float | None, std: float | None) -> str:
    return "none held out" if mean is None else f"{mean:.2%} ± {std:.2%}"


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def compare(
    base: TrainSettings,
    variations: Mapping[str, Sequence[Any]],
    runs: int,
    registry: Registry | None = None,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    on_configuration: Callable[[int, str], None] | None = None,
    together: bool = True,
    typed: Collection[str] | None = None,
    world: World | None = None,
) -> Comparison | None:
    """Run every configuration `runs` times (seeds base.seed, base.seed + 1, ...), as
    `run_many` does (`together`: as one batched ensemble where the components allow).

    Each configuration is resolved as `train` resolves settings (`typed`: the fields the
    user chose, see `plan`) and checked before the first is trained, so a bad value fails
    fast. See `run_plan` for the rest.
    """
    registry = registry or default_registry()
    planned = plan(base, variations, runs, registry, together, typed)
    varied = [key for key, values in variations.items() if len(values) > 1]
    return run_plan(planned, varied, runs, registry, on_epoch, on_run, on_configuration,
                    together, world)


def plan(
    base: TrainSettings, variations: Mapping[str, Sequence[Any]], runs: int, registry: Registry,
    together: bool = True, typed: Collection[str] | None = None,
) -> list[ResolvedRun]:
    """Every configuration of `configurations`, resolved and checked (for `runs` runs each).

    The varied fields and those in `typed` count as given; each dataset's defaults fill in
    the rest. Without `typed`, the fields off their defaults count as given (`user_fields`).
    """
    planned = []
    for settings in configurations(base, variations):
        check_runs(settings, runs)
        given = (user_fields(settings) if typed is None else set(typed)) | set(variations)
        resolved = resolve(settings, registry, given)
        prepare(resolved, registry, runs=runs if together else 1)  # checks it, then lets it go
        planned.append(resolved)
    return planned


def run_plan(
    planned: Sequence[ResolvedRun],
    varied: Sequence[str],
    runs: int,
    registry: Registry,
    on_epoch: EpochCallback | None = None,
    on_run: RunCallback | None = None,
    on_configuration: Callable[[int, str], None] | None = None,
    together: bool = True,
    world: World | None = None,
) -> Comparison | None:
    """Train the planned configurations `runs` times each; `varied` names the fields whose
    values differ between them (the labels).

    `on_configuration(index, label)` precedes each configuration's runs (with `world`,
    each group of runs this process trains). With `world` (core.training.distributed, under
    torchrun) the (configuration, seed) pairs are split across the processes: rank 0
    gets the Comparison, the other ranks None.
    """
    varied = list(varied)
    if world is not None:

        def on_group(index: int, _first_run: int) -> None:
            if on_configuration is not None:
                on_configuration(index, label(planned[index].settings, varied))

        grouped = sweep(planned, runs, registry, world, on_epoch, on_run, on_group, together)
        if grouped is None:
            return None
        return Comparison(varied, [MultiRunResult(r.settings, results,
                                                  batched(r, runs, registry, together))
                                   for r, results in zip(planned, grouped)])
    results = []
    for index, run in enumerate(planned):
        if on_configuration is not None:
            on_configuration(index, label(run.settings, varied))
        results.append(run_many(run, runs, registry, on_epoch, on_run, together))
    return Comparison(varied, results)
