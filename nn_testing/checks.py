"""Named checks: one check of one component, running all of them, reporting every failure.

A `Check` is a name and a function; calling it runs it and raises `CheckFailed` when the
component fails it. `run_checks` runs every check, whatever fails before it (an exception
from the component counts as that check's failure), and `raise_failures` reports the
failures together, each by name, as scikit-learn's `check_estimator` does with its checks.
The comparisons the checks make (`expect`, `close`) live here too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

TOLERANCE = {torch.float64: (1e-9, 1e-11), torch.float32: (1e-4, 1e-5)}  # (rtol, atol)


class CheckFailed(AssertionError):
    """A kit check failed; the message names the check and by how much.

    Raised by `check_module` and the other `check_*` after every check has run:
    `failures` holds each failed check's result, its name and message.
    """

    def __init__(self, message: str, failures: Iterable[CheckResult] = ()):
        super().__init__(message)
        self.failures = list(failures)


@dataclass(frozen=True)
class Check:
    """One named check of one component; calling it runs it (CheckFailed when it fails)."""

    component: str  # what is checked: the factory's or the registered name
    name: str  # what the check checks, e.g. "gradients vs autograd at random parameters"
    run: Callable[[], None] = field(repr=False, compare=False)

    def __call__(self) -> None:
        self.run()

    def __str__(self) -> str:  # a test id: pytest.mark.parametrize(..., ids=str)
        return f"{self.component}: {self.name}"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    message: str | None  # None: passed; else what failed and by how much

    @property
    def passed(self) -> bool:
        return self.message is None


def run_checks(checks: Iterable[Check]) -> list[CheckResult]:
    """Run every check, each whatever the others gave, and return each one's result."""
    results = []
    for check in checks:
        try:
            check()
        except CheckFailed as e:
            results.append(CheckResult(check, str(e)))
        except Exception as e:  # the component raised: that check fails, the others still run
            results.append(CheckResult(
                check, f"{check.component}: check failed: {check.name}: "
                       f"raised {type(e).__name__}: {e}"))
        else:
            results.append(CheckResult(check, None))
    return results


def raise_failures(component: str, results: list[CheckResult]) -> None:
    """CheckFailed listing every failed check by name; nothing when all passed."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return
    lines = [f"{component}: {len(failed)} of {len(results)} checks failed:"]
    lines += [f"- {r.check.name}: {r.message}" for r in failed]
    raise CheckFailed("\n".join(lines), failed)


def check_all(checks: list[Check]) -> list[CheckResult]:
    """Run every check (of one component), then raise CheckFailed naming each failed one;
    the results when all passed."""
    results = run_checks(checks)
    raise_failures(checks[0].component, results)
    return results


# -- comparisons -------------------------------------------------------------------------


def expect(ok: bool, label: str, check: str, detail: str) -> None:
    if not ok:
        raise CheckFailed(f"{label}: check failed: {check}: {detail}")


def close(actual: torch.Tensor, expected: torch.Tensor, label: str, check: str) -> None:
    """`actual` equals `expected` (the oracle's) within the kit's tolerance for its dtype."""
    expect(tuple(actual.shape) == tuple(expected.shape), label, check,
           f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    rtol, atol = TOLERANCE.get(expected.dtype, TOLERANCE[torch.float32])
    error = (actual.to(expected.dtype) - expected).abs()  # same shape as expected
    allowed = atol + rtol * expected.abs()
    if not bool((error <= allowed).all()):
        worst = int((error - allowed).argmax())
        scale = expected.abs().max().item()
        raise CheckFailed(
            f"{label}: check failed: {check}: off by up to {error.max().item():.3g} "
            f"(largest reference value {scale:.3g}, so {error.max().item() / max(scale, 1e-300):.3g} "
            f"relative; allowed {atol:g} + {rtol:g} x |reference|); at flat index {worst}: "
            f"got {actual.flatten()[worst].item():.6g}, autograd {expected.flatten()[worst].item():.6g}"
        )


# -- finding the component -------------------------------------------------------------


def resolve(factory_or_name: Any, kinds: tuple[str, ...], registry: Any) -> tuple[Any, str]:
    """(factory, label) of a factory, or of a name registered as one of `kinds`."""
    if not isinstance(factory_or_name, str):
        return factory_or_name, getattr(factory_or_name, "__name__", repr(factory_or_name))
    if registry is None:
        from core.plugin.discovery import load_registry

        registry = load_registry()
    for kind in kinds:
        if factory_or_name in registry.names(kind):
            return registry.get(kind, factory_or_name).factory, factory_or_name
    return registry.get(kinds[0], factory_or_name).factory, factory_or_name  # raises, listing names


def signature(factory: Any) -> Any:
    """The factory's parameters by name ({} when it has no inspectable signature)."""
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
