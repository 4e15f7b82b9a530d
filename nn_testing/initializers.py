"""The checks of an initializer: every element filled with a finite number, the same under a seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from nn_testing.checks import Check, CheckResult, check_all, expect, resolve

SHAPES = ((2, 25), (25, 25), (25, 1))  # (fan_in, fan_out) of the report's network


def check_initializer(factory_or_name: Callable[..., Any] | str, **options: Any) -> list[CheckResult]:
    """Check an initializer: run every check `initializer_checks` yields (same arguments), then raise
    CheckFailed naming each one that failed; return the results when all passed."""
    return check_all(initializer_checks(factory_or_name, **options))


def initializer_checks(
    factory_or_name: Callable[..., Any] | str,
    *,
    shapes: Sequence[tuple[int, int]] = SHAPES,
    registry: Any = None,
    seed: int = 0,
    **args: Any,
) -> list[Check]:
    """The named checks of an initializer: shape, finiteness, determinism under a seed, over
    `shapes` (fan_in, fan_out) in float32 and float64; `args` go to the factory."""
    factory, label = resolve(factory_or_name, ("initializer",), registry)

    def fills():
        """(where, weight) for each shape and dtype, filled from NaN with seed `seed`."""
        init = factory(**args)
        for fan_in, fan_out in shapes:
            for dtype in (torch.float32, torch.float64):
                weight = torch.full((fan_in, fan_out), float("nan"), dtype=dtype)
                init(weight, fan_in, fan_out, torch.Generator().manual_seed(seed))
                yield f"({fan_in}, {fan_out}) {dtype}", (fan_in, fan_out), dtype, weight

    def shape() -> None:
        for where, expected, dtype, weight in fills():
            expect(tuple(weight.shape) == expected and weight.dtype == dtype, label, "shape",
                   f"{where} became {tuple(weight.shape)} {weight.dtype}")

    def finiteness() -> None:
        for where, _, _, weight in fills():
            bad = (~torch.isfinite(weight)).sum().item()
            expect(bad == 0, label, "finiteness",
                   f"{bad} of {weight.numel()} elements of {where} are not finite (or not filled)")

    def determinism() -> None:
        for (where, _, _, first), (_, _, _, second) in zip(fills(), fills()):
            same = first.shape == second.shape and bool(  # NaN left unfilled is finiteness's
                torch.isclose(first, second, rtol=0, atol=0, equal_nan=True).all())
            expect(same, label, "determinism under a seed",
                   f"{where}: two fills with seed {seed} differ by up to "
                   f"{(first - second).abs().max().item():.3g}")

    return [Check(label, "shape", shape), Check(label, "finiteness", finiteness),
            Check(label, "determinism under a seed", determinism)]
