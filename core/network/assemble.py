"""Building networks from registered names.

A network is described by a list of `LayerSpec`s (kind, name, constructor arguments): the
same description builds it, prints it, and (later) saves it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.errors import NNError, SettingsError
from core.network.protocols import Initializer, Module
from core.plugin.registry import Registry
from core.network.sequential import Sequential

# Arguments a layer gets from its context when its factory's signature names them.
CONTEXT_ARGS = ("in_features", "init", "generator", "dtype", "device", "runs")


@dataclass(frozen=True)
class LayerSpec:
    """One module of a network, by registered kind and name."""

    kind: str  # "layer" or "activation"
    name: str  # the registered name, e.g. "linear"
    args: dict[str, Any] = field(default_factory=dict)  # explicit constructor arguments

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "args": dict(self.args)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        return cls(d["kind"], d["name"], dict(d.get("args", {})))


def mlp_specs(hidden: Sequence[int], out_features: int, activation: str) -> list[LayerSpec]:
    """linear -> activation -> ... -> linear, with the given hidden widths."""
    specs = []
    for width in hidden:
        specs += [LayerSpec("layer", "linear", {"out_features": width}),
                  LayerSpec("activation", activation)]
    return specs + [LayerSpec("layer", "linear", {"out_features": out_features})]


def build_module(
    registry: Registry,
    spec: LayerSpec,
    in_features: int,
    *,
    init: Initializer,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    runs: int | None = None,
) -> Module:
    """Create one module, passing the context arguments its factory's signature names.

    `in_features` comes from the module before; `init`, `generator`, `dtype`, `device`
    and `runs` from the run. Explicit arguments in the spec win over the context.
    """
    entry = registry.get(spec.kind, spec.name)
    accepted = inspect.signature(entry.factory).parameters
    context = {"in_features": in_features, "init": init, "generator": generator, "dtype": dtype,
               "device": device, "runs": runs}
    kwargs = dict(spec.args)
    if isinstance(kwargs.get("init"), str):  # `linear:init=he` in a stack text: a name
        kwargs["init"] = registry.create("initializer", kwargs["init"])
    for key in CONTEXT_ARGS:
        if key in accepted:
            kwargs.setdefault(key, context[key])
    try:
        return entry.create(**kwargs)
    except NNError:
        raise
    except (ValueError, TypeError) as e:  # the constructor refused a value: say which layer
        given = ", ".join(f"{k}={v!r}" for k, v in spec.args.items())
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SettingsError(f"{spec.kind} {spec.name!r} ({given or 'no arguments'}): {detail}") from None


def output_width(
    module: Module, in_features: int, dtype: torch.dtype, device: torch.device | str = "cpu",
    runs: int | None = None,
) -> int:
    """How many features `module` produces from `in_features`, found by a probe forward."""
    out_features = getattr(module, "out_features", None)
    if isinstance(out_features, int):
        return out_features
    lead = () if runs is None else (runs,)
    probe = torch.zeros(*lead, 1, in_features, dtype=dtype, device=device)  # (..., 1, in)
    return module.forward(probe).shape[-1]


def build_stack(
    registry: Registry,
    specs: Sequence[LayerSpec],
    in_features: int,
    *,
    init: str | Initializer,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    runs: int | None = None,
) -> Sequential:
    """A Sequential of the modules `specs` name, each layer's in-features inferred.

    `init` is an initializer's registered name, or an initializer itself.

    With `runs=R` every module must support runs (`supports_runs = True`): it is built as
    R independent copies with a leading run dimension (see core/ensemble.py).
    """
    initializer = registry.create("initializer", init) if isinstance(init, str) else init
    for spec in specs:  # fail on a bad name before drawing any weight
        registry.get(spec.kind, spec.name)
    modules: list[Module] = []
    for spec in specs:
        module = build_module(
            registry, spec, in_features, init=initializer, generator=generator, dtype=dtype,
            device=device, runs=runs,
        )
        in_features = output_width(module, in_features, dtype, device, runs)
        modules.append(module)
    return Sequential(*modules)


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
    device: torch.device | str = "cpu",
) -> Sequential:
    """linear -> activation -> ... -> linear, with the given hidden widths."""
    return build_stack(
        registry, mlp_specs(hidden, out_features, activation), in_features,
        init=init, generator=generator, dtype=dtype, device=device,
    )


def _no_draws(weight: torch.Tensor, fan_in: int, fan_out: int, generator: Any) -> None:
    """An initializer that draws nothing: the shapes-only build needs no values."""


def shapes_only(
    registry: Registry, specs: Sequence[LayerSpec], in_features: int, dtype: torch.dtype,
    runs: int | None = None,
) -> Sequential | None:
    """The network `specs` build, on torch's "meta" device: shapes and dtypes, no memory.

    A cheap look at what the real build would allocate (a model file's header against its
    tensors, a run's size against the memory at hand). None when a module cannot be built,
    or run forward, on the meta device; then only the real build can tell.
    """
    without_init = [LayerSpec(s.kind, s.name, {k: v for k, v in s.args.items() if k != "init"})
                    for s in specs]
    lead = () if runs is None else (runs,)
    try:
        model = build_stack(registry, without_init, in_features, init=_no_draws, generator=None,
                            dtype=dtype, device="meta", runs=runs)
        model.forward(torch.zeros(*lead, 1, in_features, dtype=dtype, device="meta"))
    except Exception:  # noqa: BLE001 -- a plugin module that needs real values: skip the look
        return None
    return model
