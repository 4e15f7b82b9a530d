"""The checks of a dataset: it returns a `core.Dataset` whose tensors keep the contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nn_testing.checks import Check, CheckResult, check_all, expect, resolve


def check_dataset(factory_or_name: Callable[..., Any] | str, **options: Any) -> list[CheckResult]:
    """Check a dataset: run every check `dataset_checks` yields (same arguments), then raise
    CheckFailed naming each one that failed; return the results when all passed."""
    return check_all(dataset_checks(factory_or_name, **options))


def dataset_checks(
    factory_or_name: Callable[..., Any] | str,
    *,
    registry: Any = None,
    seed: int = 0,
    **options: Any,
) -> list[Check]:
    """The named checks of a dataset: it returns a `core.Dataset` whose tensors keep the
    contract.

    Builds it as the pipeline does (its options, plus `generator`, `n_train`, `n_test` and
    `dtype` when its signature names them) and checks, each as a named check: the shapes
    and dtypes of x and y, labels within the class names, finite values, feature names and
    input shape consistent with the columns, the task's class count, and the same seed
    giving the same tensors twice.
    """
    from core import Dataset
    from core.data.dataset import build_from_factory, dataset_problems

    factory, label = resolve(factory_or_name, ("dataset",), registry)

    def build() -> Any:
        return build_from_factory(factory, options, seed=seed, check=False)

    def returns_a_dataset() -> None:
        data = build()
        expect(isinstance(data, Dataset), label, "returns a Dataset",
               f"the factory returned {type(data).__name__}, not core.Dataset")

    def contract() -> None:
        data = build()
        for problem in dataset_problems(data):
            expect(False, label, "contract", problem)
        expect(len(data.x_train) > 0, label, "contract", "x_train has no rows")

    def classes() -> None:
        data = build()
        if data.task != "regression":
            present = torch.bincount(data.y_train, minlength=data.n_classes)  # (classes,)
            expect(bool((present > 0).sum() >= 2), label, "classes",
                   f"the training labels hold {(present > 0).sum().item()} class(es); "
                   f"at least 2 are needed")

    def determinism() -> None:
        built = [build(), build()]
        for name in ("x_train", "y_train", "x_test", "y_test"):
            a, b = getattr(built[0], name), getattr(built[1], name)
            expect((a is None) == (b is None) and (a is None or torch.equal(a, b)), label,
                   "determinism under a seed",
                   f"{name} differs between two builds with seed {seed}")
        expect(built[0].metadata() == built[1].metadata(), label, "determinism under a seed",
               "the metadata differs between two builds")

    if not isinstance(build(), Dataset):  # nothing else can be checked
        return [Check(label, "returns a Dataset", returns_a_dataset)]
    return [Check(label, "returns a Dataset", returns_a_dataset),
            Check(label, "contract", contract), Check(label, "classes", classes),
            Check(label, "determinism under a seed", determinism)]
