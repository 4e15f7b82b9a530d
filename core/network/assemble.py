"""Building networks from registered names.

A network is described by a list of `LayerSpec`s (kind, name, constructor arguments): the
same description builds it, prints it, and (later) saves it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch

from core.errors import NNError, SettingsError, ShapeError
from core.network.layout import BATCH_FIRST, BATCH_INNERMOST, image_sample_shape, layout_of, plan
from core.network.protocols import Initializer, Module, evaluating
from core.network.shapes import describe_shape, sample_shape
from core.plugin.context import context_arguments
from core.plugin.registry import Registry
from core.network.residual import Residual
from core.network.sequential import Sequential
from core.network.stack import RESIDUAL, LayerSpec, parse_layers

# Arguments a layer gets from its context when its factory's signature names them
# (core/plugin/context.py): `in_shape` is one sample's shape as the layer before produces it,
# (features,) or (channels, height, width); `in_features` is its last size, `in_channels` its
# first; `layout` is BATCH_INNERMOST for a layer whose input is an image (core/network/layout.py).
CONTEXT_ARGS = context_arguments("layer")


def residual(*specs: LayerSpec) -> LayerSpec:
    """The spec of x + f(x), f the stack `specs` name (stack text: `residual(a,b)`)."""
    return LayerSpec(RESIDUAL, RESIDUAL, {"layers": list(specs)})


def repeat(times: int, *specs: LayerSpec) -> list[LayerSpec]:
    """`specs` `times` over, one after the other (stack text: `N*(a,b)`); each copy is built
    with weights of its own."""
    return [LayerSpec(s.kind, s.name, dict(s.args)) for _ in range(times) for s in specs]


def vocab_takers(registry: Registry, specs: Sequence[LayerSpec]) -> frozenset[str]:
    """The names among `specs` (inside blocks too) whose factory takes a `vocab`."""
    return frozenset(name for kind, name in components(specs)
                     if "vocab" in inspect.signature(registry.get(kind, name).factory).parameters)


def with_vocab(specs: Sequence[LayerSpec], takers: frozenset[str], vocab: int) -> list[LayerSpec]:
    """`specs` with `vocab=` given to every layer named in `takers` that was not given it:
    the data's vocabulary, written into the specs so that a model file rebuilds the same
    network without the data."""
    filled = []
    for s in specs:
        if s.kind == RESIDUAL:
            filled.append(residual(*with_vocab(s.args["layers"], takers, vocab)))
        elif s.name in takers and "vocab" not in s.args:
            filled.append(LayerSpec(s.kind, s.name, {**s.args, "vocab": vocab}))
        else:
            filled.append(s)
    return filled


def components(specs: Sequence[LayerSpec]) -> list[tuple[str, str]]:
    """(kind, name) of every registered component `specs` name, inside blocks too."""
    named = []
    for spec in specs:
        if spec.kind == RESIDUAL:
            named += components(spec.args["layers"])
        else:
            named.append((spec.kind, spec.name))
    return named


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
    in_shape: int | tuple[int, ...],
    *,
    init: Initializer,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    runs: int | None = None,
) -> Module:
    """Create one module, passing the context arguments its factory's signature names.

    `in_shape` (an int: a width) comes from the module before, and `in_features` and
    `in_channels` from it; `init`, `generator`, `dtype`, `device` and `runs` from the run.
    Explicit arguments in the spec win over the context.
    """
    entry = registry.get(spec.kind, spec.name)
    accepted = inspect.signature(entry.factory).parameters
    shape = sample_shape(in_shape)
    context = {"in_features": shape[-1], "in_channels": shape[0], "in_shape": shape,
               "init": init, "generator": generator, "dtype": dtype, "device": device, "runs": runs,
               "layout": BATCH_INNERMOST if len(shape) == 3 else BATCH_FIRST}
    kwargs = dict(spec.args)
    if isinstance(kwargs.get("init"), str):  # `linear:init=he` in a stack text: a name
        kwargs["init"] = registry.create("initializer", kwargs["init"])
    for key in CONTEXT_ARGS:
        if key in accepted:
            kwargs.setdefault(key, context[key])
    try:
        module = entry.create(**kwargs)
    except NNError:
        raise
    except (ValueError, TypeError) as e:  # the constructor refused a value: say which layer
        given = ", ".join(f"{k}={v!r}" for k, v in spec.args.items())
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SettingsError(f"{spec.kind} {spec.name!r} ({given or 'no arguments'}): {detail}") from None
    if getattr(entry.factory, "composite", False):  # its factory wrote a stack of registered layers
        inner = parse_layers(module, registry)
        built = build_layers(registry, inner, shape, init=init, generator=generator, dtype=dtype,
                             device=device, runs=runs)
        return Block(inner, *(m for m, _ in built), **layout_plan(shape, built))
    return module


class Block(Sequential):
    """The modules a composite layer's text names (a `transformer_block`), in order;
    `specs` says what they are, for the summary."""

    def __init__(self, specs: Sequence[LayerSpec], *modules: Module, **plan: Any):
        super().__init__(*modules, **plan)
        self.specs = list(specs)


def layout_plan(in_shape: Sequence[int], built: Sequence[tuple[Module, tuple[int, ...]]]) -> dict:
    """The conversions a stack of built modules needs (core/network/layout.py), as
    Sequential's keyword arguments: images come in and leave batch-first, and each layer
    takes them in its own layout. A block (residual, composite) runs its own modules under
    its own plan, so from outside it takes and gives batch-first images."""
    shapes = [tuple(in_shape)] + [shape for _, shape in built]
    before, after = plan([layout_of(m) for m, _ in built], [len(s) == 3 for s in shapes[:-1]],
                         len(shapes[-1]) == 3)
    return {"conversions": before, "final_conversion": after}


def output_shape(
    module: Module, in_shape: int | Sequence[int], dtype: torch.dtype,
    device: torch.device | str = "cpu", runs: int | None = None,
) -> tuple[int, ...]:
    """One sample's shape after `module`, found by a probe forward of one zero sample.

    The probe runs in evaluation mode, so it moves no running statistic and draws nothing;
    it is an image in the layout the module takes (core/network/layout.py).
    """
    lead = () if runs is None else (runs,)
    shape, layout = sample_shape(in_shape), layout_of(module)
    probe = torch.zeros(*lead, 1, *shape, dtype=dtype, device=device)
    if len(shape) == 3 and layout == BATCH_INNERMOST:
        probe = probe.movedim(-4, -1)  # (..., c, h, w, 1)
    with evaluating(module):
        out = module.forward(probe)
    return image_sample_shape(out, layout if len(shape) == 3 else BATCH_FIRST, len(lead))


def build_stack(
    registry: Registry, specs: Sequence[LayerSpec], in_features: int | Sequence[int], **options: Any
) -> Sequential:
    """A Sequential of the modules `specs` name, each layer's input shape inferred.

    `in_features` is the data's width, or one sample's shape ((1, 8, 8) for 8x8 grey
    images); `options` are `build_layers`'s (init, generator, dtype, device, runs). A
    module that cannot take the shape the one before it produces is a ShapeError naming
    the layer and both shapes. With `runs=R` every module must support runs
    (`supports_runs = True`): it is built as R independent copies with a leading run
    dimension (see core/pipeline/ensemble.py).
    """
    built = build_layers(registry, specs, in_features, **options)
    return Sequential(*(module for module, _ in built),
                      **layout_plan(sample_shape(in_features), built))


def build_flat_stack(
    registry: Registry, specs: Sequence[LayerSpec], input_shape: int | Sequence[int], **options: Any
) -> Sequential:
    """`build_stack` for data kept as flat rows, (n, features).

    When the sample shape has several dimensions (an image, (1, 8, 8)) and the first
    component takes images (its factory sets `takes_images = True`: conv2d, pooling,
    upsample, flatten), the network is built for that shape and reshapes each row to it on
    the way in, flattening each output on the way out (Sequential.input_shape). Any other
    stack (an MLP) is built for the flat rows.
    """
    shape = sample_shape(input_shape)
    first = components(specs)[:1]  # the first registered component, inside a block too
    images = len(shape) > 1 and bool(first) and getattr(
        registry.get(*first[0]).factory, "takes_images", False)
    model = build_stack(registry, specs, shape if images else math.prod(shape), **options)
    model.input_shape = shape if images else None
    return model


def build_layers(
    registry: Registry,
    specs: Sequence[LayerSpec],
    in_features: int | Sequence[int],
    *,
    init: str | Initializer,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    runs: int | None = None,
) -> list[tuple[Module, tuple[int, ...]]]:
    """Each module of `build_stack` with one sample's shape after it (for a summary table).

    `init` is an initializer's registered name, or an initializer itself; the weights are
    drawn from `generator` in layer order.
    """
    initializer = registry.create("initializer", init) if isinstance(init, str) else init
    for kind, name in components(specs):  # fail on a bad name before drawing any weight
        registry.get(kind, name)
    shape = sample_shape(in_features)
    built: list[tuple[Module, tuple[int, ...]]] = []
    for position, spec in enumerate(specs, start=1):
        try:
            if spec.kind == RESIDUAL:  # x + f(x): f's modules, built for the block's input
                inner = build_layers(registry, spec.args["layers"], shape, init=initializer,
                                     generator=generator, dtype=dtype, device=device, runs=runs)
                module = Residual(*(m for m, _ in inner), **layout_plan(shape, inner))
                module.specs = list(spec.args["layers"])
            else:
                module = build_module(
                    registry, spec, shape, init=initializer, generator=generator, dtype=dtype,
                    device=device, runs=runs,
                )
        except ShapeError as e:
            raise ShapeError(f"layers item {position} ({spec.name}): {e}") from None
        try:
            out = output_shape(module, shape, dtype, device, runs)
        except ShapeError as e:
            if position == 1 and len(shape) == 1 and spec.kind != RESIDUAL and getattr(
                    registry.get(spec.kind, spec.name).factory, "takes_images", False):
                raise ShapeError(  # say it plainly: channels and sizes mean nothing here
                    f"layers item 1 ({spec.name}) takes images, and these data have none: each "
                    f"row is {shape[0]} plain number{'s' if shape[0] != 1 else ''} (image data such "
                    f"as digits give each row a shape, 1x8x8); start the stack with a layer that "
                    f"takes features, such as linear"
                ) from None
            raise ShapeError(
                f"layers item {position} ({spec.name}) cannot take input {describe_shape(shape)}: {e}"
            ) from None
        except NNError:
            raise
        except (RuntimeError, IndexError, ValueError) as e:  # torch failed on the shape
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            hint = "; put flatten before a layer that takes features" if len(shape) > 1 else ""
            raise ShapeError(
                f"layers item {position} ({spec.name}) cannot take input "
                f"{describe_shape(shape)}: {first}{hint}"
            ) from None
        built.append((module, out))
        shape = out
    return built


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


class _TooBig(Exception):
    """A probe build on the CPU went past SMALL_PROBE_BYTES of weights: build on meta instead."""


def _zeros_within(budget: int) -> Initializer:
    """An initializer that zeroes each weight (no draws, no garbage) while the weights so
    far take at most `budget` bytes, and raises _TooBig before touching one that does not."""
    used = 0

    def zeros(weight: torch.Tensor, fan_in: int, fan_out: int, generator: Any) -> None:
        nonlocal used
        used += weight.numel() * weight.element_size()
        if used > budget:
            raise _TooBig
        weight.zero_()

    return zeros


# NOTE: the first op a process runs on torch's meta device costs 0.5-2 s (torch loads its
# Python meta kernels, and torch._dynamo with them: 2.1 s for `check` of the default network
# on the 2-core development machine, all but 0.01 s of it in the first meta addmm), more
# than all the rest of a small run's checks. A network whose weights fit in this many
# bytes is built and probed on the CPU instead, in milliseconds.
SMALL_PROBE_BYTES = 16 * 2**20


def shapes_only(
    registry: Registry, specs: Sequence[LayerSpec], input_shape: int | Sequence[int],
    dtype: torch.dtype, runs: int | None = None,
) -> Sequential | None:
    """The network `specs` build, without its values: shapes and dtypes, no memory to speak of.

    Built as `build_flat_stack` builds it for data of `input_shape` (a width, or one
    sample's shape), and run forward on one flat row, as the real model is fed. A cheap look
    at what the real build would allocate (a model file's header against its tensors, a
    run's size against the memory at hand). A network whose weights take at most
    SMALL_PROBE_BYTES is built on the CPU with zero weights; a larger one on torch's "meta"
    device (shapes, no storage); `probe_device` says which. None when a module cannot be
    built, or run forward, this way (or the stack does not fit the shape); then only the
    real build can tell, and it says why.
    """
    without_init = _without_init(specs)
    lead = () if runs is None else (runs,)
    width = math.prod(sample_shape(input_shape))

    def build(init: Initializer, device: str) -> Sequential:
        return build_flat_stack(registry, without_init, input_shape, init=init, generator=None,
                                dtype=dtype, device=device, runs=runs)

    try:
        try:
            model = build(_zeros_within(SMALL_PROBE_BYTES), "cpu")
        except (_TooBig, RuntimeError, MemoryError):  # large: shapes only, no storage
            model = build(_no_draws, "meta")
        with evaluating(model):
            model.forward(torch.zeros(*lead, 1, width, dtype=dtype, device=probe_device(model)))
    except Exception:  # noqa: BLE001 -- a plugin module that needs real values: skip the look
        return None
    return model


def _without_init(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """`specs` with no `init=` argument, inside blocks too (a shapes-only build draws nothing)."""
    return [LayerSpec(s.kind, s.name, {"layers": _without_init(s.args["layers"])}) if s.kind == RESIDUAL
            else LayerSpec(s.kind, s.name, {k: v for k, v in s.args.items() if k != "init"})
            for s in specs]


def probe_device(model: Sequential) -> torch.device:
    """Where a `shapes_only` network lives ("meta", or the CPU for a small one): probe it there."""
    return next((p.value.device for p in model.parameters()), torch.device("cpu"))


def check_output_width(
    model: Sequential, in_features: int, out_features: int, dtype: torch.dtype,
    where: torch.device | str = "cpu",
) -> None:
    """A stack must end with as many outputs as the data and loss need (one for two classes)."""
    with evaluating(model):
        width = model.forward(torch.zeros(1, in_features, dtype=dtype, device=where)).shape[-1]
    if width != out_features:
        raise SettingsError(
            f"layers must end with {'one' if out_features == 1 else out_features} output "
            f"feature{'s' if out_features > 1 else ''} for this task, got {width}; "
            f"end the stack with linear:out_features={out_features}"
        )
