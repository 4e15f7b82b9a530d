"""Configurations side by side: the cartesian product of settings, each run `runs` times."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from core.files.atomic import atomic_write_text
from core.errors import SettingsError
from core.pipeline.experiment import check, with_data_defaults
from core.pipeline.multirun import EpochCallback, MultiRunResult, RunCallback, run_many
from core.plugin.registry import Registry, default_registry
from core.training.settings import TrainSettings

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


def label(settings: TrainSettings, varied: Sequence[str]) -> str:
    """'act=tanh loss=mse' from the fields that differ between configurations."""
    d = settings.to_dict()
    parts = []
    for key in varied:
        value = d[key]
        if isinstance(value, list):
            value = ",".join(map(str, value))
        elif isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items()) or "-"
        parts.append(f"{key}={value}")
    return " ".join(parts) or "defaults"


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


def _pct(mean: float, std: float) -> str:
    return f"{mean:.2%} ± {std:.2%}"


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
) -> Comparison:
    """Run every configuration `runs` times (seeds base.seed, base.seed + 1, ...), as
    `run_many` does (`together`: as one batched ensemble where the components allow).

    Every configuration is checked before the first is trained, so a bad value fails fast.
    `on_configuration(index, label)` precedes each configuration's runs.
    """
    registry = registry or default_registry()
    configs = configurations(base, variations)
    if typed is not None:  # what the user chose; each dataset's defaults fill in the rest
        configs = [with_data_defaults(settings, registry, typed) for settings in configs]
    for settings in configs:
        check(settings, registry, runs=runs if together else 1)
    varied = [key for key, values in variations.items() if len(values) > 1]
    results = []
    for index, settings in enumerate(configs):
        if on_configuration is not None:
            on_configuration(index, label(settings, varied))
        results.append(run_many(settings, runs, registry, on_epoch, on_run, together))
    return Comparison(varied, results)
