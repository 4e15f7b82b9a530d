"""Building networks from registered names."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from core.protocols import Initializer, Module
from core.registry import Registry
from core.sequential import Sequential


def build_layer(
    registry: Registry,
    name: str,
    in_features: int,
    *,
    init: Initializer,
    generator: torch.Generator,
    dtype: torch.dtype,
    **kwargs: Any,
) -> Module:
    """Create layer `name`, passing the context arguments its factory's signature names.

    `in_features` comes from the layer before; `init`, `generator` and `dtype` from the
    run. Explicit `kwargs` win over the context.
    """
    entry = registry.get("layer", name)
    accepted = inspect.signature(entry.factory).parameters
    context = {"in_features": in_features, "init": init, "generator": generator, "dtype": dtype}
    for key, value in context.items():
        if key in accepted:
            kwargs.setdefault(key, value)
    return entry.create(**kwargs)


def build_mlp(
    registry: Registry,
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    activation: str,
    init: str,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> Sequential:
    """linear -> activation -> ... -> linear, with the given hidden widths."""
    initializer = registry.create("initializer", init)
    registry.get("activation", activation)  # fail on a bad name before drawing any weight
    modules: list[Module] = []
    for i, width in enumerate([*hidden, out_features]):
        modules.append(
            build_layer(
                registry, "linear", in_features, out_features=width,
                init=initializer, generator=generator, dtype=dtype,
            )
        )
        if i < len(hidden):
            modules.append(registry.create("activation", activation))
        in_features = width
    return Sequential(*modules)
