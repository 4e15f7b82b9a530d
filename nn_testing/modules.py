"""The checks of a layer or activation: its hand-written backward against torch.autograd.

`module_checks` yields them by name; `check_module` runs them all and reports every failure.
Each check builds its own module (float64, seeded), so none depends on another's leftovers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.network.layout import BATCH_INNERMOST, to_batch_first, to_batch_innermost
from core.network.protocols import Parameter, set_training, zero_grad
from nn_testing.checks import Check, CheckResult, check_all, close, expect, resolve, signature

BATCH_SIZES = (1, 3, 8)
RUNS = 3  # runs in the check of a component that declares supports_runs


def check_module(factory_or_name: Callable[..., Any] | str, **options: Any) -> list[CheckResult]:
    """Check a layer or activation: run every check `module_checks` yields (same arguments),
    then raise CheckFailed naming each one that failed and by how much; return the results
    when all passed."""
    return check_all(module_checks(factory_or_name, **options))


def module_checks(
    factory_or_name: Callable[..., Any] | str,
    *,
    in_features: int = 4,
    in_shape: Sequence[int] | None = None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    runs: int | None = RUNS,
    registry: Any = None,
    seed: int = 0,
    **args: Any,
) -> list[Check]:
    """The named checks of a layer or activation: backward against autograd, accumulation,
    shapes, seeds. Call each to run it; as the cases of a parametrized test:

        @pytest.mark.parametrize("check", module_checks(MyLayer, alpha=0.2), ids=str)
        def test_my_layer(check):
            check()

    `args` are passed to the factory; `in_features`, `init`, `generator` and `dtype` are
    passed too when its signature names them, as the assembler does (and `out_features=3`
    unless given). The gradients are compared at the parameters' initial values and again
    after moving every parameter to random values (seeded), so a backward that is right
    only at the initial values (a gain of 1, a bias of 0) fails. A component that declares
    `supports_runs = True` is also checked with `runs` runs (None: not): parameters with a
    leading run dimension, input (runs, batch, in_features), each run equal to the single
    component holding that run's parameters.

    Images: `in_shape=(3, 7, 9)` makes the input (batch, *in_shape) instead of
    (batch, in_features); `in_channels` (its first size) and `in_shape` are passed too when
    the signature names them, and `in_features` is its last size. A module with modes (an
    optional `train(mode)`) is checked in training and in evaluation. A module that keeps a
    torch.Generator (dropout; a list of them with runs) has it replayed, so autograd and
    the hand-written backward see the same random draws. An image layer that takes a
    `layout` gets every check twice: as built by hand (images batch-first), and built as a
    network builds it, batch-innermost (core/network/layout.py), its input converted from
    and its output and gradient back to batch-first at its edges (label "(batch-innermost)").

    The module is built once here to learn which checks apply (parameters, modes, runs).
    """
    factory, label = resolve(factory_or_name, ("layer", "activation"), registry)
    sample = (in_features,) if in_shape is None else tuple(in_shape)
    checks = _checks_of(factory, label, sample, batch_sizes, runs, seed, args)
    if len(sample) == 3 and "layout" in signature(factory):
        checks += _checks_of(factory, f"{label} (batch-innermost)", sample, batch_sizes, runs, seed,
                             {**args, "layout": BATCH_INNERMOST})
    return checks


def _checks_of(factory, label, sample, batch_sizes, runs, seed, args) -> list[Check]:
    """module_checks' checks for one way of building the module."""
    case = _ModuleCase(factory, label, sample, tuple(batch_sizes), seed, args)
    probe = case.build()
    has_params = bool(probe.parameters())
    checks = [
        ("parameter shapes", case.parameter_shapes),
        ("gradients vs autograd at initial parameters", case.gradients_at_initial),
    ]
    if has_params:
        checks += [
            ("gradients vs autograd at random parameters", case.gradients_at_random),
            ("gradient accumulation", case.accumulation),
            ("zero_grad", case.zero_grad),
            ("determinism under a seed", case.determinism),
        ]
    if runs is not None and getattr(factory, "supports_runs", False):
        case.runs = runs
        checks += [("runs: run dimension", case.run_dimension),
                   ("runs: gradients vs autograd", case.runs_gradients)]
        if has_params:
            checks.append(("runs: gradient accumulation", case.runs_accumulation))
        checks.append(("runs: each run equals a single run", case.runs_equal_single))
    return [Check(label, name, run) for name, run in checks]


@dataclass
class _ModuleCase:
    """What every check of one module needs: how to build it and what to feed it."""

    factory: Any
    label: str
    sample: tuple[int, ...]  # one sample's shape: (in_features,) or (channels, h, w)
    batch_sizes: tuple[int, ...]
    seed: int
    args: dict[str, Any]
    runs: int = 0  # with supports_runs: the runs of the runs checks
    shapes: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.shapes = [(batch, *self.sample) for batch in self.batch_sizes]

    def build(self, **extra: Any) -> Any:
        return _build_module(self.factory, self.sample, self.seed, {**extra, **self.args})

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + 1)

    # -- one module ------------------------------------------------------------------

    def parameter_shapes(self) -> None:
        _check_parameter_shapes(self.build().parameters(), self.label)

    def gradients_at_initial(self) -> None:
        module, generator = self.build(), self.generator()
        for mode in _modes(module):
            set_training(module, mode)
            _check_gradients(module, module.parameters(), self.shapes, generator, self.label,
                             _mode_text(mode))

    def gradients_at_random(self) -> None:
        module, generator = self.build(), self.generator()
        _randomize(module.parameters(), generator)
        for mode in _modes(module):
            set_training(module, mode)
            _check_gradients(module, module.parameters(), self.shapes, generator, self.label,
                             ", random parameters" + _mode_text(mode))

    def accumulation(self) -> None:
        module, generator = self.build(), self.generator()
        _randomize(module.parameters(), generator)
        for mode in _modes(module):
            set_training(module, mode)
            _check_accumulation(module, self.shapes[-1], generator, self.label)

    def zero_grad(self) -> None:
        module, generator = self.build(), self.generator()
        _randomize(module.parameters(), generator)
        x = _draw_input(module, self.shapes[-1], generator, _dtype(module.parameters()))
        out = module.forward(x)
        module.backward(torch.randn(out.shape, generator=generator, dtype=out.dtype))
        zero_grad(module)
        for p in module.parameters():
            expect(not p.grad.any(), self.label, "zero_grad",
                   f"{_pname(p)} gradient is {p.grad.abs().max().item():.3g} after zero_grad, not 0")

    def determinism(self) -> None:
        for p, q in zip(self.build().parameters(), self.build().parameters(), strict=True):
            expect(torch.equal(p.value, q.value), self.label, "determinism under a seed",
                   f"{_pname(p)} differs between two builds with seed {self.seed}: max "
                   f"{(p.value - q.value).abs().max().item():.3g}")

    # -- the runs path ----------------------------------------------------------------

    def batched(self) -> Any:
        """The module with `runs` runs: a leading run dimension on every parameter."""
        takes_runs = "runs" in signature(self.factory)
        return self.build(**({"runs": self.runs} if takes_runs else {}))

    def run_shapes(self) -> list[tuple[int, ...]]:
        return [(self.runs, batch, *self.sample) for batch in self.batch_sizes]

    def run_dimension(self) -> None:
        params, singles = self.batched().parameters(), self.build().parameters()
        expect(len(params) == len(singles), self.label, "run dimension",
               f"{len(params)} parameters with runs={self.runs}, {len(singles)} without")
        for p, q in zip(params, singles):
            expect(tuple(p.value.shape) == (self.runs, *q.value.shape), self.label,
                   "run dimension",
                   f"{_pname(p)} is {tuple(p.value.shape)} with runs={self.runs}; expected "
                   f"{(self.runs, *q.value.shape)}, the single run's shape after a leading "
                   f"run dimension")
        _check_parameter_shapes(params, self.label)

    def runs_gradients(self) -> None:
        batched, generator = self.batched(), self.generator()
        _randomize(batched.parameters(), generator)
        for mode in _modes(batched):
            set_training(batched, mode)
            _check_gradients(batched, batched.parameters(), self.run_shapes(), generator,
                             self.label, _mode_text(mode), lead=2)

    def runs_accumulation(self) -> None:
        batched, generator = self.batched(), self.generator()
        _randomize(batched.parameters(), generator)
        for mode in _modes(batched):
            set_training(batched, mode)
            _check_accumulation(batched, self.run_shapes()[-1], generator, self.label)

    def runs_equal_single(self) -> None:
        """Run r of the batched module computes what the single module holding run r's
        parameters (and running statistics) computes."""
        batched, single, generator = self.batched(), self.build(), self.generator()
        params, singles = batched.parameters(), single.parameters()
        _randomize(params, generator)
        for mode in _modes(batched):
            set_training(batched, mode)
            set_training(single, mode)
            if mode and _generator_states(batched):
                continue  # random draws: the runs and the single component draw different masks
            x = _draw_input(batched, self.run_shapes()[-1], generator, _dtype(params))
            out = batched.forward(x)  # (runs, batch, ...)
            for r in range(self.runs):
                for p, q in zip(params, singles, strict=True):
                    q.value.copy_(p.value[r])
                for name, buffer in _buffers(single).items():  # running statistics
                    buffer.copy_(_buffers(batched)[name][r])
                close(out[r], single.forward(x[r]), self.label,
                      f"run {r} of {self.runs} equals a single run{_mode_text(mode)}")


# -- the comparisons with autograd -------------------------------------------------------


def _check_gradients(module, params, shapes, generator, label: str, where: str, lead: int = 1):
    """Forward and backward against autograd for an input of each shape. `lead`: the
    dimensions before a sample's own (the batch; the runs and the batch)."""
    dtype = _dtype(params)
    for shape in shapes:
        batch = ", ".join(f"{n} runs" for n in shape[:lead - 1]) + (", " if lead > 1 else "")
        batch += f"batch {shape[lead - 1]}{where}"
        x = _draw_input(module, shape, generator, dtype)  # (..., batch, *sample)
        zero_grad(module)
        replay = _generator_states(module)
        expected_out, expected_grads = _autograd(module, params, x, generator)
        upstream = expected_grads.pop("upstream")
        _restore(replay)  # the hand-written forward draws what autograd's did
        out = module.forward(x)
        expect(tuple(out.shape[:lead]) == tuple(x.shape[:lead]), label, "output shape",
               f"{tuple(x.shape)} in, {tuple(out.shape)} out: the dimensions before the "
               f"sample's own must stay ({', '.join(map(str, x.shape[:lead]))}, ...)")
        close(out, expected_out, label, f"forward is deterministic ({batch})")
        grad_in = module.backward(upstream)
        expect(tuple(grad_in.shape) == tuple(x.shape), label, "input gradient shape",
               f"input {tuple(x.shape)} but gradient {tuple(grad_in.shape)}")
        close(grad_in, expected_grads["input"], label, f"input gradient vs autograd ({batch})")
        for i, p in enumerate(params):
            close(p.grad, expected_grads[i], label, f"{_pname(p)} gradient vs autograd ({batch})")


def _draw_input(module, shape, generator, dtype) -> torch.Tensor:
    """Normal values, or what the module says it takes (`example_input`: an embedding's ids)."""
    draw = getattr(module, "example_input", None)
    if callable(draw):
        return draw(shape, generator, dtype)
    return torch.randn(shape, generator=generator, dtype=dtype)


def _check_accumulation(module, shape, generator, label: str) -> None:
    """A second backward adds to the first (the same forward, the same random draws)."""
    params = module.parameters()
    x = _draw_input(module, shape, generator, _dtype(params))
    zero_grad(module)
    replay = _generator_states(module)
    out = module.forward(x)
    upstream = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    module.backward(upstream)
    once = [p.grad.clone() for p in params]
    _restore(replay)
    module.forward(x)
    module.backward(upstream)
    for p, g in zip(params, once):
        close(p.grad, 2 * g, label, f"{_pname(p)} gradient accumulates over two backwards")


def _autograd(module: Any, params: list[Parameter], x: torch.Tensor, generator: torch.Generator):
    """Output and gradients (input, each parameter) of the module's own forward, by autograd."""
    leaf = x.clone().requires_grad_(True)
    originals = [p.value for p in params]
    try:
        with torch.enable_grad():
            for p in params:  # differentiate with respect to a leaf copy of each parameter
                p.value = p.value.detach().clone().requires_grad_(True)
            out = module.forward(leaf)
            upstream = torch.randn(out.shape, generator=generator, dtype=out.dtype)
            grads = torch.autograd.grad(out, [leaf, *(p.value for p in params)], upstream,
                                        allow_unused=True)
    finally:
        for p, value in zip(params, originals):
            p.value = value
    result: dict[Any, torch.Tensor] = {"upstream": upstream, "input": _or_zeros(grads[0], leaf)}
    for i, (g, value) in enumerate(zip(grads[1:], originals)):
        result[i] = _or_zeros(g, value)
    return out.detach(), result


# -- building and handling the module ----------------------------------------------------


def _gaussian(weight: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator) -> None:
    """The kit's own initializer, so a layer is checked without any registered one."""
    weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) / fan_in**0.5)


def _build_module(factory: Any, sample: tuple[int, ...], seed: int, args: dict[str, Any]) -> Any:
    accepted = signature(factory)
    context = {"in_features": sample[-1], "in_channels": sample[0], "in_shape": sample,
               "out_features": 3, "init": _gaussian,
               "generator": torch.Generator().manual_seed(seed), "dtype": torch.float64}
    kwargs = dict(args)
    for key, value in context.items():
        if key in accepted:
            kwargs.setdefault(key, value)
    module = factory(**kwargs)
    return _BatchFirstEdges(module) if kwargs.get("layout") == BATCH_INNERMOST else module


class _BatchFirstEdges:
    """A batch-innermost image layer seen batch-first, as the kit's inputs are: its input
    converted to (..., c, h, w, batch), its image output and its input gradient back."""

    def __init__(self, module: Any):
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module.forward(to_batch_innermost(x))
        return to_batch_first(y) if y.dim() >= 4 else y  # features: (..., batch, n) as they are

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        g = to_batch_innermost(grad_output) if grad_output.dim() >= 4 else grad_output
        return to_batch_first(self.module.backward(g))

    def __getattr__(self, name: str) -> Any:  # parameters, train, buffers, ...
        return getattr(self.module, name)


def _check_parameter_shapes(params: list[Parameter], label: str) -> None:
    for p in params:
        expect(tuple(p.grad.shape) == tuple(p.value.shape), label, "parameter shapes",
               f"{_pname(p)} has value {tuple(p.value.shape)} but grad {tuple(p.grad.shape)}")
        expect(p.grad.dtype == p.value.dtype, label, "parameter shapes",
               f"{_pname(p)} has value {p.value.dtype} but grad {p.grad.dtype}")


def _randomize(params: list[Parameter], generator: torch.Generator) -> None:
    """Move every parameter to random values: its own plus a standard normal draw."""
    for p in params:
        p.value.add_(torch.randn(p.value.shape, generator=generator, dtype=p.value.dtype))


def _dtype(params: list[Parameter]) -> torch.dtype:
    """The inputs' dtype: the parameters' (float64 as built), float64 without parameters."""
    return params[0].value.dtype if params else torch.float64


def _modes(module: Any) -> list[bool | None]:
    return [True, False] if callable(getattr(module, "train", None)) else [None]


def _mode_text(mode: bool | None) -> str:
    return "" if mode is None else (", in training" if mode else ", in evaluation")


def _generator_states(module: Any) -> list[tuple[torch.Generator, torch.Tensor]]:
    """Every torch.Generator the module keeps (alone or in a list) with its state, to replay draws."""
    found: list[tuple[torch.Generator, torch.Tensor]] = []
    for value in vars(module).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, torch.Generator) and all(item is not g for g, _ in found):
                found.append((item, item.get_state()))
    return found


def _restore(states: list[tuple[torch.Generator, torch.Tensor]]) -> None:
    for generator, state in states:
        generator.set_state(state)


def _buffers(module: Any) -> dict[str, torch.Tensor]:
    named = getattr(module, "buffers", None)
    return dict(named()) if callable(named) else {}


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _pname(p: Parameter) -> str:
    return p.name or "a parameter"
