"""The checks of a loss: a 0-dim value, and its backward against torch.autograd."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from nn_testing.checks import Check, CheckResult, check_all, close, expect, resolve
from nn_testing.modules import BATCH_SIZES


def check_loss(factory_or_name: Callable[..., Any] | str, **options: Any) -> list[CheckResult]:
    """Check a loss: run every check `loss_checks` yields (same arguments), then raise
    CheckFailed naming each one that failed; return the results when all passed."""
    return check_all(loss_checks(factory_or_name, **options))


def loss_checks(
    factory_or_name: Callable[..., Any] | str,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    out_features: Sequence[int] = (1, 3),
    registry: Any = None,
    seed: int = 0,
    **args: Any,
) -> list[Check]:
    """The named checks of a loss: a 0-dim value equal to autograd's run of its forward, and
    its backward against autograd, on 0/1 targets of each batch size and output width;
    `args` go to the factory."""
    factory, label = resolve(factory_or_name, ("loss",), registry)

    def cases():
        """(where, loss, prediction, target, autograd's value, autograd's gradient), each case."""
        loss = factory(**args)
        generator = torch.Generator().manual_seed(seed)
        for batch in batch_sizes:
            for width in out_features:
                where = f"batch {batch}, {width} outputs"
                prediction = torch.randn(batch, width, generator=generator, dtype=torch.float64) * 2
                target = (torch.rand(batch, width, generator=generator, dtype=torch.float64) > 0.5).double()
                leaf = prediction.clone().requires_grad_(True)
                with torch.enable_grad():
                    expected = loss.forward(leaf, target)
                    expect(expected.dim() == 0, label, "scalar value",
                           f"forward returned shape {tuple(expected.shape)} ({where}), not a 0-dim tensor")
                    (expected_grad,) = torch.autograd.grad(expected, leaf)
                yield where, loss, prediction, target, expected.detach(), expected_grad

    def value() -> None:
        for where, loss, prediction, target, expected, _ in cases():
            close(loss.forward(prediction, target), expected, label,
                  f"forward is deterministic ({where})")

    def gradient() -> None:
        for where, loss, prediction, target, _, expected_grad in cases():
            loss.forward(prediction, target)
            close(loss.backward(), expected_grad, label,
                  f"prediction gradient vs autograd ({where})")

    return [Check(label, "scalar value", value),
            Check(label, "prediction gradient vs autograd", gradient)]
