"""Defaults for a small table: what a careful practitioner picks when rows are few.

The run's defaults (TrainSettings) were chosen for the report's disk: 1000 points of two
features, where three layers of 25 trained for 150 epochs do not memorise. On a table with
few rows for its features (iris: 112 training rows of 4 features; a regression of 330 rows
of 10), the same network memorises them: measured on held-out files, R^2 0.11 where a
least-squares line scores 0.53 (issue 23). There, unless the user says otherwise:

- a validation share with early stopping that keeps the best epoch's weights (Keras's
  `EarlyStopping(restore_best_weights=True)`, scikit-learn's `early_stopping`);
- one hidden layer of 32 and an L2 penalty (stronger for regression), so that the network
  cannot simply memorise;
- batches of 32, so that an epoch of a hundred rows still takes several steps, at a rate
  of 0.01, for at most 300 epochs (early stopping ends most runs long before).

The rule is a pure function of the data's shape and size; bench/small_tables.py measures
it against scikit-learn's MLP on its bundled tables. Images (a sample of more than one
dimension), tables with many rows per feature and data drawn from the seed (the disk,
moons, ..., however few points are asked for: core/pipeline/resolve.py) keep the run's
defaults: the synthetic
2-D sets (375 rows per feature) trained worse under these (measured: moons 2.6 % -> 12.6 %
test error with the penalty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Fewer training rows per feature than this is a small table, where memorising is the risk.
ROWS_PER_FEATURE = 100
# Past this many training rows the data speak for themselves, whatever their width.
MAX_ROWS = 10_000


# The penalty by task: measured on held-out files of scikit-learn's tables (seeds 0-4),
# diabetes R^2 0.37 at 0.01, 0.42 at 0.1; breast_cancer error 3.1 % at 0.01, 4.9 % at 0.1.
L2 = {"binary": 0.01, "multiclass": 0.01, "regression": 0.1}


# The settings the rule may set.
TABLE_FIELDS = frozenset({"val_fraction", "patience", "epochs", "hidden", "l2", "batch_size", "lr"})


@dataclass(frozen=True)
class Default:
    """A default the rule chose for one setting, and why."""

    field: str  # the TrainSettings field
    value: Any
    why: str

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "value": value, "why": self.why}


def small_table_defaults(
    task: str, rows: int, features: int, input_shape: tuple[int, ...] = ()
) -> list[Default]:
    """The defaults for a `task` on `rows` training rows (after the test split) of
    `features` features; none where the data are not a small table (see the module)."""
    if task not in L2 or len(input_shape) > 1 or features < 1 or rows > MAX_ROWS:
        return []  # a table's tasks only: not sequences of tokens, not images
    per_feature = rows / features
    if per_feature >= ROWS_PER_FEATURE:
        return []
    size = f"{rows} training rows of {features} features ({per_feature:.0f} per feature)"
    return [
        Default("val_fraction", 0.15,
                f"{size}: hold out 15% to keep the epoch that does best on rows it did not train on"),
        Default("patience", 30, "stop after 30 epochs without a lower validation loss"),
        Default("epochs", 300, "at most; early stopping ends most runs sooner"),
        Default("hidden", (32,), "one hidden layer: three layers of 25 memorise a small table"),
        Default("l2", L2[task],
                "a penalty on the weights against memorising few rows"
                + (" (regression: stronger, on standardised targets)" if task == "regression" else "")),
        Default("batch_size", 32, "several steps per epoch on few rows"),
        Default("lr", 0.01, "a steadier rate for small batches"),
    ]
