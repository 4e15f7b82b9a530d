"""Seeded splits, stratified for classification, and the targets a loss trains on.

`split_indices(y, fraction, generator)` holds out `fraction` of the rows: for
classification, class by class (each class keeps its share, rounded so the held-out
total is round(fraction * n), as scikit-learn's `train_test_split(stratify=y)` does);
for regression, a plain random share. The same generator state gives the same split.
"""

from __future__ import annotations

import torch

from core.data.dataset import CLASSIFICATION, DataError


def check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise DataError(f"{name} must be a number in (0, 1) (exclusive), got {value!r}")


def split_indices(
    y: torch.Tensor, fraction: float, generator: torch.Generator, *, task: str, what: str = "test"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held_out) row indices, each sorted; `fraction` of the rows are held out."""
    n = len(y)
    held = round(fraction * n)
    if held < 1 or held >= n:
        raise DataError(
            f"a {what} fraction of {fraction:g} of {n} rows leaves "
            f"{'no' if held < 1 else 'every'} row for {what if held < 1 else 'training'}; "
            f"choose a fraction between {1 / n:.3g} and {1 - 1 / n:.3g}"
        )
    if task not in CLASSIFICATION:
        order = torch.randperm(n, generator=generator)
        return order[held:].sort().values, order[:held].sort().values
    classes, counts = torch.unique(y, return_counts=True)
    shares = _shares(counts.tolist(), held)
    kept, out = [], []
    for c, share in zip(classes.tolist(), shares):
        rows = (y == c).nonzero().view(-1)  # (count,)
        rows = rows[torch.randperm(len(rows), generator=generator)]
        out.append(rows[:share])
        kept.append(rows[share:])
    return torch.cat(kept).sort().values, torch.cat(out).sort().values


def _shares(counts: list[int], held: int) -> list[int]:
    """Each class's number of held-out rows: proportional, rounded by largest remainder so
    they add up to `held`; a class of two or more rows keeps at least one on each side."""
    n = sum(counts)
    exact = [c * held / n for c in counts]
    low = [min(1, c - 1) for c in counts]  # at least one held out, where one can be spared
    high = [max(c - 1, 0) for c in counts]  # at least one kept
    shares = [min(max(int(e), lo), hi) for e, lo, hi in zip(exact, low, high)]
    by_remainder = sorted(range(len(counts)), key=lambda j: (-(exact[j] - int(exact[j])), j))
    while sum(shares) != held:
        step = 1 if sum(shares) < held else -1
        moved = False
        for j in (by_remainder if step > 0 else reversed(by_remainder)):
            if sum(shares) == held:
                break
            if low[j] <= shares[j] + step <= high[j]:
                shares[j] += step
                moved = True
        if not moved:  # every class at its bound: the nearest split there is
            break
    return shares


def training_targets(y: torch.Tensor, task: str, n_classes: int, one_hot: bool) -> torch.Tensor:
    """What a loss trains on: (n, 1) 0/1, (n, classes) one-hot, or the regression targets."""
    if task not in CLASSIFICATION:
        return y.double()  # (n, targets), or (n, context) next-token ids
    if not one_hot:
        return y.double().view(-1, 1)  # (n, 1): class 1 or 0
    one = torch.zeros(len(y), n_classes, dtype=torch.float64)  # (n, classes)
    return one.scatter_(1, y.view(-1, 1), 1.0)


def is_one_hot(loss: object, task: str) -> bool:
    """Whether `loss` trains one output per class: always for multiclass; for a binary task
    when the loss has no `decision_threshold` (cross_entropy)."""
    return task == "multiclass" or (task == "binary" and not hasattr(loss, "decision_threshold"))


def output_width(data, loss: object) -> int:
    """How many outputs the network needs for this data and loss."""
    if data.task == "regression":
        return data.y_train.shape[1]
    if data.task == "sequence":  # logits over the vocabulary at every position
        return data.n_classes
    return data.n_classes if is_one_hot(loss, data.task) else 1


def loss_tasks(factory: object) -> tuple[str, ...]:
    """The tasks a loss declares it fits (`tasks`); "binary" only for one that does not say."""
    return tuple(getattr(factory, "tasks", ("binary",)))

