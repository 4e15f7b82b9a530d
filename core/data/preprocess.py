"""Input standardisation: an explicit pipeline step, fitted on the training inputs only.

`fit_standardize(x_train)` computes the per-feature mean and standard deviation of the
training inputs; `apply(preprocessing, x)` maps any inputs (train, test, or new points at
predict time) through exactly that transform. The statistics travel as a plain dict, the
form model files store (core/files/model_file.py):

    {}                                                 no preprocessing
    {"standardize": {"mean": [...], "std": [...]}}     (x - mean) / std, per feature

A regression run standardises its targets too, under "target" (same form); the network
learns (y - mean) / std and `target_output` maps its outputs back to the target's units.
`apply` leaves the "target" entry to `target_output`.
"""

from __future__ import annotations

from typing import Any

import torch

from core.errors import SettingsError

IDENTITY: dict[str, Any] = {}  # what "no preprocessing" looks like in a result
STEPS = ("standardize", "target")


def fit_standardize(x: torch.Tensor) -> dict[str, Any]:
    """Per-feature mean and (population) standard deviation of `x` (n, features)."""
    x64 = x.double()
    mean = x64.mean(dim=0)  # (features,)
    std = x64.std(dim=0, correction=0)  # (features,)
    # NOTE: a constant feature would divide by zero; leave it centred but unscaled.
    std = torch.where(std > 0, std, torch.ones_like(std))
    return {"standardize": {"mean": mean.tolist(), "std": std.tolist()}}


def fit_target(y: torch.Tensor) -> dict[str, Any]:
    """The "target" entry of a regression run: mean and std of the training targets (n, t)."""
    return fit_standardize(y)["standardize"]


def scale_target(preprocessing: dict[str, Any], y: torch.Tensor) -> torch.Tensor:
    """Targets (n, t) in the units the network learns (standardised when fitted so)."""
    target = preprocessing.get("target")
    if not target:
        return y
    mean = torch.tensor(target["mean"], dtype=torch.float64, device=y.device)  # (t,)
    std = torch.tensor(target["std"], dtype=torch.float64, device=y.device)  # (t,)
    return ((y.double() - mean) / std).to(y.dtype)


def target_output(preprocessing: dict[str, Any], out: torch.Tensor) -> torch.Tensor:
    """Network outputs (..., n, t) back in the target's units, in float64."""
    target = preprocessing.get("target")
    if not target:
        return out.double()
    mean = torch.tensor(target["mean"], dtype=torch.float64, device=out.device)  # (t,)
    std = torch.tensor(target["std"], dtype=torch.float64, device=out.device)  # (t,)
    return out.double() * std + mean


def apply(preprocessing: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """`x` (n, features) mapped through a preprocessing dict such as `fit_standardize` makes."""
    unknown = [step for step in preprocessing if step not in STEPS]
    if unknown:
        raise SettingsError(
            f"unknown preprocessing step {unknown[0]!r}; accepted: {', '.join(STEPS)}"
        )
    standardize = preprocessing.get("standardize")
    if not standardize:
        return x
    mean = torch.tensor(standardize["mean"], dtype=torch.float64, device=x.device)  # (features,)
    std = torch.tensor(standardize["std"], dtype=torch.float64, device=x.device)  # (features,)
    if mean.shape != (x.shape[-1],) or std.shape != mean.shape:
        raise SettingsError(
            f"preprocessing is for {mean.numel()} features, inputs have {x.shape[-1]}"
        )
    # Computed in float64, then back to the inputs' precision, so that training, testing
    # and predicting from a saved model all see the same numbers.
    return ((x.double() - mean) / std).to(x.dtype)  # (n, features)
