"""Input standardisation: an explicit pipeline step, fitted on the training inputs only.

`fit_standardize(x_train)` computes the per-feature mean and standard deviation of the
training inputs; `apply(preprocessing, x)` maps any inputs (train, test, or new points at
predict time) through exactly that transform. The statistics travel as a plain dict of
lists, so they can be written to JSON and applied later without the training data.
"""

from __future__ import annotations

from typing import Any

import torch

from core.errors import SettingsError

# What "no preprocessing" looks like in a result.
IDENTITY: dict[str, Any] = {"kind": "identity"}


def fit_standardize(x: torch.Tensor) -> dict[str, Any]:
    """Per-feature mean and (population) standard deviation of `x` (n, features)."""
    x64 = x.double()
    mean = x64.mean(dim=0)  # (features,)
    std = x64.std(dim=0, correction=0)  # (features,)
    # NOTE: a constant feature would divide by zero; leave it centred but unscaled.
    std = torch.where(std > 0, std, torch.ones_like(std))
    return {"kind": "standardize", "mean": mean.tolist(), "std": std.tolist()}


def apply(preprocessing: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """`x` (n, features) mapped through a preprocessing dict from `fit_standardize`."""
    kind = preprocessing.get("kind")
    if kind == "identity":
        return x
    if kind != "standardize":
        raise SettingsError(
            f"unknown preprocessing kind {kind!r}; accepted: 'identity', 'standardize'"
        )
    mean = torch.tensor(preprocessing["mean"], dtype=torch.float64)  # (features,)
    std = torch.tensor(preprocessing["std"], dtype=torch.float64)  # (features,)
    if mean.shape != (x.shape[-1],) or std.shape != mean.shape:
        raise SettingsError(
            f"preprocessing is for {mean.numel()} features, inputs have {x.shape[-1]}"
        )
    # Computed in float64, then back to the inputs' precision, so float32 and float64
    # runs see the same transform.
    return ((x.double() - mean) / std).to(x.dtype)  # (n, features)
